-- 062: admission by cost for jobs (issue 14). A heavy operation that runs as an engine job
-- (matmul, bootstrap; sync or async) holds its estimated bytes and one of its account's heavy-job
-- slots for as long as its row is QUEUED or RUNNING — not only while its request waits — and
-- across every API process: admission counts these rows under an advisory lock (dispatch.py).

ALTER TABLE jobs ADD COLUMN heavy_bytes bigint;  -- estimated peak bytes (ops.REGISTRY); NULL: not a heavy job

CREATE INDEX jobs_heavy_active ON jobs (account_id) WHERE heavy_bytes IS NOT NULL AND status IN ('QUEUED', 'RUNNING');
