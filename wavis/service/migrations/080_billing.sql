-- 080 (issues 16, 17): billing on top of the usage ledger of 040.
--
-- * usage_events (040) stays THE record of usage: one row per confirmed charge. It gains the
--   charge's period (calendar month UTC, from the service clock, never now()), its list price
--   in USD and the part of it that is billed (beyond the plan's included FCU).
-- * usage_periods: one row per (account, period) — the totals of that period's usage_events,
--   written in the same transaction as each usage_events row (billing.charge), and THE row
--   that admission locks (SELECT … FOR UPDATE) to reserve FCU: a job's FCU are reserved by its
--   QUEUED/RUNNING jobs row, written under that lock (billing.admit_job), so concurrent
--   admissions cannot overshoot. It also holds which once-per-period events were sent
--   (usage_alert 50/80/100, budget_alert, limit_reached), so each is emitted once.
-- * billing_budgets, subscriptions, invoices, stripe_events: see docs/billing.md.

ALTER TABLE accounts
    ADD COLUMN monthly_fcu_override bigint CHECK (monthly_fcu_override >= 0),   -- enterprise: set per account
    ADD COLUMN monthly_usd_override numeric(14, 2) CHECK (monthly_usd_override >= 0);

ALTER TABLE usage_events
    ADD COLUMN period_start date,
    ADD COLUMN cost_usd numeric(20, 10) NOT NULL DEFAULT 0,     -- list price of the operation
    ADD COLUMN billed_usd numeric(20, 10) NOT NULL DEFAULT 0,   -- the part beyond the included FCU
    ADD COLUMN job_id text;
UPDATE usage_events SET period_start = date_trunc('month', created_at AT TIME ZONE 'UTC')::date;
ALTER TABLE usage_events ALTER COLUMN period_start SET NOT NULL;
CREATE INDEX usage_events_account_period ON usage_events (account_id, period_start, created_at);
CREATE UNIQUE INDEX usage_events_job ON usage_events (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE usage_periods (
    account_id    text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    period_start  date NOT NULL,                      -- first day of the calendar month (UTC)
    fcu_used      bigint NOT NULL DEFAULT 0 CHECK (fcu_used >= 0),
    cost_usd      numeric(20, 10) NOT NULL DEFAULT 0, -- sum of usage_events.cost_usd
    billed_usd    numeric(20, 10) NOT NULL DEFAULT 0, -- sum of usage_events.billed_usd
    events_sent   text[] NOT NULL DEFAULT '{}',       -- 'usage_alert:50', 'budget_alert', 'limit_reached:quota', …
    PRIMARY KEY (account_id, period_start)
);
INSERT INTO usage_periods (account_id, period_start, fcu_used)
    SELECT account_id, period_start, sum(fcu) FROM usage_events GROUP BY account_id, period_start;

CREATE TABLE billing_budgets (
    account_id           text PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    monthly_limit_usd    numeric(14, 2) NOT NULL CHECK (monthly_limit_usd >= 0),
    mode                 text NOT NULL CHECK (mode IN ('hard', 'soft')),
    alert_threshold_pct  integer NOT NULL CHECK (alert_threshold_pct BETWEEN 1 AND 100),
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);

CREATE TABLE subscriptions (
    account_id              text PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    plan                    text NOT NULL,
    status                  text NOT NULL CHECK (status IN ('active', 'trial', 'cancelled', 'past_due', 'unpaid',
                                                            'incomplete')),
    billing_cycle           text NOT NULL DEFAULT 'monthly' CHECK (billing_cycle IN ('monthly', 'annual')),
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    current_period_end      timestamptz,
    stripe_customer_id      text,
    stripe_subscription_id  text UNIQUE,
    stripe_event_created    bigint NOT NULL DEFAULT 0,  -- `created` of the last Stripe event applied (ordering)
    updated_at              timestamptz NOT NULL
);
CREATE UNIQUE INDEX subscriptions_customer ON subscriptions (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;

CREATE TABLE invoices (
    id                  text PRIMARY KEY,             -- inv_…
    account_id          text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    period_start        date NOT NULL,
    period_end          date NOT NULL,                -- exclusive
    plan                text NOT NULL,
    amount_usd          numeric(14, 2) NOT NULL,
    fcu_used            bigint NOT NULL,
    status              text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    source              text NOT NULL CHECK (source IN ('local', 'stripe')),
    stripe_invoice_id   text UNIQUE,
    hosted_invoice_url  text,
    lines               jsonb NOT NULL DEFAULT '[]',
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE UNIQUE INDEX invoices_local_period ON invoices (account_id, period_start) WHERE source = 'local';
CREATE INDEX invoices_account ON invoices (account_id, created_at, id);

CREATE TABLE stripe_events (
    id           text PRIMARY KEY,                    -- evt_… of Stripe: each applied once
    type         text NOT NULL,
    created      bigint NOT NULL,
    received_at  timestamptz NOT NULL
);
