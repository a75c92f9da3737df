-- The request log: one row per call through /gateway (telemetry). Message
-- contents are never stored, only what the call was and what it cost.
-- Times are Unix milliseconds (UTC); pruned after the retention period.
CREATE TABLE request_log (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id          TEXT NOT NULL,
    at                  INTEGER NOT NULL,
    endpoint            TEXT NOT NULL,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    operation           TEXT NOT NULL,
    dialect             TEXT NOT NULL,
    key_id              TEXT,
    key_prefix          TEXT,
    status              INTEGER NOT NULL,
    error_kind          TEXT,
    error_message       TEXT,
    latency_ms          INTEGER NOT NULL,
    ttft_ms             INTEGER,
    input_tokens        INTEGER,
    output_tokens       INTEGER,
    cached_input_tokens INTEGER,
    -- NULL when the model has no price in its plugin's catalog.
    cost_usd            REAL,
    attempts            INTEGER NOT NULL,
    fallbacks           INTEGER NOT NULL,
    cancelled           INTEGER NOT NULL
);
CREATE INDEX request_log_at ON request_log (at);
CREATE INDEX request_log_request_id ON request_log (request_id);
