-- A digest of each evaluation key a key holds, by name (relin, encapsulation, galois:<element>),
-- written with the key and with every key chunk (fhe.key_digests): a chunk re-sent with the same
-- keys stores nothing again, one with other bytes for a key already held is refused (409
-- KEY_CONFLICT). NULL for keys stored before this migration: their chunks keep the old rule
-- (a chunk is stored when it brings a new rotation step or a relinearization/encapsulation key).
ALTER TABLE fhe_keys ADD COLUMN key_digests JSONB;
