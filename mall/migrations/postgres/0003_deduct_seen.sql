-- A deduct reported while the step's refund was outstanding (DESIGN §9): if that refund then
-- reports that it found nothing (0 points), the deduct came after it and is refunded again.
ALTER TABLE order_lines ADD COLUMN deduct_seen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_quotas ADD COLUMN deduct_seen BIGINT NOT NULL DEFAULT 0;
