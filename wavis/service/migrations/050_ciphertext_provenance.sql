-- Provenance of every stored ciphertext (issue 15): 'server' = encrypted by the server for its
-- key, or computed only from such ciphertexts; 'client' = uploaded, or computed from anything
-- uploaded. Only 'server' ciphertexts whose blob carries the server's keyed tag for that
-- provenance are ever decrypted. Rows stored before this migration hold untagged blobs: client.
ALTER TABLE ciphertexts ADD COLUMN provenance text NOT NULL DEFAULT 'client'
    CHECK (provenance IN ('server', 'client'));
