-- Endpoint serving policy (targets, fallbacks, retries, timeouts, circuit
-- breaker, rate limits) as a JSON object; '{}' is the default policy.
ALTER TABLE endpoints ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
