/* campus_sync--0.4--0.5.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.5'" to load this file. \quit

-- What 0.5 changes in SQL objects: the key a server's items are keyed by
-- comes from the library's service descriptors (server_key_field()), not
-- from a CASE over the two services 0.4 knew: a webhook server is keyed by
-- its key_field.  pause() and resume(), with campus_sync.paused_servers,
-- two columns at the end of the status view, and the drop of a server
-- forgets its pause.  payload() and push() for any server.  The upgrade-chain test (test/integration/test_upgrade.py)
-- proves that 0.1 updated through every script has the same catalog as a
-- fresh 0.5.  Queued items are not touched.

-- The field a server's items are keyed by, by its service's own rule (the
-- library's service descriptors: one source, whatever services it has).
CREATE FUNCTION campus_sync.server_key_field(server oid)
RETURNS text
AS 'MODULE_PATHNAME', 'campus_sync_server_key_field'
LANGUAGE C STABLE STRICT;

CREATE OR REPLACE VIEW campus_sync.server_bindings AS
SELECT s.oid, s.srvname::text AS name, o.service,
       campus_sync.server_key_field(s.oid) AS key_field
FROM pg_catalog.pg_foreign_server s
JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'campus_sync'
CROSS JOIN LATERAL (
  SELECT max(t.option_value) FILTER (WHERE t.option_name = 'service') AS service
  FROM pg_catalog.pg_options_to_table(s.srvoptions) t) o;

------------------------------------------------------------------------------
-- Pausing a target (0.5): it queues but sends nothing, for a vendor's
-- maintenance window
------------------------------------------------------------------------------

CREATE TABLE campus_sync.paused_servers (
  server_oid oid PRIMARY KEY,
  paused_at  timestamptz NOT NULL DEFAULT now(),
  paused_by  text NOT NULL,
  reason     text
);

REVOKE ALL ON campus_sync.paused_servers FROM PUBLIC;

-- deliver() and the worker claim nothing for a paused server (what is in
-- flight ends); the push functions refuse it; enqueue() and the sync
-- trigger queue as always.  True when it was not paused already.
CREATE FUNCTION campus_sync.pause(server name, reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  srv oid;
  fresh boolean;
BEGIN
  SELECT s.oid INTO srv FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'campus_sync'
  WHERE s.srvname = pause.server;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'campus_sync server "%" does not exist', pause.server
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT srvname FROM pg_foreign_server lists the servers.';
  END IF;
  INSERT INTO campus_sync.paused_servers AS p (server_oid, paused_by, reason)
  VALUES (srv, session_user, pause.reason)
  ON CONFLICT (server_oid) DO UPDATE SET reason = EXCLUDED.reason
  RETURNING (p.xmax = 0) INTO fresh;
  RETURN fresh;
END $$;

-- Sends again from now on (the worker at once).  True when it was paused.
CREATE FUNCTION campus_sync.resume(server name)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM campus_sync.paused_servers p
  USING pg_catalog.pg_foreign_server s
  WHERE s.oid = p.server_oid AND s.srvname = resume.server;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM campus_sync.wake_worker();
  RETURN true;
END $$;

REVOKE ALL ON FUNCTION campus_sync.pause(name, text), campus_sync.resume(name) FROM PUBLIC;

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
       wk.last_cycle_at AS worker_last_cycle_at,
       p.paused_at,
       p.reason AS paused_reason
FROM pg_catalog.pg_foreign_server s
CROSS JOIN campus_sync.worker_status() wk
JOIN pg_catalog.pg_foreign_data_wrapper f ON f.oid = s.srvfdw AND f.fdwname = 'campus_sync'
LEFT JOIN campus_sync.target_health h ON h.server = s.srvname::text
LEFT JOIN campus_sync.paused_servers p ON p.server_oid = s.oid
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

CREATE OR REPLACE FUNCTION campus_sync.discard_items_of_dropped_servers()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  srv record;
  n bigint;
  m bigint;
BEGIN
  FOR srv IN SELECT d.objid, d.object_name FROM pg_catalog.pg_event_trigger_dropped_objects() d
             WHERE d.object_type = 'server'
  LOOP
    DELETE FROM campus_sync.queue_items q WHERE q.server_oid = srv.objid;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM campus_sync.inbox i WHERE i.server_oid = srv.objid;
    GET DIAGNOSTICS m = ROW_COUNT;
    DELETE FROM campus_sync.target_health h WHERE h.server = srv.object_name;
    DELETE FROM campus_sync.paused_servers p WHERE p.server_oid = srv.objid;
    IF n + m > 0 THEN
      RAISE NOTICE 'campus_sync: discarded % queue items of dropped server "%"', n + m, srv.object_name;
    END IF;
  END LOOP;
END $$;

-- Any server's body and push, whatever its service (0.5): a webhook's, or a
-- service's that has no functions of its own.  server is required.
CREATE FUNCTION campus_sync.payload(person record, mapping jsonb DEFAULT NULL,
                                    server name DEFAULT NULL, options jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'campus_sync_payload'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION campus_sync.push(person record, mapping jsonb DEFAULT NULL,
                                 server name DEFAULT NULL, options jsonb DEFAULT NULL)
RETURNS campus_sync.push_result
AS 'MODULE_PATHNAME', 'campus_sync_push'
LANGUAGE C VOLATILE;

