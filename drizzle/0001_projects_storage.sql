-- Heartbeats rewrite a project's row every few seconds without touching an indexed column. Leaving
-- half of each page free lets PostgreSQL keep those updates on the same page (HOT updates: no index
-- writes, dead versions pruned on the spot); with the default of 100 nearly every update moved the
-- row and wrote every index. Vacuum more eagerly too: the table is small and churns constantly.
ALTER TABLE "projects" SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);
