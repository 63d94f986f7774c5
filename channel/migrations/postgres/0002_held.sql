-- Points of the account held by live deductions. Credits keep balance + held within i64, so
-- a refund (held back into balance) always fits.
ALTER TABLE accounts ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
UPDATE accounts SET held = (
    SELECT COALESCE(SUM(d.points), 0) FROM deductions d
    WHERE d.user_id = accounts.user_id AND d.state = 'DEDUCTED'
);
