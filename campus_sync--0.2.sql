/* campus_sync--0.2.sql */

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
                   CHECK (state IN ('pending', 'retrying', 'delivered', 'failed', 'invalid')),
  payload          text,            -- the body without secrets; NULL for invalid items
  enqueued_by      text NOT NULL,   -- the role whose user mapping applies
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_http_status integer,
  last_error       text,
  remote_id        text,
  enqueued_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz
) WITH (fillfactor = 80);           -- room for HOT updates while an item is retried

ALTER SEQUENCE campus_sync.queue_items_id_seq OWNED BY campus_sync.queue_items.id;

-- Ids come from the sequence, in insertion order: a BRIN index finds them
-- at almost no cost to each insert (a btree primary key cost a tenth of a
-- sync trigger).  Without a key, logical replication of the table (a FOR
-- ALL TABLES publication) needs the whole old row to identify it.
CREATE INDEX queue_items_id ON campus_sync.queue_items USING brin (id);
ALTER TABLE campus_sync.queue_items REPLICA IDENTITY FULL;

-- a person's waiting items, for the engine's claims (coalescing, per-person
-- order).  One narrow column: every item moved from the inbox enters it.
CREATE INDEX queue_items_key ON campus_sync.queue_items (person_key)
  WHERE state IN ('pending', 'retrying', 'invalid');
-- delivered items by age, for purge() and the status view
CREATE INDEX queue_items_delivered ON campus_sync.queue_items (server, delivered_at)
  WHERE state = 'delivered';
-- items that need a person's attention
CREATE INDEX queue_items_attention ON campus_sync.queue_items (server, state)
  WHERE state IN ('failed', 'invalid');

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
  enqueued_at timestamptz NOT NULL
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
    WHERE q.server = item.server AND q.person_key = item.person_key AND q.id > item.id
      AND q.state <> 'invalid'
    UNION ALL
    SELECT i.id FROM campus_sync.inbox i
    WHERE i.server = item.server AND i.person_key = item.person_key AND i.id > item.id
      AND i.payload IS NOT NULL) n;
  IF newer IS NOT NULL THEN
    RAISE NOTICE 'queue item % is superseded by item %, which holds a later state of the person', retry.id, newer;
    RETURN 0;
  END IF;
  UPDATE campus_sync.queue_items q
  SET state = 'pending', attempts = 0, next_attempt_at = now()
  WHERE q.id = retry.id;
  RETURN 1;
END $$;

CREATE FUNCTION campus_sync.retry_failed(server name DEFAULT NULL)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  WITH requeued AS (
    UPDATE campus_sync.queue_items q
    SET state = 'pending', attempts = 0, next_attempt_at = now()
    WHERE q.state = 'failed' AND (retry_failed.server IS NULL OR q.server = retry_failed.server::text)
      AND NOT EXISTS (SELECT 1 FROM campus_sync.queue_items n
                      WHERE n.server = q.server AND n.person_key = q.person_key
                        AND n.id > q.id AND n.state <> 'invalid')
      AND NOT EXISTS (SELECT 1 FROM campus_sync.inbox i
                      WHERE i.server = q.server AND i.person_key = q.person_key
                        AND i.id > q.id AND i.payload IS NOT NULL)
    RETURNING 1)
  SELECT count(*) FROM requeued
$$;

-- Deletes delivered items (they hold personal data) older than older_than,
-- and the items of servers that no longer exist.
CREATE FUNCTION campus_sync.purge(older_than interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  WITH servers AS (
    SELECT s.srvname::text AS name FROM pg_catalog.pg_foreign_server s
    JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'campus_sync'
  ), gone AS (
    DELETE FROM campus_sync.queue_items q
    WHERE (q.state = 'delivered' AND q.delivered_at < now() - purge.older_than)
       OR q.server NOT IN (SELECT name FROM servers)
    RETURNING 1
  ), orphans AS (
    DELETE FROM campus_sync.inbox i WHERE i.server NOT IN (SELECT name FROM servers)
    RETURNING 1)
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

REVOKE ALL ON FUNCTION campus_sync.deliverer_xids() FROM PUBLIC;

CREATE VIEW campus_sync.queue AS
SELECT q.id, q.server, q.person_key,
       CASE WHEN q.state IN ('pending', 'retrying')
                 AND q.xmax IN (SELECT campus_sync.deliverer_xids())
            THEN 'in_flight' ELSE q.state END AS state,
       q.attempts, q.next_attempt_at, q.last_http_status, q.last_error, q.remote_id,
       q.enqueued_at, q.delivered_at
FROM campus_sync.queue_items q
UNION ALL
SELECT i.id, i.server, i.person_key,
       CASE WHEN i.xmax IN (SELECT campus_sync.deliverer_xids()) THEN 'in_flight'
            WHEN i.payload IS NULL THEN 'invalid' ELSE 'pending' END,
       0, i.enqueued_at, NULL::integer, i.error, NULL::text, i.enqueued_at, NULL::timestamptz
FROM campus_sync.inbox i;

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
       h.last_error
FROM pg_catalog.pg_foreign_server s
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
        WHERE q.server = s.srvname::text AND q.state IN ('pending', 'retrying')
        UNION ALL
        SELECT 'pending', i.enqueued_at, i.xmax IN (SELECT campus_sync.deliverer_xids())
        FROM campus_sync.inbox i
        WHERE i.server = s.srvname::text AND i.payload IS NOT NULL) x
) w ON true
LEFT JOIN LATERAL (
  SELECT count(*) FILTER (WHERE x.state = 'failed') AS failed,
         count(*) FILTER (WHERE x.state = 'invalid') AS invalid
  FROM (SELECT q.state FROM campus_sync.queue_items q
        WHERE q.server = s.srvname::text AND q.state IN ('failed', 'invalid')
        UNION ALL
        SELECT 'invalid' FROM campus_sync.inbox i
        WHERE i.server = s.srvname::text AND i.payload IS NULL) x
) a ON true
LEFT JOIN LATERAL (
  SELECT count(*) AS delivered_last_hour
  FROM campus_sync.queue_items q
  WHERE q.server = s.srvname::text AND q.state = 'delivered'
    AND q.delivered_at > now() - interval '1 hour'
) d ON true;

REVOKE ALL ON campus_sync.queue, campus_sync.status FROM PUBLIC;
