-- Holds (TCC, DESIGN §12): a key may be FROZEN until its expiry, then CONFIRMED or CANCELLED;
-- the frozen part of the balance is kept beside the spendable one. SQLite changes a CHECK by
-- rebuilding the table.
CREATE TABLE quota_deductions_new (
    order_id      TEXT    NOT NULL,
    channel_id    TEXT    NOT NULL,
    points        INTEGER NOT NULL CHECK (points >= 0),
    state         TEXT    NOT NULL CHECK (state IN ('DEDUCTED', 'REFUNDED', 'REJECTED', 'FROZEN', 'CONFIRMED', 'CANCELLED')),
    rejection     TEXT    NOT NULL DEFAULT '',
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    -- When a FROZEN hold lapses; 0 for anything else.
    expires_at_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, channel_id)
);
INSERT INTO quota_deductions_new (order_id, channel_id, points, state, rejection, created_at_ms, updated_at_ms)
    SELECT order_id, channel_id, points, state, rejection, created_at_ms, updated_at_ms FROM quota_deductions;
DROP TABLE quota_deductions;
ALTER TABLE quota_deductions_new RENAME TO quota_deductions;
-- Live holds by expiry, for the release of lapsed ones.
CREATE INDEX quota_deductions_frozen_by_expiry ON quota_deductions (expires_at_ms) WHERE state = 'FROZEN';
ALTER TABLE channels ADD COLUMN frozen INTEGER NOT NULL DEFAULT 0 CHECK (frozen >= 0);
