-- 020: issue 5 — API-key origin (creation rate limit counts /api-keys only), server-mode
-- secret keys sealed with AES-GCM under WAVIS_MASTER_KEY.

ALTER TABLE api_keys ADD COLUMN origin text NOT NULL DEFAULT 'admin'
    CHECK (origin IN ('admin', 'api', 'rotate', 'trial'));
ALTER TABLE api_keys ADD COLUMN rotated_from text;          -- apikey_… this key replaced
CREATE INDEX api_keys_account_origin ON api_keys (account_id, origin, created_at);

ALTER TABLE fhe_keys ADD COLUMN secret_key_sealed bytea;    -- server-mode keys only; NULL = blind
