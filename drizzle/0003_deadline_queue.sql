CREATE TABLE "presence_holds" (
	"id" integer PRIMARY KEY DEFAULT 1 NOT NULL,
	"since" timestamp with time zone NOT NULL,
	"until" timestamp with time zone NOT NULL,
	"pending" integer NOT NULL,
	"live" integer NOT NULL,
	CONSTRAINT "presence_holds_one_row" CHECK (id = 1)
);
--> statement-breakpoint
CREATE TABLE "project_deadlines" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"due_at" timestamp with time zone NOT NULL,
	"project_ids" integer[] NOT NULL
);
--> statement-breakpoint
DROP INDEX "idx_projects_due_at";--> statement-breakpoint
CREATE INDEX "idx_project_deadlines_due_at" ON "project_deadlines" USING btree ("due_at");--> statement-breakpoint
-- Heartbeats no longer write an indexed column (their updates stay HOT): the deadlines they set move
-- to a queue of their own. Every deadline stored so far is queued at the end of its 100 ms bucket.
INSERT INTO "project_deadlines" ("due_at", "project_ids")
SELECT to_timestamp(ceil(extract(epoch FROM "due_at") * 10) / 10), array_agg("id")
FROM "projects" WHERE "due_at" IS NOT NULL GROUP BY 1;
--> statement-breakpoint
ALTER TABLE "projects" DROP COLUMN "due_at";