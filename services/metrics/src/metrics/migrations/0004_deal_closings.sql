-- How many times each deal became won and lost: the monotonic counter
-- funnel_deals_closed_total{outcome} is their sum (a reopened deal's earlier close
-- still happened). Deals folded before this migration are re-folded on their next event;
-- until then they count their current status once.
ALTER TABLE deals ADD COLUMN wins integer NOT NULL DEFAULT 0;
ALTER TABLE deals ADD COLUMN losses integer NOT NULL DEFAULT 0;
UPDATE deals SET wins = (status = 'won')::int, losses = (status = 'lost')::int;
