-- The channel registry with each channel's quota, and the quota ledgers (DESIGN §3).
CREATE TABLE channels (
    channel_id    TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    endpoint      TEXT    NOT NULL,
    total         BIGINT  NOT NULL DEFAULT 0 CHECK (total >= 0),
    used          BIGINT  NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= total),
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL
);

-- Grants, keyed by the caller's request id so a retried grant counts once.
CREATE TABLE grants (
    request_id    TEXT    NOT NULL PRIMARY KEY,
    channel_id    TEXT    NOT NULL,
    points        BIGINT  NOT NULL CHECK (points > 0),
    created_at_ms BIGINT  NOT NULL
);

-- The barrier: one row per (order_id, channel_id), written with the quota change.
CREATE TABLE quota_deductions (
    order_id      TEXT    NOT NULL,
    channel_id    TEXT    NOT NULL,
    points        BIGINT  NOT NULL CHECK (points >= 0),
    state         TEXT    NOT NULL CHECK (state IN ('DEDUCTED', 'REFUNDED', 'REJECTED')),
    rejection     TEXT    NOT NULL DEFAULT '',
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (order_id, channel_id)
);
