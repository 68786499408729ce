/* campus_sync--0.7.sql */

\echo Use "CREATE EXTENSION campus_sync" to load this file. \quit

-- The schema is campus_sync (see the control file).  Functions that check
-- USAGE on the server themselves are executable by PUBLIC; the rest, the
-- queue and its views are not (they hold personal data).
GRANT USAGE ON SCHEMA campus_sync TO PUBLIC;

------------------------------------------------------------------------------
-- Targets: foreign servers of the campus_sync wrapper
------------------------------------------------------------------------------

CREATE FUNCTION campus_sync.fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'campus_sync_fdw_validator'
LANGUAGE C STRICT;

REVOKE ALL ON FUNCTION campus_sync.fdw_validator(text[], oid) FROM PUBLIC;

CREATE FOREIGN DATA WRAPPER campus_sync VALIDATOR campus_sync.fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER campus_sync IS
  'campus_sync targets: servers carry the options, user mappings the secrets';

------------------------------------------------------------------------------
-- Synchronous functions
------------------------------------------------------------------------------

CREATE TYPE campus_sync.push_result AS (
  ok          boolean,
  http_status integer,
  remote_id   text,
  response    jsonb,
  error       text,
  elapsed_ms  double precision
);

CREATE FUNCTION campus_sync.opscom_payload(person record, mapping jsonb DEFAULT NULL,
                                           server name DEFAULT 'opscom',
                                           options jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'campus_sync_opscom_payload'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION campus_sync.cloudcard_payload(person record, mapping jsonb DEFAULT NULL,
                                              server name DEFAULT 'cloudcard',
                                              options jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_payload'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION campus_sync.opscom_push(person record, mapping jsonb DEFAULT NULL,
                                        server name DEFAULT 'opscom',
                                        options jsonb DEFAULT NULL)
RETURNS campus_sync.push_result
AS 'MODULE_PATHNAME', 'campus_sync_opscom_push'
LANGUAGE C VOLATILE;

CREATE FUNCTION campus_sync.cloudcard_upsert(person record, mapping jsonb DEFAULT NULL,
                                             server name DEFAULT 'cloudcard',
                                             options jsonb DEFAULT NULL)
RETURNS campus_sync.push_result
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_upsert'
LANGUAGE C VOLATILE;

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

CREATE FUNCTION campus_sync.cloudcard_login_link(person record, mapping jsonb DEFAULT NULL,
                                                 server name DEFAULT 'cloudcard')
RETURNS text
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_login_link'
LANGUAGE C VOLATILE;

CREATE FUNCTION campus_sync.opscom_user_types(server name DEFAULT 'opscom')
RETURNS TABLE (id text, type_name text, ext_info text)
AS 'MODULE_PATHNAME', 'campus_sync_opscom_user_types'
LANGUAGE C VOLATILE ROWS 20;

CREATE FUNCTION campus_sync.cloudcard_person(key text, server name DEFAULT 'cloudcard')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'campus_sync_cloudcard_person'
LANGUAGE C VOLATILE;

-- The first thing to run after CREATE SERVER: does the url answer, does TLS
-- verify, are the caller's credentials accepted?  Changes nothing remotely.
CREATE FUNCTION campus_sync.check_server(server name DEFAULT NULL)
RETURNS TABLE (server name, ok boolean, http_status integer, detail text, hint text)
AS 'MODULE_PATHNAME', 'campus_sync_check_server'
LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- The durable queue (WAL-logged; not readable by PUBLIC: it holds personal
-- data).  Secrets are never stored: OPS-COM's apiToken is added on the wire.
------------------------------------------------------------------------------

CREATE SEQUENCE campus_sync.queue_items_id_seq;

CREATE TABLE campus_sync.queue_items (
  id               bigint NOT NULL DEFAULT nextval('campus_sync.queue_items_id_seq'),
  server           text COLLATE "C" NOT NULL,  -- the foreign server's name
  person_key       text COLLATE "C",
  state            text NOT NULL
                   CHECK (state IN ('pending', 'retrying', 'delivered', 'failed', 'invalid', 'held')),
  payload          text,            -- the body without secrets; NULL for invalid items
  enqueued_by      text NOT NULL,   -- the role whose user mapping applies
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_http_status integer,
  last_error       text,
  remote_id        text,
  enqueued_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  -- what the item was built for: it is only ever sent to that server (by
  -- OID, whatever its name becomes) while it still has that service and
  -- person key (0.2; last because ALTER TABLE adds them there)
  server_oid       oid NOT NULL,
  service          text NOT NULL,
  key_field        text NOT NULL,
  -- upsert: the person's body; disable: a DELETE's (on_delete 'disable', 0.6)
  kind             text NOT NULL DEFAULT 'upsert' CHECK (kind IN ('upsert', 'disable'))
) WITH (fillfactor = 80);           -- room for HOT updates while an item is retried

ALTER SEQUENCE campus_sync.queue_items_id_seq OWNED BY campus_sync.queue_items.id;

-- Ids come from the sequence, in insertion order: a BRIN index finds them
-- at almost no cost to each insert (a btree primary key cost a tenth of a
-- sync trigger).  Without a key, logical replication of the table (a FOR
-- ALL TABLES publication) needs the whole old row to identify it.
CREATE INDEX queue_items_id ON campus_sync.queue_items USING brin (id);
ALTER TABLE campus_sync.queue_items REPLICA IDENTITY FULL;

-- a person's waiting items, for the engine's claims (coalescing, per-person
-- order), server by server: a claim for one server never walks another's
-- items.  Narrow: every item moved from the inbox enters it.  Held items
-- too: a newer item of the person supersedes them.
CREATE INDEX queue_items_key ON campus_sync.queue_items (server_oid, person_key)
  WHERE state IN ('pending', 'retrying', 'invalid', 'held');
-- delivered items by age, for purge() and the status view
CREATE INDEX queue_items_delivered ON campus_sync.queue_items (server_oid, delivered_at)
  WHERE state = 'delivered';
-- items that need a person's attention
CREATE INDEX queue_items_attention ON campus_sync.queue_items (server_oid, state)
  WHERE state IN ('failed', 'invalid', 'held');

-- New items are appended here (enqueue(), sync_trigger()), in the writer's
-- transaction; the delivery engine moves them into queue_items.  No index:
-- appending must cost a writer as little as a plain insert.
CREATE TABLE campus_sync.inbox (
  id          bigint NOT NULL,
  server      text COLLATE "C" NOT NULL,
  person_key  text COLLATE "C",
  payload     text,               -- NULL for an invalid row
  error       text,               -- why the row is invalid
  enqueued_by text NOT NULL,
  enqueued_at timestamptz NOT NULL,
  server_oid  oid NOT NULL,       -- as in queue_items
  service     text NOT NULL,
  key_field   text NOT NULL,
  kind        text NOT NULL DEFAULT 'upsert'
);

-- pg_dump keeps what is queued
SELECT pg_catalog.pg_extension_config_dump('campus_sync.queue_items', '');
SELECT pg_catalog.pg_extension_config_dump('campus_sync.inbox', '');
SELECT pg_catalog.pg_extension_config_dump('campus_sync.queue_items_id_seq', '');

-- What the delivery engine knows of each target's health, shared between
-- sessions: a target is down after consecutive transport errors or 5xx.
CREATE TABLE campus_sync.target_health (
  server           text COLLATE "C" PRIMARY KEY,
  up               boolean NOT NULL DEFAULT true,
  failures         integer NOT NULL DEFAULT 0,  -- consecutive temporary failures
  down_since       timestamptz,
  next_probe_at    timestamptz,
  probe_interval_s double precision,
  last_success_at  timestamptz,
  last_error       text,
  last_error_at    timestamptz
);

REVOKE ALL ON campus_sync.queue_items, campus_sync.inbox, campus_sync.queue_items_id_seq,
              campus_sync.target_health FROM PUBLIC;

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

REVOKE ALL ON FUNCTION campus_sync.forget(name, text) FROM PUBLIC;

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

------------------------------------------------------------------------------
-- Queueing
------------------------------------------------------------------------------

CREATE FUNCTION campus_sync.enqueue(server name, person record, mapping jsonb DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'campus_sync_enqueue'
LANGUAGE C VOLATILE;

-- The trigger function: FOR EACH ROW, AFTER INSERT OR UPDATE, with the
-- server's name and optionally a mapping (JSON text) as arguments.  Whoever
-- may write the table fires it; the table's owner needs USAGE on the server.
CREATE FUNCTION campus_sync.sync_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'campus_sync_sync_trigger'
LANGUAGE C;

CREATE FUNCTION campus_sync.deliver(server name DEFAULT NULL,
                                    max_seconds double precision DEFAULT 10,
                                    max_items integer DEFAULT NULL)
RETURNS TABLE (server name, delivered bigint, retried bigint, failed bigint)
AS 'MODULE_PATHNAME', 'campus_sync_deliver'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- Wakes the background worker when the calling transaction commits (retry()
-- and retry_failed() make items due); nothing when it is not preloaded.
CREATE FUNCTION campus_sync.wake_worker()
RETURNS void
AS 'MODULE_PATHNAME', 'campus_sync_wake_worker'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION campus_sync.wake_worker() FROM PUBLIC;

CREATE FUNCTION campus_sync.retry(id bigint)
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

CREATE FUNCTION campus_sync.retry_failed(server name DEFAULT NULL)
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

-- The field a server's items are keyed by, by its service's own rule (the
-- library's service descriptors: one source, whatever services it has).
CREATE FUNCTION campus_sync.server_key_field(server oid)
RETURNS text
AS 'MODULE_PATHNAME', 'campus_sync_server_key_field'
LANGUAGE C STABLE STRICT;

-- What each campus_sync server sends and keys people by: what a queue item
-- must still match to be sent (see the event triggers and
-- bind_restored_items()).
CREATE VIEW campus_sync.server_bindings AS
SELECT s.oid, s.srvname::text AS name, o.service,
       campus_sync.server_key_field(s.oid) AS key_field
FROM pg_catalog.pg_foreign_server s
JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'campus_sync'
CROSS JOIN LATERAL (
  SELECT max(t.option_value) FILTER (WHERE t.option_name = 'service') AS service
  FROM pg_catalog.pg_options_to_table(s.srvoptions) t) o;
REVOKE ALL ON campus_sync.server_bindings FROM PUBLIC;

-- Items restored from a dump, or carried over by pg_upgrade, name their
-- server by its OID in the old database.  The first deliverer (and purge())
-- in a database binds them to the server of the same name, service and
-- person key here; a server of another service keeps them unbound.  Where
-- that was done is kept below: not dumped, and pg_upgrade changes the
-- system identifier, so a copy elsewhere looks again.
CREATE TABLE campus_sync.items_bound_in (
  system_identifier text NOT NULL,
  database_oid      oid NOT NULL
);
REVOKE ALL ON campus_sync.items_bound_in FROM PUBLIC;

CREATE FUNCTION campus_sync.bind_restored_items()
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  here record;
  n bigint;
  m bigint;
BEGIN
  SELECT c.system_identifier::text AS sysid, d.oid AS dboid INTO here
  FROM pg_catalog.pg_control_system() c, pg_catalog.pg_database d
  WHERE d.datname = pg_catalog.current_database();
  IF EXISTS (SELECT 1 FROM campus_sync.items_bound_in b
             WHERE b.system_identifier = here.sysid AND b.database_oid = here.dboid) THEN
    RETURN 0;
  END IF;
  UPDATE campus_sync.queue_items q SET server_oid = s.oid
  FROM campus_sync.server_bindings s
  WHERE q.server = s.name AND q.service = s.service AND q.key_field = s.key_field
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server f WHERE f.oid = q.server_oid);
  GET DIAGNOSTICS n = ROW_COUNT;
  UPDATE campus_sync.inbox i SET server_oid = s.oid
  FROM campus_sync.server_bindings s
  WHERE i.server = s.name AND i.service = s.service AND i.key_field = s.key_field
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server f WHERE f.oid = i.server_oid);
  GET DIAGNOSTICS m = ROW_COUNT;
  DELETE FROM campus_sync.items_bound_in;
  INSERT INTO campus_sync.items_bound_in VALUES (here.sysid, here.dboid);
  IF n + m > 0 THEN
    RAISE NOTICE 'campus_sync: % queue items from another database bound to their servers by name', n + m;
  END IF;
  RETURN n + m;
END $$;

REVOKE ALL ON FUNCTION campus_sync.bind_restored_items() FROM PUBLIC;

-- Deletes delivered items (they hold personal data) older than older_than,
-- and the items and delivered-state memory of servers that no longer exist
-- (left by a DROP SERVER with event triggers disabled).  The memory of
-- servers that exist is kept.
CREATE FUNCTION campus_sync.purge(older_than interval DEFAULT '7 days')
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

REVOKE ALL ON FUNCTION campus_sync.deliver(name, double precision, integer),
              campus_sync.retry(bigint), campus_sync.retry_failed(name),
              campus_sync.purge(interval) FROM PUBLIC;

------------------------------------------------------------------------------
-- Observability.  An item is in flight while a deliverer holds it: its row
-- (in queue_items, or still in the inbox it was taken from) is locked by a
-- transaction that holds the campus_sync deliverer lock (an advisory lock
-- with objsubid 7 that deliver() takes).
------------------------------------------------------------------------------

CREATE FUNCTION campus_sync.deliverer_xids()
RETURNS SETOF xid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT x.transactionid
  FROM pg_catalog.pg_locks d
  JOIN pg_catalog.pg_locks x ON x.pid = d.pid AND x.locktype = 'transactionid' AND x.granted
  WHERE d.locktype = 'advisory' AND d.granted AND d.objsubid = 7
    AND d.classid = 1129535811 AND d.objid = 1
    AND d.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
$$;

-- EXECUTE stays with PUBLIC (it shows only which transactions deliver):
-- the views call it with the privileges of whoever reads them.

-- server: the server's name now (items follow the server, not its name)
CREATE VIEW campus_sync.queue AS
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

------------------------------------------------------------------------------
-- The background worker (0.3): what it is doing, for the views
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

CREATE VIEW campus_sync.status AS
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

REVOKE ALL ON campus_sync.queue, campus_sync.status FROM PUBLIC;

------------------------------------------------------------------------------
-- Items belong to the server they were built for (0.2)
------------------------------------------------------------------------------

-- DROP SERVER (or DROP OWNED, DROP FOREIGN DATA WRAPPER ... CASCADE)
-- discards the server's queued items and their personal data: they can
-- never be sent anywhere else.
CREATE FUNCTION campus_sync.discard_items_of_dropped_servers()
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

CREATE EVENT TRIGGER campus_sync_server_dropped ON sql_drop
  WHEN TAG IN ('DROP SERVER', 'DROP OWNED', 'DROP FOREIGN DATA WRAPPER')
  EXECUTE FUNCTION campus_sync.discard_items_of_dropped_servers();

-- ALTER SERVER that changes what the waiting items were built for (the
-- service, or the person key: CloudCard's find_by) is refused.
CREATE FUNCTION campus_sync.refuse_server_change_under_waiting_items()
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

CREATE EVENT TRIGGER campus_sync_server_altered ON ddl_command_end
  WHEN TAG IN ('ALTER SERVER')
  EXECUTE FUNCTION campus_sync.refuse_server_change_under_waiting_items();

------------------------------------------------------------------------------
-- Checking a table's sync triggers without writing a row (0.2)
------------------------------------------------------------------------------

-- One row per campus_sync.sync_trigger trigger on the table: its arguments,
-- server (and the table owner's USAGE on it) and mapping are checked the way
-- its first write would check them.  User mappings are not: which one
-- applies depends on the role that writes.
CREATE FUNCTION campus_sync.check_trigger(tbl regclass)
RETURNS TABLE (trigger_name name, server text, ok boolean, sqlstate text, error text,
               hint text)
AS 'MODULE_PATHNAME', 'campus_sync_check_trigger'
LANGUAGE C STRICT VOLATILE;

-- CREATE TRIGGER ... sync_trigger(...) with a server or mapping its first
-- write would refuse is refused at once.  A missing USAGE is not: pg_restore
-- creates triggers before it restores the grants.
CREATE FUNCTION campus_sync.refuse_broken_sync_trigger()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  trg record;
  problem record;
BEGIN
  FOR trg IN
    SELECT t.tgrelid, t.tgname
    FROM pg_catalog.pg_event_trigger_ddl_commands() c
    JOIN pg_catalog.pg_trigger t ON t.oid = c.objid
    WHERE c.object_type = 'trigger'
      AND t.tgfoid = 'campus_sync.sync_trigger()'::pg_catalog.regprocedure
  LOOP
    SELECT * INTO problem FROM campus_sync.check_trigger(trg.tgrelid) k
    WHERE k.trigger_name = trg.tgname AND NOT k.ok AND k.sqlstate <> '42501';
    IF FOUND THEN
      RAISE EXCEPTION '%', problem.error
        USING ERRCODE = problem.sqlstate, HINT = problem.hint;
    END IF;
  END LOOP;
END $$;

CREATE EVENT TRIGGER campus_sync_trigger_created ON ddl_command_end
  WHEN TAG IN ('CREATE TRIGGER')
  EXECUTE FUNCTION campus_sync.refuse_broken_sync_trigger();

-- event trigger functions: only PostgreSQL calls them
REVOKE ALL ON FUNCTION campus_sync.discard_items_of_dropped_servers(),
              campus_sync.refuse_server_change_under_waiting_items(),
              campus_sync.refuse_broken_sync_trigger() FROM PUBLIC;

------------------------------------------------------------------------------
-- Delivery that commits as it goes (0.2)
------------------------------------------------------------------------------

-- Like deliver(), but each outcome reaches durable state within a batch:
-- an interrupted call resends at most what was in flight.  For pg_cron and
-- ETL jobs: CALL campus_sync.deliver_batches(max_seconds => 50);
CREATE PROCEDURE campus_sync.deliver_batches(server name DEFAULT NULL,
                                             max_seconds double precision DEFAULT 10,
                                             max_items integer DEFAULT NULL)
AS 'MODULE_PATHNAME', 'campus_sync_deliver_batches'
LANGUAGE C;

REVOKE ALL ON PROCEDURE campus_sync.deliver_batches(name, double precision, integer) FROM PUBLIC;

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
