-- 060: jobs (issue 13). Every compute and TFHE request is a job: this row is the source of
-- truth (status, attempt counter, timings, batch size, cost); the Redis stream only carries it
-- to a worker. A worker claims a job by bumping ``attempts`` (RUNNING) and completes it under a
-- row lock only while ``attempts`` still equals its own claim, so a late worker whose message
-- was reclaimed cannot overwrite the newer attempt's result (wavis/service/jobs.py).

CREATE TABLE jobs (
    id            text PRIMARY KEY,                 -- op_…
    account_id    text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    api_key_id    text,
    kind          text NOT NULL CHECK (kind IN ('ckks', 'tfhe', 'model')),
    operation     text NOT NULL,                    -- multiply, rotate, …, gate, batch
    status        text NOT NULL DEFAULT 'QUEUED'
                  CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    is_async      boolean NOT NULL,
    batch_key     text NOT NULL,                    -- jobs with equal keys may share one backend call
    attempts      integer NOT NULL DEFAULT 0,       -- claims so far; fences late writers
    payload       bytea,                            -- async jobs: the request (JSON), cleared when done
    result        jsonb,                            -- result ids / gate outputs (async), counts (sync TFHE)
    error         jsonb,                            -- {status, code, message, details}
    batch_size    integer,                          -- jobs that shared its backend call
    cost_units    integer NOT NULL DEFAULT 0,
    cost_jpy      double precision NOT NULL DEFAULT 0,
    queue_ms      double precision,
    compute_ms    double precision,
    worker        text,                             -- consumer name of the last claim
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX jobs_account ON jobs (account_id, created_at, id);
CREATE INDEX jobs_account_active ON jobs (account_id) WHERE status IN ('QUEUED', 'RUNNING');
CREATE INDEX jobs_expires ON jobs (expires_at);
