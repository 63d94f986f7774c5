-- TCC (DESIGN §12): an order may be CONFIRMING; an order and each of its steps say how they are
-- taken (SAGA: deduct, refund; TCC: freeze, confirm, cancel), and a held step when its hold
-- lapses.
ALTER TABLE orders DROP CONSTRAINT orders_state_check;
ALTER TABLE orders ADD CONSTRAINT orders_state_check
    CHECK (state IN ('PENDING', 'CONFIRMING', 'COMPENSATING', 'COMPLETED', 'CANCELLED'));
ALTER TABLE orders ADD COLUMN protocol TEXT NOT NULL DEFAULT 'SAGA';
ALTER TABLE order_lines ADD COLUMN protocol TEXT NOT NULL DEFAULT 'SAGA';
ALTER TABLE order_lines ADD COLUMN hold_expires_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_quotas ADD COLUMN protocol TEXT NOT NULL DEFAULT 'SAGA';
ALTER TABLE order_quotas ADD COLUMN hold_expires_at_ms BIGINT NOT NULL DEFAULT 0;
