-- Holds (TCC, DESIGN §12): a key may be FROZEN until its expiry, then CONFIRMED or CANCELLED;
-- the frozen part of the balance is kept beside the spendable one.
ALTER TABLE quota_deductions DROP CONSTRAINT quota_deductions_state_check;
ALTER TABLE quota_deductions ADD CONSTRAINT quota_deductions_state_check
    CHECK (state IN ('DEDUCTED', 'REFUNDED', 'REJECTED', 'FROZEN', 'CONFIRMED', 'CANCELLED'));
-- When a FROZEN hold lapses; 0 for anything else.
ALTER TABLE quota_deductions ADD COLUMN expires_at_ms BIGINT NOT NULL DEFAULT 0;
-- Live holds by expiry, for the release of lapsed ones.
CREATE INDEX quota_deductions_frozen_by_expiry ON quota_deductions (expires_at_ms) WHERE state = 'FROZEN';
ALTER TABLE channels ADD COLUMN frozen BIGINT NOT NULL DEFAULT 0 CHECK (frozen >= 0);
