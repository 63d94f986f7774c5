-- TCC (DESIGN §12): an order may be CONFIRMING; an order and each of its steps say how they are
-- taken (SAGA: deduct, refund; TCC: freeze, confirm, cancel), and a held step when its hold
-- lapses. SQLite changes a CHECK by rebuilding the table; the steps are rebuilt with it, each
-- new table referring to the new orders, so that no drop deletes a row another still needs.
CREATE TABLE orders_new (
    order_id        TEXT    NOT NULL PRIMARY KEY,
    customer_id     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('PENDING', 'CONFIRMING', 'COMPENSATING', 'COMPLETED', 'CANCELLED')),
    needs_attention INTEGER NOT NULL DEFAULT 0,
    reason          TEXT    NOT NULL DEFAULT '',
    fingerprint     TEXT    NOT NULL,
    version         INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    generation      INTEGER NOT NULL DEFAULT 0,
    trace_id        TEXT    NOT NULL DEFAULT '',
    protocol        TEXT    NOT NULL DEFAULT 'SAGA'
);
INSERT INTO orders_new (order_id, customer_id, state, needs_attention, reason, fingerprint,
                        version, created_at_ms, updated_at_ms, generation, trace_id)
    SELECT order_id, customer_id, state, needs_attention, reason, fingerprint,
           version, created_at_ms, updated_at_ms, generation, trace_id FROM orders;

CREATE TABLE order_lines_new (
    order_id           TEXT    NOT NULL REFERENCES orders_new (order_id),
    position           INTEGER NOT NULL,
    channel_id         TEXT    NOT NULL,
    user_id            TEXT    NOT NULL,
    points             INTEGER NOT NULL CHECK (points > 0),
    state              TEXT    NOT NULL,
    deduct_seen        INTEGER NOT NULL DEFAULT 0,
    refunded_points    INTEGER NOT NULL DEFAULT 0,
    awaiting_deduct    INTEGER NOT NULL DEFAULT 0,
    captured           TEXT    NOT NULL DEFAULT '',
    settled_by         TEXT    NOT NULL DEFAULT '',
    protocol           TEXT    NOT NULL DEFAULT 'SAGA',
    hold_expires_at_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, channel_id, user_id)
);
INSERT INTO order_lines_new (order_id, position, channel_id, user_id, points, state, deduct_seen,
                             refunded_points, awaiting_deduct, captured, settled_by)
    SELECT order_id, position, channel_id, user_id, points, state, deduct_seen,
           refunded_points, awaiting_deduct, captured, settled_by FROM order_lines;

CREATE TABLE order_quotas_new (
    order_id           TEXT    NOT NULL REFERENCES orders_new (order_id),
    channel_id         TEXT    NOT NULL,
    points             INTEGER NOT NULL CHECK (points > 0),
    state              TEXT    NOT NULL,
    deduct_seen        INTEGER NOT NULL DEFAULT 0,
    refunded_points    INTEGER NOT NULL DEFAULT 0,
    awaiting_deduct    INTEGER NOT NULL DEFAULT 0,
    protocol           TEXT    NOT NULL DEFAULT 'SAGA',
    hold_expires_at_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, channel_id)
);
INSERT INTO order_quotas_new (order_id, channel_id, points, state, deduct_seen, refunded_points,
                              awaiting_deduct)
    SELECT order_id, channel_id, points, state, deduct_seen, refunded_points, awaiting_deduct
    FROM order_quotas;

DROP TABLE order_lines;
DROP TABLE order_quotas;
DROP TABLE orders;
-- Renaming rewrites the steps' references from orders_new to orders.
ALTER TABLE orders_new RENAME TO orders;
ALTER TABLE order_lines_new RENAME TO order_lines;
ALTER TABLE order_quotas_new RENAME TO order_quotas;
CREATE INDEX orders_by_created ON orders (created_at_ms, order_id);
CREATE INDEX orders_by_state ON orders (state, created_at_ms);
