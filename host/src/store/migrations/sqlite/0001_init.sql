-- Endpoints: one row per endpoint name. `config` is a JSON object of field
-- name -> string value, secret values encrypted ("enc:v1:..."). Times are
-- Unix milliseconds (UTC).
CREATE TABLE endpoints (
    name       TEXT PRIMARY KEY NOT NULL,
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    config     TEXT NOT NULL,
    source     TEXT NOT NULL CHECK (source IN ('api', 'file')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Stored Responses API objects, for `previous_response_id`.
CREATE TABLE responses (
    id         TEXT PRIMARY KEY NOT NULL,
    endpoint   TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX responses_created_at ON responses (created_at);

-- Small key/value facts about the store itself (e.g. the master key check).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
