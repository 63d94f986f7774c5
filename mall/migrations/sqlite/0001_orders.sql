-- Orders, their steps and history, and the transactional outbox (DESIGN §2, §6).
CREATE TABLE orders (
    order_id        TEXT    NOT NULL PRIMARY KEY,
    customer_id     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('PENDING', 'COMPENSATING', 'COMPLETED', 'CANCELLED')),
    needs_attention INTEGER NOT NULL DEFAULT 0,
    reason          TEXT    NOT NULL DEFAULT '',
    -- The request's content, to tell a resubmission from a conflicting one.
    fingerprint     TEXT    NOT NULL,
    -- Bumped by every change; the first statement of a saga step, so it also locks the order.
    version         INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
CREATE INDEX orders_by_created ON orders (created_at_ms, order_id);
CREATE INDEX orders_by_state ON orders (state, created_at_ms);

-- One line per (channel, user): the points one user pays at one channel.
CREATE TABLE order_lines (
    order_id   TEXT    NOT NULL REFERENCES orders (order_id),
    position   INTEGER NOT NULL,
    channel_id TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    points     INTEGER NOT NULL CHECK (points > 0),
    state      TEXT    NOT NULL,
    PRIMARY KEY (order_id, channel_id, user_id)
);

-- One quota deduction per channel of the order: the sum of that channel's lines.
CREATE TABLE order_quotas (
    order_id   TEXT    NOT NULL REFERENCES orders (order_id),
    channel_id TEXT    NOT NULL,
    points     INTEGER NOT NULL CHECK (points > 0),
    state      TEXT    NOT NULL,
    PRIMARY KEY (order_id, channel_id)
);

CREATE TABLE order_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
CREATE INDEX order_events_by_order ON order_events (order_id, id);

-- Commands written with the state change that causes them; the relay publishes and deletes.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    subject       TEXT    NOT NULL,
    msg_id        TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    traceparent   TEXT,
    payload       BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
