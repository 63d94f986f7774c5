-- captured (DESIGN §9): values a channel's deduct answer gave (its own transaction id), as a JSON
-- object of strings; the line's refund sends them back, since the partner's reversal needs them.
ALTER TABLE order_lines ADD COLUMN captured TEXT NOT NULL DEFAULT '';
