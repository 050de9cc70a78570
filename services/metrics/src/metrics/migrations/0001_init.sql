-- Stage counters, updated in the same transaction as the inbox record, so a restart
-- or a redelivery neither loses nor recounts an event.
CREATE TABLE stage_counts (
    stage    text   NOT NULL,
    source   text   NOT NULL,
    campaign text   NOT NULL DEFAULT '',
    count    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (stage, source, campaign)
);
