-- The replica whose heartbeat write queued a row of deadlines (null: queued by a sweep, a status change,
-- a registration or start-up). That replica drops the ids it has since written a later deadline for
-- without looking them up (src/catalog/known-deadlines.ts). Existing rows stay null: they are looked up.
ALTER TABLE "project_deadlines" ADD COLUMN "queued_by" bigint;--> statement-breakpoint
-- Ids past their deadline that a sweep could not claim yet (the local writer is behind): due for readers,
-- not retaken by a sweep before this. Null: taken as soon as due.
ALTER TABLE "project_deadlines" ADD COLUMN "not_before" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "idx_project_deadlines_not_before" ON "project_deadlines" USING btree ("not_before") WHERE "project_deadlines"."not_before" is not null;--> statement-breakpoint
-- The mass-offline guard counts the offline flips of the last threshold at every look: read them alone.
CREATE INDEX "idx_status_events_offline_at" ON "project_status_events" USING btree ("at") WHERE "project_status_events"."to_status" = 'offline' and "project_status_events"."from_status" <> 'offline';
