-- The secret registry (/secrets).  Only the value is sealed (AES-GCM, see
-- chamberlain/sealing.py); the name, description and hint are kept in the clear.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    description TEXT,
    sealed      BLOB NOT NULL,
    hint        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    rotated_at  REAL
);
-- One row: a known text sealed with the key the secrets are sealed with, written
-- with the first secret, so a daemon started with another key can tell at once.
CREATE TABLE secret_key_check (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    sealed     BLOB NOT NULL,
    created_at REAL NOT NULL
);
