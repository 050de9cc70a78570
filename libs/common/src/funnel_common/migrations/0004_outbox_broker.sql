-- The broker this outbox's sent rows went to, by its cluster id. Only a volatile broker
-- (the embedded one) is tracked: it takes a new cluster id at each start, because it
-- starts empty, so a relay that finds another id publishes every sent row again.
CREATE TABLE outbox_broker (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id text NOT NULL
);
