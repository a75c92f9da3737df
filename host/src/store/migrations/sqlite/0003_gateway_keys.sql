-- Gateway keys: clients present one when keys are required. Only the
-- SHA-256 of the key is kept (hex); `prefix` is its first characters, safe
-- to show and log. `endpoints` is a JSON array of endpoint names, NULL for
-- all. Times are Unix milliseconds (UTC); `revoked_at` NULL means active.
CREATE TABLE gateway_keys (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    prefix              TEXT NOT NULL,
    key_hash            TEXT NOT NULL UNIQUE,
    endpoints           TEXT,
    requests_per_minute INTEGER,
    tokens_per_minute   INTEGER,
    created_at          INTEGER NOT NULL,
    revoked_at          INTEGER,
    last_used_at        INTEGER
);
