-- Evidence for disputes (DESIGN §9): each exchange of an order's line with a partner's API —
-- the request as sent (secrets and signatures redacted), the status, the answer — as the
-- connector reported them with the line's outcome. A repeated report adds nothing.
CREATE TABLE partner_exchanges (
    order_id   TEXT    NOT NULL,
    channel_id TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    at_ms      BIGINT  NOT NULL,
    call       TEXT    NOT NULL,
    status     BIGINT  NOT NULL,
    request    TEXT    NOT NULL,
    answer     TEXT    NOT NULL,
    PRIMARY KEY (order_id, channel_id, user_id, at_ms, call, status)
);
