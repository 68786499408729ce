-- The background worker's SQL face, on a server where campus_sync is not
-- in shared_preload_libraries (the worker itself is tested by
-- test/integration/test_worker.py, on clusters of its own).
\set VERBOSITY terse

-- No worker serves this database: the views say so.
SELECT running, pid, database, state, started_at, last_cycle_at, delivered, last_error, last_error_at
FROM campus_sync.worker;
CREATE SERVER cs_w_opscom FOREIGN DATA WRAPPER campus_sync
  OPTIONS (service 'opscom', url 'http://127.0.0.1:1', login_source 'BANNER');
SELECT server, worker_running, worker_pid, worker_last_cycle_at FROM campus_sync.status
WHERE server = 'cs_w_opscom';

-- The settings: the poll interval changes with a reload, not per session;
-- the worker's database is read at server start (here, without the
-- worker, only a reload changes it: PostgreSQL allows server-start
-- settings only to preloaded libraries), and only superusers see it.
SELECT name, boot_val, unit, context FROM pg_settings
WHERE name LIKE 'campus\_sync.%' ORDER BY 1;
SET campus_sync.poll_interval = '5s';
SET campus_sync.database = 'other';
CREATE ROLE cs_w_nobody;
SET ROLE cs_w_nobody;
-- superuser-only: refused (the message differs between versions, the SQLSTATE not)
DO $$
BEGIN
  PERFORM current_setting('campus_sync.database');
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'campus_sync.database is not shown: SQLSTATE %', SQLSTATE;
END $$;
SHOW campus_sync.poll_interval;
SELECT running FROM campus_sync.worker;
RESET ROLE;
DROP ROLE cs_w_nobody;

-- Without a worker, waking it is a no-op (retry() and retry_failed() call it).
SELECT campus_sync.wake_worker();
DROP SERVER cs_w_opscom;
