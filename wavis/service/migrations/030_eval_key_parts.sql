-- Galois keys uploaded in chunks after the key (API.md "Sizes": larger key sets go up in
-- chunks of ≤ 40 MB). Each part is an EvaluationKeys blob holding only Galois keys.
CREATE TABLE fhe_key_parts (
    key_id     TEXT NOT NULL REFERENCES fhe_keys(id) ON DELETE CASCADE,
    part_no    INTEGER NOT NULL,
    blob       BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, part_no)
);
