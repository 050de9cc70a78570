-- The qualification score's reasons, shown to the rep next to the score (inbox, API).
ALTER TABLE handoffs ADD COLUMN score_reasons jsonb NOT NULL DEFAULT '[]'::jsonb;
