-- awaiting_deduct (DESIGN §9): the step's refund found nothing at a channel that may still take
-- the deduct on its way (no anti-hanging or no null compensation). The step stays open — its
-- order COMPENSATING — until that deduct's outcome is known: deducted → refunded again;
-- rejected → nothing held.
ALTER TABLE order_lines ADD COLUMN awaiting_deduct BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_quotas ADD COLUMN awaiting_deduct BIGINT NOT NULL DEFAULT 0;
