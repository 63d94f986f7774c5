-- Dead letters as the operator sees them (the messages themselves stay in JIFEN_DLQ too), and
-- the generation of an order's commands, bumped when an operator re-emits them.
CREATE TABLE dead_letters (
    id              TEXT    NOT NULL PRIMARY KEY,
    order_id        TEXT    NOT NULL,
    origin_stream   TEXT    NOT NULL,
    origin_sequence INTEGER NOT NULL,
    origin_msg_id   TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    consumer        TEXT    NOT NULL,
    deliveries      INTEGER NOT NULL,
    last_error      TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('OPEN', 'REDRIVEN', 'DISCARDED')),
    note            TEXT    NOT NULL DEFAULT '',
    redrives        INTEGER NOT NULL DEFAULT 0,
    dead_at_ms      INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
CREATE INDEX dead_letters_by_state ON dead_letters (state, dead_at_ms, id);
CREATE INDEX dead_letters_by_order ON dead_letters (order_id);

ALTER TABLE orders ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
