-- 010: TFHE sessions (issue 4). The server key is public (the bootstrapping and key-switching
-- keys); a server-managed session also keeps its client (secret) key, only ever sealed with
-- AES-256-GCM under the master key (wavis/service/sealing.py). Blind sessions have none.

CREATE TABLE tfhe_sessions (
    id                  text PRIMARY KEY,          -- sess_…
    account_id          text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    preset              text NOT NULL,
    is_blind            boolean NOT NULL,
    key_id              bytea NOT NULL,            -- 16-byte server-key fingerprint its ciphertexts carry
    server_key          bytea NOT NULL,            -- wire format (wavis.tfhe.serialize), public
    client_key_sealed   bytea,                     -- server-managed only: AES-GCM sealed client key
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_used_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tfhe_sessions_blind_has_no_secret CHECK (is_blind = (client_key_sealed IS NULL))
);
CREATE INDEX tfhe_sessions_account ON tfhe_sessions (account_id, created_at, id);
CREATE INDEX tfhe_sessions_last_used ON tfhe_sessions (last_used_at);
