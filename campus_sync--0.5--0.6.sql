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
) WITH (fillfactor = 80);           -- room for HOT updates: a person is delivered again and again

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
  srv oid := campus_sync.server_oid_of(forget.server);
  n bigint;
BEGIN
  DELETE FROM campus_sync.sync_state s
  WHERE s.server_oid = srv AND (forget.key IS NULL OR s.person_key = forget.key);
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;

REVOKE ALL ON FUNCTION campus_sync.remember_delivered(oid, text[], bytea[], text[], timestamptz),
              campus_sync.forget(name, text) FROM PUBLIC;


------------------------------------------------------------------------------
-- Deprovisioning (0.6): disable items and the held state
------------------------------------------------------------------------------

ALTER TABLE campus_sync.queue_items DROP CONSTRAINT queue_items_state_check,
  ADD CONSTRAINT queue_items_state_check
    CHECK (state IN ('pending', 'retrying', 'delivered', 'failed', 'invalid', 'held')),
  ADD COLUMN kind text NOT NULL DEFAULT 'upsert' CHECK (kind IN ('upsert', 'disable'));
ALTER TABLE campus_sync.inbox ADD COLUMN kind text NOT NULL DEFAULT 'upsert';

DROP INDEX campus_sync.queue_items_key;
-- a person's waiting items, for the engine's claims (coalescing, per-person
-- order), server by server: a claim for one server never walks another's
-- items.  Narrow: every item moved from the inbox enters it.  Held items
-- too: a newer item of the person supersedes them.
CREATE INDEX queue_items_key ON campus_sync.queue_items (server_oid, person_key)
  WHERE state IN ('pending', 'retrying', 'invalid', 'held');
DROP INDEX campus_sync.queue_items_attention;
-- items that need a person's attention
CREATE INDEX queue_items_attention ON campus_sync.queue_items (server_oid, state)
  WHERE state IN ('failed', 'invalid', 'held');

------------------------------------------------------------------------------
-- Deprovisioning (0.6): with the server option on_delete 'disable', a
-- DELETE on the person table queues a disable of the person (kind
-- 'disable'), in order with its other items.  The mass-change guard: past
-- max_disables_per_hour a server's disables are 'held', sent by nobody
-- until release_held() (or dropped by discard_held()).
------------------------------------------------------------------------------

-- Each server's disables in its current hour (a window that opens with
-- the first disable after the last one closed).
CREATE TABLE campus_sync.disable_windows (
  server_oid   oid PRIMARY KEY,
  opened_at    timestamptz NOT NULL,
  disables     integer NOT NULL
);

REVOKE ALL ON campus_sync.disable_windows FROM PUBLIC;

-- How many of n new disables of a server may be sent within its hour
-- (called by the delivery engine, as the extension's owner, when it moves
-- them into the queue); the rest are held.
CREATE FUNCTION campus_sync.admit_disables(server oid, n integer, per_hour integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  w campus_sync.disable_windows;
  admitted integer;
BEGIN
  INSERT INTO campus_sync.disable_windows AS d VALUES (admit_disables.server, now(), 0)
  ON CONFLICT (server_oid) DO UPDATE
  SET opened_at = CASE WHEN d.opened_at <= now() - interval '1 hour' THEN now() ELSE d.opened_at END,
      disables = CASE WHEN d.opened_at <= now() - interval '1 hour' THEN 0 ELSE d.disables END
  RETURNING * INTO w;
  admitted := least(n, greatest(per_hour - w.disables, 0));
  UPDATE campus_sync.disable_windows d SET disables = d.disables + admitted
  WHERE d.server_oid = admit_disables.server;
  RETURN admitted;
END $$;

-- A person decides: the held disables of a server are sent (release), or
-- dropped (discard).  One that a newer item of the person has made moot
-- (a re-insert after the delete) is dropped by either.  Returns how many
-- were released or discarded.
CREATE FUNCTION campus_sync.release_held(server name)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  srv oid := campus_sync.server_oid_of(release_held.server);
  n bigint;
BEGIN
  PERFORM campus_sync.drop_moot_held(srv);
  UPDATE campus_sync.queue_items q SET state = 'pending', next_attempt_at = now(),
         last_error = format('held: released by %s at %s', session_user, now())
  WHERE q.server_oid = srv AND q.state = 'held';
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    PERFORM campus_sync.wake_worker();
  END IF;
  RETURN n;
END $$;

CREATE FUNCTION campus_sync.discard_held(server name)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  srv oid := campus_sync.server_oid_of(discard_held.server);
  n bigint;
BEGIN
  DELETE FROM campus_sync.queue_items q WHERE q.server_oid = srv AND q.state = 'held';
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;

-- A campus_sync server's OID by name; raises when there is none.
CREATE FUNCTION campus_sync.server_oid_of(server name)
RETURNS oid
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  srv oid;
BEGIN
  SELECT s.oid INTO srv FROM pg_catalog.pg_foreign_server s
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'campus_sync'
  WHERE s.srvname = server_oid_of.server;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'campus_sync server "%" does not exist', server_oid_of.server
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT srvname FROM pg_foreign_server lists the servers.';
  END IF;
  RETURN srv;
END $$;

-- Held disables of persons with a newer item (any state, or in the inbox)
-- are moot: the newer one says what the person is now.
CREATE FUNCTION campus_sync.drop_moot_held(server oid)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH moot AS (
    DELETE FROM campus_sync.queue_items h
    WHERE h.server_oid = drop_moot_held.server AND h.state = 'held'
      AND (EXISTS (SELECT FROM campus_sync.queue_items n
                   WHERE n.server_oid = h.server_oid AND n.person_key = h.person_key AND n.id > h.id)
           OR EXISTS (SELECT FROM campus_sync.inbox i
                      WHERE i.server_oid = h.server_oid AND i.person_key = h.person_key AND i.id > h.id))
    RETURNING 1)
  SELECT count(*) FROM moot
$$;

REVOKE ALL ON FUNCTION campus_sync.admit_disables(oid, integer, integer),
              campus_sync.release_held(name), campus_sync.discard_held(name),
              campus_sync.server_oid_of(name), campus_sync.drop_moot_held(oid) FROM PUBLIC;

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
  ), stale_windows AS (
    DELETE FROM campus_sync.disable_windows d WHERE d.server_oid NOT IN (SELECT oid FROM servers)
  )
  SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM orphans)
$$;

-- the drop of a server forgets its memory and its disable window
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
    DELETE FROM campus_sync.disable_windows d WHERE d.server_oid = srv.objid;
    IF n + m > 0 THEN
      RAISE NOTICE 'campus_sync: discarded % queue items of dropped server "%"', n + m, srv.object_name;
    END IF;
  END LOOP;
END $$;

-- queue: the item's kind, last
-- server: the server's name now (items follow the server, not its name)
CREATE OR REPLACE VIEW campus_sync.queue AS
SELECT q.id, coalesce((SELECT s.srvname::text FROM pg_catalog.pg_foreign_server s
                       WHERE s.oid = q.server_oid), q.server) AS server,
       q.person_key,
       CASE WHEN q.state IN ('pending', 'retrying')
                 AND q.xmax IN (SELECT campus_sync.deliverer_xids())
            THEN 'in_flight' ELSE q.state END AS state,
       q.attempts, q.next_attempt_at, q.last_http_status, q.last_error, q.remote_id,
       q.enqueued_at, q.delivered_at, q.kind
FROM campus_sync.queue_items q
UNION ALL
SELECT i.id, coalesce((SELECT s.srvname::text FROM pg_catalog.pg_foreign_server s
                       WHERE s.oid = i.server_oid), i.server),
       i.person_key,
       CASE WHEN i.xmax IN (SELECT campus_sync.deliverer_xids()) THEN 'in_flight'
            WHEN i.payload IS NULL THEN 'invalid' ELSE 'pending' END,
       0, i.enqueued_at, NULL::integer, i.error, NULL::text, i.enqueued_at, NULL::timestamptz,
       i.kind
FROM campus_sync.inbox i;

-- status: how many persons the memory holds and how many items are held, last
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
       coalesce(m.remembered, 0) AS remembered,
       coalesce(a.held, 0) AS held
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
         count(*) FILTER (WHERE x.state = 'invalid') AS invalid,
         count(*) FILTER (WHERE x.state = 'held') AS held
  FROM (SELECT q.state FROM campus_sync.queue_items q
        WHERE q.server_oid = s.oid AND q.state IN ('failed', 'invalid', 'held')
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

-- held items wait too
-- ALTER SERVER that changes what the waiting items were built for (the
-- service, or the person key: CloudCard's find_by) is refused.
CREATE OR REPLACE FUNCTION campus_sync.refuse_server_change_under_waiting_items()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  srv record;
  waiting record;
BEGIN
  FOR srv IN
    SELECT b.oid, b.name AS srvname, b.service, b.key_field
    FROM pg_catalog.pg_event_trigger_ddl_commands() c
    JOIN campus_sync.server_bindings b ON b.oid = c.objid
    WHERE c.object_type = 'server'
  LOOP
    SELECT count(*) AS n, min(x.service) AS service, min(x.key_field) AS key_field INTO waiting
    FROM (SELECT q.service, q.key_field FROM campus_sync.queue_items q
          WHERE q.server_oid = srv.oid AND q.state IN ('pending', 'retrying', 'held')
          UNION ALL
          SELECT i.service, i.key_field FROM campus_sync.inbox i
          WHERE i.server_oid = srv.oid AND i.payload IS NOT NULL) x
    WHERE x.service IS DISTINCT FROM srv.service OR x.key_field IS DISTINCT FROM srv.key_field;
    IF waiting.n > 0 THEN
      RAISE EXCEPTION 'cannot change server "%" to service % keyed by % while % queued items wait for it',
                      srv.srvname, srv.service, srv.key_field, waiting.n
        USING ERRCODE = 'object_in_use',
              DETAIL = format('They were built for service %s keyed by %s, and would be sent with the wrong body or to the wrong person.',
                              waiting.service, waiting.key_field),
              HINT = format('Deliver them first (SELECT * FROM campus_sync.deliver(%L)), or drop the server, which discards them, and create it anew.',
                            srv.srvname);
    END IF;
  END LOOP;
END $$;

------------------------------------------------------------------------------
-- Drift against CloudCard (0.6)
------------------------------------------------------------------------------

-- What differs between the body a row would send and the person as CloudCard
-- has it: a row per field (field '*' when CloudCard has no such person).
-- Read-only at the remote; USAGE on the server is checked inside, as by
-- cloudcard_person().  Called per row (a LATERAL join), its look-ups go one
-- after another: cloudcard_drift() looks up a whole query's rows at the
-- server's concurrency.
CREATE FUNCTION campus_sync.cloudcard_diff(person record, mapping jsonb DEFAULT NULL,
                                           server name DEFAULT 'cloudcard')
RETURNS TABLE (field text, local text, remote text)
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_diff'
LANGUAGE C VOLATILE ROWS 3;

-- cloudcard_diff() for every row of a query (run with the caller's
-- privileges), up to the server's concurrency look-ups at once, at its
-- max_rate; the rows come in no particular order.
CREATE FUNCTION campus_sync.cloudcard_drift(query text, mapping jsonb DEFAULT NULL,
                                            server name DEFAULT 'cloudcard')
RETURNS TABLE (person_key text, field text, local text, remote text)
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_drift'
LANGUAGE C VOLATILE;
