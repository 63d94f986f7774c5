-- Operators have names (DESIGN §11): the name of whoever caused a history entry, empty for the
-- machine's own steps.
ALTER TABLE order_events ADD COLUMN actor TEXT NOT NULL DEFAULT '';

-- Every admin call and console action (who, what, on what, the note, how it ended) and every
-- refused token, from which client address.
CREATE TABLE audit_log (
    id        BIGSERIAL PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    operator  TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    target    TEXT   NOT NULL,
    note      TEXT   NOT NULL,
    result    TEXT   NOT NULL,
    client    TEXT   NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);

-- A console session is an operator's: sessions opened before operators had names end.
DELETE FROM console_sessions;
ALTER TABLE console_sessions ADD COLUMN operator TEXT NOT NULL DEFAULT '';
ALTER TABLE console_sessions ADD COLUMN role TEXT NOT NULL DEFAULT 'viewer';
