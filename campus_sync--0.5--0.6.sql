/* campus_sync--0.5--0.6.sql */

\echo Use "ALTER EXTENSION campus_sync UPDATE TO '0.6'" to load this file. \quit

-- What 0.6 changes in SQL objects (issue 11): see each section.  The
-- upgrade-chain test (test/integration/test_upgrade.py) proves that 0.1
-- updated through every script has the same catalog as a fresh 0.6.
-- Queued items are not touched.

------------------------------------------------------------------------------
-- Delivered-state memory (0.6): per server and person key, what the target
-- last acknowledged, so that a body it already has is not sent again
-- (server option skip_unchanged, default true).  No personal data beyond
-- the key: a SHA-256 of the URL and the body sent.  Written by deliverers
-- and pushes in the transaction that records the delivery; kept after
-- purge(); removed with its server, or by forget().
------------------------------------------------------------------------------

CREATE TABLE campus_sync.sync_state (
  server_oid   oid NOT NULL,
  person_key   text COLLATE "C" NOT NULL,
  body_hash    bytea NOT NULL,
  remote_id    text,
  delivered_at timestamptz NOT NULL,
  PRIMARY KEY (server_oid, person_key)
);

REVOKE ALL ON campus_sync.sync_state FROM PUBLIC;
-- Not dumped: a restored database gives its servers new OIDs, and a
-- memory that is lost only sends each person once more.

-- What the library records after a batch of deliveries (called as the
-- extension's owner; not for PUBLIC).  A person delivered twice in the
-- batch keeps the last.
CREATE FUNCTION campus_sync.remember_delivered(server oid, keys text[], hashes bytea[],
                                               remote_ids text[], at timestamptz)
RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO campus_sync.sync_state AS s (server_oid, person_key, body_hash, remote_id, delivered_at)
  SELECT DISTINCT ON (d.key) remember_delivered.server, d.key, d.hash, d.remote_id, remember_delivered.at
  FROM unnest(keys, hashes, remote_ids) WITH ORDINALITY AS d(key, hash, remote_id, n)
  ORDER BY d.key, d.n DESC
  ON CONFLICT (server_oid, person_key) DO UPDATE
  SET body_hash = EXCLUDED.body_hash,
      remote_id = coalesce(EXCLUDED.remote_id, s.remote_id),
      delivered_at = EXCLUDED.delivered_at
$$;

-- Clears the memory of one person (key) or of every person of a server, so
-- that their next enqueue is sent whatever the target last acknowledged:
-- the answer to "someone edited it in the vendor's UI".  Returns how many
-- persons were forgotten.
CREATE FUNCTION campus_sync.forget(server name, key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  srv oid;
  n bigint;
BEGIN
  SELECT s.oid INTO srv FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'campus_sync'
  WHERE s.srvname = forget.server;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'campus_sync server "%" does not exist', forget.server
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT srvname FROM pg_foreign_server lists the servers.';
  END IF;
  DELETE FROM campus_sync.sync_state s
  WHERE s.server_oid = srv AND (forget.key IS NULL OR s.person_key = forget.key);
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;

REVOKE ALL ON FUNCTION campus_sync.remember_delivered(oid, text[], bytea[], text[], timestamptz),
              campus_sync.forget(name, text) FROM PUBLIC;

-- Deletes delivered items (they hold personal data) older than older_than,
-- and the items and delivered-state memory of servers that no longer exist
-- (left by a DROP SERVER with event triggers disabled).  The memory of
-- servers that exist is kept.
CREATE OR REPLACE FUNCTION campus_sync.purge(older_than interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT campus_sync.bind_restored_items();  -- restored items are not orphans
  WITH servers AS (
    SELECT b.oid, b.name FROM campus_sync.server_bindings b
  ), gone AS (
    DELETE FROM campus_sync.queue_items q
    WHERE (q.state = 'delivered' AND q.delivered_at < now() - purge.older_than)
       OR q.server_oid NOT IN (SELECT oid FROM servers)
    RETURNING 1
  ), orphans AS (
    DELETE FROM campus_sync.inbox i WHERE i.server_oid NOT IN (SELECT oid FROM servers)
    RETURNING 1
  ), stale_health AS (
    DELETE FROM campus_sync.target_health h WHERE h.server NOT IN (SELECT name FROM servers)
  ), stale_memory AS (
    DELETE FROM campus_sync.sync_state m WHERE m.server_oid NOT IN (SELECT oid FROM servers)
  )
  SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM orphans)
$$;

-- the drop of a server forgets its delivered-state memory
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
    DELETE FROM campus_sync.sync_state m WHERE m.server_oid = srv.objid;
    IF n + m > 0 THEN
      RAISE NOTICE 'campus_sync: discarded % queue items of dropped server "%"', n + m, srv.object_name;
    END IF;
  END LOOP;
END $$;

-- status: how many persons the memory holds, last
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
       p.reason AS paused_reason,
       coalesce(m.remembered, 0) AS remembered
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
) d ON true
LEFT JOIN LATERAL (
  SELECT count(*) AS remembered FROM campus_sync.sync_state m WHERE m.server_oid = s.oid
) m ON true;
