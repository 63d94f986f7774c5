-- Reports of partners' statements compared with Jifen's books (issue 18): kept, viewable on the
-- console and with `jifen admin statements`. The report is the encoded StatementReport.
CREATE TABLE statement_reports (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id    TEXT   NOT NULL,
    date          TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    operator      TEXT   NOT NULL,
    report        BLOB  NOT NULL
);
CREATE INDEX statement_reports_by_channel ON statement_reports (channel_id, id);
