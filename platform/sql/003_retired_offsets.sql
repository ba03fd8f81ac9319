-- A switch fences the retired version's runners by storing its offsets as -1 - n ("retired at
-- offset n", see ProjectionStore.switch): their conditional upsert no longer matches. A live
-- version's offsets stay >= 0 (the runners only ever store a record's offset + 1).
ALTER TABLE eventray_projection_offsets DROP CONSTRAINT IF EXISTS eventray_projection_offsets_next_offset_check;
