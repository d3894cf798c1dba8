-- 070: issue 16 — webhook endpoints and the event outbox (one row per event and endpoint).

CREATE TABLE webhooks (
    id                     text PRIMARY KEY,              -- wh_…
    account_id             text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url                    text NOT NULL CHECK (length(url) <= 2048),
    events                 text[] NOT NULL DEFAULT '{}',  -- empty = every event type
    secret_sealed          bytea NOT NULL,                -- AES-GCM under the master key (sealing.py)
    old_secret_sealed      bytea,                         -- the previous secret during its 24 h overlap
    old_secret_expires_at  timestamptz,
    enabled                boolean NOT NULL DEFAULT true,
    failing_since          timestamptz,                   -- first failed attempt since the last success
    disabled_at            timestamptz,
    disabled_reason        text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_account ON webhooks (account_id, created_at, id);

CREATE TABLE webhook_events (
    id                text PRIMARY KEY,                   -- evt_… (stable across every attempt)
    account_id        text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    webhook_id        text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    type              text NOT NULL,
    payload           jsonb NOT NULL,                     -- the body's "data"
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,         -- every attempt, redeliveries included
    cycle_attempts    integer NOT NULL DEFAULT 0,         -- attempts since it was (re)queued: drives the backoff
    next_attempt_at   timestamptz NOT NULL DEFAULT now(), -- also the lease of a claimed attempt
    last_status_code  integer,
    last_error        text,
    last_attempt_at   timestamptz,
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_events_account ON webhook_events (account_id, created_at, id);
CREATE INDEX webhook_events_webhook ON webhook_events (webhook_id, created_at, id);

CREATE TABLE webhook_attempts (
    event_id     text NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,                        -- webhook_events.attempts when it was claimed
    started_at   timestamptz NOT NULL,
    duration_ms  double precision NOT NULL,
    status_code  integer,                                 -- NULL: no HTTP answer (refused, timeout, TLS …)
    error        text,
    PRIMARY KEY (event_id, attempt)
);
