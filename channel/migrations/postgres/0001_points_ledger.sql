-- One channel's accounts and its idempotency ledgers (DESIGN §3).
CREATE TABLE accounts (
    user_id       TEXT    NOT NULL PRIMARY KEY,
    balance       BIGINT  NOT NULL CHECK (balance >= 0),
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL
);

-- Credits, keyed by the caller's request id so a retried credit counts once.
CREATE TABLE credits (
    request_id    TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL,
    points        BIGINT  NOT NULL CHECK (points > 0),
    created_at_ms BIGINT  NOT NULL
);

-- The barrier: one row per (order_id, user_id), written with the balance change.
CREATE TABLE deductions (
    order_id      TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    points        BIGINT  NOT NULL CHECK (points >= 0),
    state         TEXT    NOT NULL CHECK (state IN ('DEDUCTED', 'REFUNDED', 'REJECTED')),
    rejection     TEXT    NOT NULL DEFAULT '',
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (order_id, user_id)
);
