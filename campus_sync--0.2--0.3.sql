/* campus_sync--0.2--0.3.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.3'" to load this file. \quit

-- What 0.3 changes in SQL objects: the background worker.  The upgrade-chain
-- test (test/integration/test_upgrade.py) proves that 0.1 updated through
-- 0.2 with this file has the same catalog as a fresh 0.3.  Queued items are
-- not touched.

------------------------------------------------------------------------------
-- retry() and retry_failed() wake the worker at their commit
------------------------------------------------------------------------------

-- Wakes the background worker when the calling transaction commits (retry()
-- and retry_failed() make items due); nothing when it is not preloaded.
CREATE FUNCTION campus_sync.wake_worker()
RETURNS void
AS 'MODULE_PATHNAME', 'campus_sync_wake_worker'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION campus_sync.wake_worker() FROM PUBLIC;

CREATE OR REPLACE FUNCTION campus_sync.retry(id bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  item campus_sync.queue_items;
  newer bigint;
BEGIN
  SELECT * INTO item FROM campus_sync.queue_items q WHERE q.id = retry.id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'queue item % does not exist', retry.id
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF item.state = 'invalid' THEN
    RAISE EXCEPTION 'queue item % is invalid and cannot be retried', retry.id
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = item.last_error,
            HINT = 'Correct the source row; its next change queues the person again.';
  END IF;
  IF item.state IN ('pending', 'delivered') THEN
    RETURN 0;
  END IF;
  -- a later item of the same person carries a newer state: never resend an older one
  SELECT min(n.id) INTO newer FROM (
    SELECT q.id FROM campus_sync.queue_items q
    WHERE q.server_oid = item.server_oid AND q.person_key = item.person_key AND q.id > item.id
      AND q.state <> 'invalid'
    UNION ALL
    SELECT i.id FROM campus_sync.inbox i
    WHERE i.server_oid = item.server_oid AND i.person_key = item.person_key AND i.id > item.id
      AND i.payload IS NOT NULL) n;
  IF newer IS NOT NULL THEN
    RAISE NOTICE 'queue item % is superseded by item %, which holds a later state of the person', retry.id, newer;
    RETURN 0;
  END IF;
  UPDATE campus_sync.queue_items q
  SET state = 'pending', attempts = 0, next_attempt_at = now()
  WHERE q.id = retry.id;
  PERFORM campus_sync.wake_worker();
  RETURN 1;
END $$;

CREATE OR REPLACE FUNCTION campus_sync.retry_failed(server name DEFAULT NULL)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT campus_sync.wake_worker();
  WITH requeued AS (
    UPDATE campus_sync.queue_items q
    SET state = 'pending', attempts = 0, next_attempt_at = now()
    WHERE q.state = 'failed'
      AND (retry_failed.server IS NULL OR q.server_oid = (
             SELECT s.oid FROM pg_catalog.pg_foreign_server s
             WHERE s.srvname = retry_failed.server))
      AND NOT EXISTS (SELECT 1 FROM campus_sync.queue_items n
                      WHERE n.server_oid = q.server_oid AND n.person_key = q.person_key
                        AND n.id > q.id AND n.state <> 'invalid')
      AND NOT EXISTS (SELECT 1 FROM campus_sync.inbox i
                      WHERE i.server_oid = q.server_oid AND i.person_key = q.person_key
                        AND i.id > q.id AND i.payload IS NOT NULL)
    RETURNING 1)
  SELECT count(*) FROM requeued
$$;

------------------------------------------------------------------------------
-- What the worker is doing: the worker view, and three columns at the end
-- of the status view
------------------------------------------------------------------------------

-- About the worker that serves this database (campus_sync.database); running
-- false when none does.  last_error only for roles that may read the status
-- view.  EXECUTE stays with PUBLIC, like deliverer_xids(): the views call it
-- with the privileges of whoever reads them.
CREATE FUNCTION campus_sync.worker_status(OUT running boolean, OUT pid integer,
                                          OUT database name, OUT state text,
                                          OUT started_at timestamptz,
                                          OUT last_cycle_at timestamptz,
                                          OUT delivered bigint, OUT last_error text,
                                          OUT last_error_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'campus_sync_worker_status'
LANGUAGE C VOLATILE;

CREATE VIEW campus_sync.worker AS
SELECT w.running, w.pid, w.database, w.state, w.started_at, w.last_cycle_at,
       w.delivered, w.last_error, w.last_error_at
FROM campus_sync.worker_status() w;

REVOKE ALL ON campus_sync.worker FROM PUBLIC;

CREATE OR REPLACE VIEW campus_sync.status AS
SELECT s.srvname AS server,
       coalesce(h.up, true) AS up,
       coalesce(w.pending, 0) AS pending,
       coalesce(w.in_flight, 0) AS in_flight,
       coalesce(w.retrying, 0) AS retrying,
       coalesce(a.failed, 0) AS failed,
       coalesce(a.invalid, 0) AS invalid,
       coalesce(d.delivered_last_hour, 0) AS delivered_last_hour,
       w.oldest_pending_age,
       h.last_success_at,
       h.last_error,
       wk.running AS worker_running,
       wk.pid AS worker_pid,
       wk.last_cycle_at AS worker_last_cycle_at
FROM pg_catalog.pg_foreign_server s
CROSS JOIN campus_sync.worker_status() wk
JOIN pg_catalog.pg_foreign_data_wrapper f ON f.oid = s.srvfdw AND f.fdwname = 'campus_sync'
LEFT JOIN campus_sync.target_health h ON h.server = s.srvname::text
LEFT JOIN LATERAL (
  SELECT count(*) FILTER (WHERE x.state = 'pending' AND NOT x.busy) AS pending,
         count(*) FILTER (WHERE x.busy) AS in_flight,
         count(*) FILTER (WHERE x.state = 'retrying' AND NOT x.busy) AS retrying,
         now() - min(x.enqueued_at) AS oldest_pending_age
  FROM (SELECT q.state, q.enqueued_at,
               q.xmax IN (SELECT campus_sync.deliverer_xids()) AS busy
        FROM campus_sync.queue_items q
        WHERE q.server_oid = s.oid AND q.state IN ('pending', 'retrying')
        UNION ALL
        SELECT 'pending', i.enqueued_at, i.xmax IN (SELECT campus_sync.deliverer_xids())
        FROM campus_sync.inbox i
        WHERE i.server_oid = s.oid AND i.payload IS NOT NULL) x
) w ON true
LEFT JOIN LATERAL (
  SELECT count(*) FILTER (WHERE x.state = 'failed') AS failed,
         count(*) FILTER (WHERE x.state = 'invalid') AS invalid
  FROM (SELECT q.state FROM campus_sync.queue_items q
        WHERE q.server_oid = s.oid AND q.state IN ('failed', 'invalid')
        UNION ALL
        SELECT 'invalid' FROM campus_sync.inbox i
        WHERE i.server_oid = s.oid AND i.payload IS NULL) x
) a ON true
LEFT JOIN LATERAL (
  SELECT count(*) AS delivered_last_hour
  FROM campus_sync.queue_items q
  WHERE q.server_oid = s.oid AND q.state = 'delivered'
    AND q.delivered_at > now() - interval '1 hour'
) d ON true;
