-- The W3C trace id of the request that submitted an order, for the console to link.
ALTER TABLE orders ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';

-- Sessions of the operator's console: a login makes one (an HttpOnly cookie carries the id);
-- every change must carry its CSRF token. Shared by all mall replicas.
CREATE TABLE console_sessions (
    id            TEXT   NOT NULL PRIMARY KEY,
    csrf          TEXT   NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
