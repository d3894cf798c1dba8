-- 061: recovering jobs from PostgreSQL (issues 13/14). The Redis stream only carries a job to a
-- worker; when Redis loses the message (restarted without persistence, flushed, restored from an
-- older snapshot) the job row is still QUEUED or RUNNING. The row now names the message it was
-- sent as, so the reconciler (wavis/service/reconcile.py) can see that the message is gone and
-- send the job again from this row (async jobs keep their payload here) or fail it with a typed,
-- retryable error (synchronous jobs: the request travelled only in the message).

ALTER TABLE jobs ADD COLUMN queue text;          -- the Redis key prefix of the deployment whose streams carry it
ALTER TABLE jobs ADD COLUMN stream_entry text;   -- '<stream> <entry id>' of the job's live message; NULL: none (yet)
ALTER TABLE jobs ADD COLUMN affinity text;       -- the evaluation key it needs (CKKS key id / TFHE session id)
ALTER TABLE jobs ADD COLUMN reply_to text;       -- synchronous jobs: the API process that waits for the reply
ALTER TABLE jobs ADD COLUMN idem_key text;       -- the request's idempotency slot (a hash, never the client's key)

CREATE INDEX jobs_active_age ON jobs (queue, created_at) WHERE status IN ('QUEUED', 'RUNNING');
CREATE INDEX jobs_idem ON jobs (account_id, idem_key) WHERE idem_key IS NOT NULL;
