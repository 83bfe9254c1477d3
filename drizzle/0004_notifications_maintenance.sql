CREATE TABLE "notification_deliveries" (
	"id" varchar(36) PRIMARY KEY NOT NULL,
	"notifier_id" integer NOT NULL,
	"slug" varchar(50) NOT NULL,
	"event" varchar(20) NOT NULL,
	"body" text NOT NULL,
	"status" varchar(20) DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone NOT NULL,
	"occurred_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"delivered_at" timestamp with time zone,
	"last_error" varchar(500),
	"last_status_code" integer,
	CONSTRAINT "notification_deliveries_status_check" CHECK ("notification_deliveries"."status" in ('pending', 'delivered', 'failed')),
	CONSTRAINT "notification_deliveries_event_check" CHECK ("notification_deliveries"."event" in ('transition', 'flapping', 'stable', 'maintenance_ended'))
);
--> statement-breakpoint
CREATE TABLE "notifiers" (
	"id" serial PRIMARY KEY NOT NULL,
	"name" varchar(200),
	"url" varchar(2000) NOT NULL,
	"secret" varchar(500),
	"format" varchar(20) DEFAULT 'json' NOT NULL,
	"filters" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"source" varchar(20) NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "notifiers_format_check" CHECK ("notifiers"."format" in ('json', 'slack')),
	CONSTRAINT "notifiers_source_check" CHECK ("notifiers"."source" in ('config', 'api'))
);
--> statement-breakpoint
ALTER TABLE "projects" DROP CONSTRAINT "projects_health_check";--> statement-breakpoint
ALTER TABLE "project_status_events" ADD COLUMN "maintenance" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "projects" ADD COLUMN "maintenance_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "projects" ADD COLUMN "maintenance_reason" varchar(500);--> statement-breakpoint
ALTER TABLE "projects" ADD COLUMN "flapping" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "notification_deliveries" ADD CONSTRAINT "notification_deliveries_notifier_id_notifiers_id_fk" FOREIGN KEY ("notifier_id") REFERENCES "public"."notifiers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "idx_deliveries_due" ON "notification_deliveries" USING btree ("next_attempt_at") WHERE "notification_deliveries"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "idx_deliveries_status_id" ON "notification_deliveries" USING btree ("status","id");--> statement-breakpoint
CREATE INDEX "idx_deliveries_notifier" ON "notification_deliveries" USING btree ("notifier_id");--> statement-breakpoint
CREATE UNIQUE INDEX "uq_notifiers_config_name" ON "notifiers" USING btree ("name") WHERE "notifiers"."source" = 'config';--> statement-breakpoint
CREATE INDEX "idx_projects_flapping" ON "projects" USING btree ("status_changed_at") WHERE "projects"."flapping";--> statement-breakpoint
CREATE INDEX "idx_projects_maintenance_until" ON "projects" USING btree ("maintenance_until") WHERE "projects"."maintenance_until" is not null;--> statement-breakpoint
ALTER TABLE "projects" ADD CONSTRAINT "projects_health_check" CHECK ("projects"."reported_health" is null or "projects"."reported_health" in ('ok', 'degraded', 'leaving'));