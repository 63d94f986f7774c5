-- settled_by: the operator who settled a line by hand (RecordManualRefund, RecordDeductOutcome).
-- Reconcile reads it: a line refunded by hand may still show at its channel until the partner's
-- own refund does, which is no mismatch (issue 18).
ALTER TABLE order_lines ADD COLUMN settled_by TEXT NOT NULL DEFAULT '';
