-- What the saga knows of a step's ledger beyond its state (DESIGN §9):
-- deduct_seen: a deduct was reported while the step's refund was outstanding; if that refund
--   then reports that it found nothing (0 points), the deduct came after it: refund again.
-- refunded_points: what the refund that settled the step gave back; a deduct reported after a
--   refund that gave points back is that same deduct, late; after one that gave nothing back
--   it is a deduct that overtook its refund, and is refunded again.
ALTER TABLE order_lines ADD COLUMN deduct_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE order_lines ADD COLUMN refunded_points INTEGER NOT NULL DEFAULT 0;
ALTER TABLE order_quotas ADD COLUMN deduct_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE order_quotas ADD COLUMN refunded_points INTEGER NOT NULL DEFAULT 0;
