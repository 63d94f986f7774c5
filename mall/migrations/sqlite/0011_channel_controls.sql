-- What operators decide about a connector's consumer group (issue 18): pauses and maintenance
-- windows (the mall pauses the JetStream consumer while one is in force, and the pre-check
-- refuses the channel's new orders), and whether its dead letters are redriven automatically
-- once its ledger answers again. Rows are kept: they are the pauses' history.
CREATE TABLE consumer_pauses (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer      TEXT   NOT NULL,
    starts_at_ms  BIGINT NOT NULL,
    -- 0: until resumed.
    ends_at_ms    BIGINT NOT NULL,
    note          TEXT   NOT NULL,
    actor         TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- When an operator resumed it early (or called a window off); 0 while it stands.
    ended_at_ms   BIGINT NOT NULL DEFAULT 0,
    end_note      TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX consumer_pauses_consumer ON consumer_pauses (consumer, starts_at_ms);

-- A consumer group without a row redrives automatically (the default).
CREATE TABLE consumer_settings (
    consumer     TEXT   PRIMARY KEY,
    auto_redrive BIGINT NOT NULL,
    note         TEXT   NOT NULL,
    actor        TEXT   NOT NULL,
    at_ms        BIGINT NOT NULL
);

-- The Channels page's chart counts dead letters per minute of the last hour.
CREATE INDEX dead_letters_by_time ON dead_letters (dead_at_ms);
