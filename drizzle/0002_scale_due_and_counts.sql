CREATE TABLE "project_status_counts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"online" integer DEFAULT 0 NOT NULL,
	"degraded" integer DEFAULT 0 NOT NULL,
	"offline" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
DROP INDEX "idx_projects_status";--> statement-breakpoint
ALTER TABLE "projects" ADD COLUMN "due_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "idx_status_events_at" ON "project_status_events" USING btree ("at");--> statement-breakpoint
CREATE INDEX "idx_projects_status_slug" ON "projects" USING btree ("status","slug");--> statement-breakpoint
CREATE INDEX "idx_projects_due_at" ON "projects" USING btree ("due_at") WHERE "projects"."due_at" is not null;--> statement-breakpoint
-- Inserts and deletes of projects keep the counts by themselves, whatever path they take; status
-- changes are counted by the statements that claim them (a trigger on every heartbeat UPDATE would
-- cost each write a transition table).
CREATE FUNCTION "project_status_counts_on_insert"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO "project_status_counts" ("online", "degraded", "offline")
	SELECT count(*) FILTER (WHERE "status" = 'online'), count(*) FILTER (WHERE "status" = 'degraded'),
	       count(*) FILTER (WHERE "status" = 'offline')
	FROM "new_rows" HAVING count(*) > 0;
	RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION "project_status_counts_on_delete"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO "project_status_counts" ("online", "degraded", "offline")
	SELECT -count(*) FILTER (WHERE "status" = 'online'), -count(*) FILTER (WHERE "status" = 'degraded'),
	       -count(*) FILTER (WHERE "status" = 'offline')
	FROM "old_rows" HAVING count(*) > 0;
	RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "projects_count_inserts" AFTER INSERT ON "projects" REFERENCING NEW TABLE AS "new_rows"
	FOR EACH STATEMENT EXECUTE FUNCTION "project_status_counts_on_insert"();
--> statement-breakpoint
CREATE TRIGGER "projects_count_deletes" AFTER DELETE ON "projects" REFERENCING OLD TABLE AS "old_rows"
	FOR EACH STATEMENT EXECUTE FUNCTION "project_status_counts_on_delete"();
--> statement-breakpoint
-- The catalog as it stands, counted once.
INSERT INTO "project_status_counts" ("online", "degraded", "offline")
SELECT count(*) FILTER (WHERE "status" = 'online'), count(*) FILTER (WHERE "status" = 'degraded'),
       count(*) FILTER (WHERE "status" = 'offline')
FROM "projects";
--> statement-breakpoint
-- Every project that may still change gets looked at by the first sweep, which sets its real deadline.
UPDATE "projects" SET "due_at" = now() WHERE "status" <> 'offline' OR "last_heartbeat_at" IS NOT NULL;
