-- The end of a guard's hold on a row's offline flip, written by the sweep that holds it and read by every
-- replica's answers (src/catalog/catalog-service.ts statusSql). Not indexed: heartbeat updates stay HOT.
ALTER TABLE "projects" ADD COLUMN "held_until" timestamp with time zone;