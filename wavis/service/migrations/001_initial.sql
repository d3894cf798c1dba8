-- 001: accounts, API keys, FHE keys, ciphertext metadata (issue 2).

CREATE TABLE accounts (
    id          text PRIMARY KEY,                 -- acct_…
    email       text,
    plan        text NOT NULL DEFAULT 'free',
    is_trial    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email_key ON accounts (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE api_keys (
    id            text PRIMARY KEY,               -- apikey_…
    account_id    text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_hash      bytea NOT NULL UNIQUE,          -- HMAC-SHA256(pepper, key); the key itself is never stored
    prefix        text NOT NULL,                  -- first 16 characters, for display
    environment   text NOT NULL CHECK (environment IN ('live', 'test', 'dev', 'trial')),
    role          text NOT NULL CHECK (role IN ('viewer', 'developer', 'account_admin', 'trial')),
    ops_limit     integer,                        -- trial keys: operations allowed in total
    ops_used      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id, created_at, id);

CREATE TABLE fhe_keys (
    id                      text PRIMARY KEY,     -- key_…
    account_id              text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    scheme                  text NOT NULL,
    params                  jsonb NOT NULL,
    params_fingerprint      text NOT NULL,
    key_tag                 bytea NOT NULL,       -- 16-byte key-pair identifier carried by its ciphertexts
    slot_count              integer NOT NULL,
    max_level               integer NOT NULL,
    galois_steps            integer[] NOT NULL DEFAULT '{}',
    conjugation             boolean NOT NULL DEFAULT false,
    public_key              bytea NOT NULL,
    eval_key                bytea NOT NULL,
    is_blind                boolean NOT NULL DEFAULT true,
    ciphertext_body_limit   bigint NOT NULL,      -- bytes of an upload body for this key
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fhe_keys_account ON fhe_keys (account_id, created_at, id);

CREATE TABLE ciphertexts (
    id           text PRIMARY KEY,                -- ct_…
    account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_id       text NOT NULL REFERENCES fhe_keys (id) ON DELETE CASCADE,
    level        integer NOT NULL,
    scale        double precision NOT NULL,
    slots        integer NOT NULL,
    size_bytes   integer NOT NULL,
    source       text NOT NULL CHECK (source IN ('upload', 'compute')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX ciphertexts_account ON ciphertexts (account_id, created_at, id);
CREATE INDEX ciphertexts_key ON ciphertexts (key_id);
CREATE INDEX ciphertexts_expires ON ciphertexts (expires_at);
