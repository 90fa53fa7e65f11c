-- Provenance that makes a migration rollback safe (see README "Provenance and rollback").
-- source, batch_id: the writer whose values the row holds (a value-changing write replaces
--   them, so "current values came from elsewhere" is visible on the row).
-- asserted_by: the other writers that later wrote exactly these values, as labels
--   'source' or 'source#batch_id'; NULL when nobody did (the common case, which costs nothing:
--   a new row never carries it, and only a write that meets another writer's equal row sets it).
-- Rolling back batch B deletes a row only if B set its values and nobody else asserted them;
-- a row B set that others asserted is handed to the first of them; B leaves the lists it is on.
ALTER TABLE market.candles ADD COLUMN IF NOT EXISTS asserted_by text[];
ALTER TABLE market.reference_candles ADD COLUMN IF NOT EXISTS asserted_by text[];
ALTER TABLE market.funding_rates ADD COLUMN IF NOT EXISTS asserted_by text[];
ALTER TABLE market.trades ADD COLUMN IF NOT EXISTS asserted_by text[];
