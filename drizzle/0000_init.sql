CREATE TABLE "fanout_results" (
	"run_id" varchar(36) NOT NULL,
	"slug" varchar(50) NOT NULL,
	"outcome" varchar(20) NOT NULL,
	"result" jsonb,
	"error" text,
	"duration_ms" integer,
	CONSTRAINT "fanout_results_run_id_slug_pk" PRIMARY KEY("run_id","slug"),
	CONSTRAINT "fanout_results_outcome_check" CHECK ("fanout_results"."outcome" in ('pending', 'ok', 'error', 'timeout', 'not_allowed', 'offline'))
);
--> statement-breakpoint
CREATE TABLE "fanout_runs" (
	"id" varchar(36) PRIMARY KEY NOT NULL,
	"action" varchar(64) NOT NULL,
	"targets" jsonb NOT NULL,
	"params" jsonb,
	"timeout_ms" integer NOT NULL,
	"status" varchar(20) DEFAULT 'running' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	CONSTRAINT "fanout_runs_status_check" CHECK ("fanout_runs"."status" in ('running', 'done'))
);
--> statement-breakpoint
CREATE TABLE "integration_edges" (
	"id" serial PRIMARY KEY NOT NULL,
	"from_project_id" integer NOT NULL,
	"to_project_id" integer NOT NULL,
	"kind" varchar(50) NOT NULL,
	"strength" double precision DEFAULT 0.5 NOT NULL,
	"details" jsonb,
	"source" varchar(20) NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "integration_edges_strength_check" CHECK ("integration_edges"."strength" >= 0 and "integration_edges"."strength" <= 1),
	CONSTRAINT "integration_edges_source_check" CHECK ("integration_edges"."source" in ('config', 'api', 'discovered'))
);
--> statement-breakpoint
CREATE TABLE "project_metrics" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"project_id" integer NOT NULL,
	"metric_type" varchar(100) NOT NULL,
	"value_number" double precision,
	"value_text" varchar(500),
	"observed_at" timestamp with time zone DEFAULT now() NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "project_status_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"project_id" integer NOT NULL,
	"from_status" varchar(20) NOT NULL,
	"to_status" varchar(20) NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"reason" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "projects" (
	"id" serial PRIMARY KEY NOT NULL,
	"slug" varchar(50) NOT NULL,
	"name" varchar(200) NOT NULL,
	"hub_url" varchar(500) NOT NULL,
	"mesh_namespace" varchar(100) NOT NULL,
	"status" varchar(20) DEFAULT 'offline' NOT NULL,
	"tags" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"allow_fanout" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"last_heartbeat_at" timestamp with time zone,
	"reported_health" varchar(20),
	"version" varchar(100),
	"interval_s" real,
	"source" varchar(20) DEFAULT 'api' NOT NULL,
	"configured" boolean DEFAULT false NOT NULL,
	"status_changed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "projects_slug_unique" UNIQUE("slug"),
	CONSTRAINT "projects_status_check" CHECK ("projects"."status" in ('online', 'offline', 'degraded')),
	CONSTRAINT "projects_source_check" CHECK ("projects"."source" in ('config', 'api', 'heartbeat')),
	CONSTRAINT "projects_health_check" CHECK ("projects"."reported_health" is null or "projects"."reported_health" in ('ok', 'degraded'))
);
--> statement-breakpoint
ALTER TABLE "fanout_results" ADD CONSTRAINT "fanout_results_run_id_fanout_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."fanout_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_edges" ADD CONSTRAINT "integration_edges_from_project_id_projects_id_fk" FOREIGN KEY ("from_project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_edges" ADD CONSTRAINT "integration_edges_to_project_id_projects_id_fk" FOREIGN KEY ("to_project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "project_metrics" ADD CONSTRAINT "project_metrics_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "project_status_events" ADD CONSTRAINT "project_status_events_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "idx_fanout_runs_created_at" ON "fanout_runs" USING btree ("created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "uq_integration_edges" ON "integration_edges" USING btree ("from_project_id","to_project_id","kind");--> statement-breakpoint
CREATE INDEX "idx_integration_edges_to" ON "integration_edges" USING btree ("to_project_id");--> statement-breakpoint
CREATE UNIQUE INDEX "uq_project_metrics_observation" ON "project_metrics" USING btree ("project_id","metric_type","observed_at");--> statement-breakpoint
CREATE INDEX "idx_project_metrics_observed_at" ON "project_metrics" USING btree ("observed_at");--> statement-breakpoint
CREATE INDEX "idx_status_events_project_at" ON "project_status_events" USING btree ("project_id","at");--> statement-breakpoint
CREATE INDEX "idx_projects_status" ON "projects" USING btree ("status");