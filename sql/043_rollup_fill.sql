-- Filling the continuous aggregates over history stored before they existed (an edition
-- upgrade: 041 applies to a server that already holds minutes). One row per fill; filled_to
-- moves after every window, so an interrupted fill resumes where it stopped. Used on the
-- timescale licence only, created everywhere so an upgrade needs no further migration.
CREATE TABLE market.rollup_fill (
    name        text PRIMARY KEY,
    range_start timestamptz NOT NULL,
    range_end   timestamptz NOT NULL,
    filled_to   timestamptz NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
