-- 040 (issue 14): nothing confirmed lives only in Redis.
-- * ciphertext blobs are files in the blob store (blobstore.py); the LRU order and the quota
--   accounting move from Redis to these rows (last_used_at);
-- * every deletion of a stored ciphertext (LRU eviction, TTL expiry, key deletion, explicit
--   delete) is logged, with running totals per reason for /health and /metrics;
-- * idempotency records (claims in flight and completed answers, sealed) live here, so a retry
--   after a crash of Redis, PostgreSQL or the server replays;
-- * usage (FCU of every confirmed operation) is metered here; the Redis monthly counters are a
--   cache rebuilt from it.

ALTER TABLE ciphertexts ADD COLUMN last_used_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX ciphertexts_lru ON ciphertexts (account_id, last_used_at, id);

CREATE TABLE ciphertext_deletions (
    ciphertext_id  text PRIMARY KEY,
    account_id     text NOT NULL,        -- no foreign key: the record outlives the account's rows
    key_id         text,
    size_bytes     bigint NOT NULL,
    reason         text NOT NULL CHECK (reason IN ('lru', 'ttl', 'key_deleted', 'deleted')),
    deleted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ciphertext_deletions_account ON ciphertext_deletions (account_id, deleted_at);
CREATE INDEX ciphertext_deletions_time ON ciphertext_deletions (deleted_at);

CREATE TABLE ciphertext_deletion_totals (
    reason  text PRIMARY KEY,
    total   bigint NOT NULL DEFAULT 0
);
INSERT INTO ciphertext_deletion_totals (reason) VALUES ('lru'), ('ttl'), ('key_deleted'), ('deleted');

CREATE TABLE idempotency_records (
    slot         text PRIMARY KEY,        -- SHA-256 of (scope, Idempotency-Key)
    fingerprint  text NOT NULL,           -- SHA-256 of method, path and body
    claim        text NOT NULL,           -- the request that owns the slot (random)
    status       integer NOT NULL DEFAULT 0,   -- 0 = in progress (a lease until expires_at)
    sealed       bytea,                   -- the answer, AES-GCM under a key the client's header derives
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX idempotency_records_expires ON idempotency_records (expires_at);

CREATE TABLE usage_events (
    id          bigserial PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    api_key_id  text,
    route       text NOT NULL,            -- "POST /compute/{operation}"
    operation   text,                     -- e.g. "multiply", "tfhe:batch"
    fcu         bigint NOT NULL CHECK (fcu >= 0),
    request_id  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_events_account_time ON usage_events (account_id, created_at);
