-- What kind of dead letter it is: 'outcome_unknown' for a deduct whose effect at its channel
-- cannot be known (an operator records it); '' for a message that could not be handled.
ALTER TABLE dead_letters ADD COLUMN kind TEXT NOT NULL DEFAULT '';
