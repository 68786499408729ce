-- Who may do what: the roles a campus has, and for every role and action
-- the exact outcome (README "Who may do what").  Each action runs as the
-- role in a subtransaction that is then rolled back, so the actions leave
-- nothing behind (requests to the mock excepted) and do not depend on each
-- other.  Roles are cluster-wide: all are named cs_priv_* and dropped at
-- the end, with the servers and tables of this file.
SELECT mock_reset();

-- The targets of this file, on the mock; secrets in PUBLIC's user mappings.
DO $$
BEGIN
  EXECUTE format('CREATE SERVER cs_priv_opscom FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L, login_source %L)',
                 'opscom', current_setting('test.mock_api'), 'BANNER');
  EXECUTE format('CREATE SERVER cs_priv_cloudcard FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L)',
                 'cloudcard', current_setting('test.mock_api'));
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER cs_priv_opscom OPTIONS (api_token 'opscom-test-token-0123456789');
CREATE USER MAPPING FOR PUBLIC SERVER cs_priv_cloudcard OPTIONS (auth_token 'cc-static-token-0123456789');

-- The roles.
CREATE ROLE cs_priv_owner;      -- owns the person table, has USAGE on the servers
CREATE ROLE cs_priv_writer;     -- a Banner loader: INSERT/UPDATE on the person table only
CREATE ROLE cs_priv_etl;        -- USAGE on the servers, deliver(), deliver_batches()
CREATE ROLE cs_priv_monitor;    -- SELECT on the two views only
CREATE ROLE cs_priv_admin_ops;  -- retry(), retry_failed(), purge(), pause(), resume(), forget(), release_held(), discard_held()
CREATE ROLE cs_priv_nobody;     -- no grant at all

-- The person table, its owner, and its sync trigger.
CREATE TABLE cs_priv_people (unique_id text PRIMARY KEY, first_name text, last_name text, email text);
ALTER TABLE cs_priv_people OWNER TO cs_priv_owner;
GRANT USAGE ON FOREIGN SERVER cs_priv_opscom, cs_priv_cloudcard TO cs_priv_owner;
CREATE TRIGGER cs_priv_people_opscom AFTER INSERT OR UPDATE ON cs_priv_people
  FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('cs_priv_opscom');

-- The grants (README "Who may do what").
GRANT INSERT, UPDATE ON cs_priv_people TO cs_priv_writer;
GRANT USAGE ON FOREIGN SERVER cs_priv_opscom, cs_priv_cloudcard TO cs_priv_etl;
GRANT EXECUTE ON FUNCTION campus_sync.deliver(name, double precision, integer) TO cs_priv_etl;
GRANT EXECUTE ON PROCEDURE campus_sync.deliver_batches(name, double precision, integer) TO cs_priv_etl;
GRANT SELECT ON campus_sync.queue, campus_sync.status, campus_sync.worker TO cs_priv_monitor;
GRANT EXECUTE ON FUNCTION campus_sync.retry(bigint), campus_sync.retry_failed(name),
                          campus_sync.purge(interval), campus_sync.pause(name, text),
                          campus_sync.resume(name), campus_sync.forget(name, text),
                          campus_sync.release_held(name), campus_sync.discard_held(name) TO cs_priv_admin_ops;
-- the ETL role has a user mapping of its own (the same secret): its owner may read it
CREATE USER MAPPING FOR cs_priv_etl SERVER cs_priv_opscom OPTIONS (api_token 'opscom-test-token-0123456789');

-- The writer fires the trigger with no privilege on campus_sync: the item
-- is queued (as the writer: its user mapping, else PUBLIC's, will be used).
SET ROLE cs_priv_writer;
INSERT INTO cs_priv_people VALUES ('P2', 'Bo', 'Lee', 'p2@campus.edu');
RESET ROLE;
SELECT person_key, enqueued_by, payload::jsonb ->> 'login_source' AS login_source
FROM campus_sync.inbox WHERE server = 'cs_priv_opscom';
-- OPS-COM refuses it (400): a failed item, for retry() and retry_failed() below
SELECT mock('behave?path_prefix=/api/OC_TOMA/v1/profiles/push&status=400&count=1');
SELECT * FROM campus_sync.deliver('cs_priv_opscom');
SELECT id AS failed_id FROM campus_sync.queue WHERE server = 'cs_priv_opscom' AND state = 'failed' \gset
-- a cardholder CloudCard knows, for cloudcard_person()
SELECT r.ok, r.http_status FROM (VALUES ('C1', 'c1@campus.edu')) c(identifier, email),
  LATERAL campus_sync.cloudcard_upsert(c, server => 'cs_priv_cloudcard') r;

-- can(role, statement [, setup]): runs setup and statement as the role
-- (SET LOCAL ROLE) in a subtransaction, rolls it back (the role too), and
-- says 'ok' (with the statement's first value, if any) or the SQLSTATE and
-- message (after 'setup: ' when the setup failed).
CREATE FUNCTION cs_priv_can(role_name name, stmt text, setup text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  step text := 'setup: ';
  result text;
  state text;
  message text;
BEGIN
  BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role_name);
    IF setup IS NOT NULL THEN
      EXECUTE setup;
    END IF;
    step := '';
    EXECUTE stmt INTO result;
    RAISE EXCEPTION 'undo' USING ERRCODE = 'CSP00';
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
  END;
  IF state = 'CSP00' THEN
    RETURN 'ok' || coalesce(': ' || result, '');
  END IF;
  RETURN step || state || ': ' || message;
END $$;

CREATE TEMP TABLE cs_priv_roles (ord int, label text, role_name name);
INSERT INTO cs_priv_roles VALUES
  (1, 'superuser', current_user), (2, 'owner', 'cs_priv_owner'), (3, 'writer', 'cs_priv_writer'),
  (4, 'etl', 'cs_priv_etl'), (5, 'monitor', 'cs_priv_monitor'), (6, 'admin_ops', 'cs_priv_admin_ops'),
  (7, 'nobody', 'cs_priv_nobody');

CREATE TEMP TABLE cs_priv_actions (ord int, action text, stmt text, setup text);
INSERT INTO cs_priv_actions VALUES
  (1, 'opscom_payload', $q$SELECT campus_sync.opscom_payload(p, server => 'cs_priv_opscom') ->> 'unique_id'
      FROM (VALUES ('P1', 'Ada', 'Lee', 'p1@campus.edu')) p(unique_id, first_name, last_name, email)$q$, NULL),
  (2, 'cloudcard_payload', $q$SELECT campus_sync.cloudcard_payload(c, server => 'cs_priv_cloudcard') ->> 'identifier'
      FROM (VALUES ('C1', 'c1@campus.edu')) c(identifier, email)$q$, NULL),
  (3, 'opscom_push', $q$SELECT CASE WHEN r.ok THEN 'sent' ELSE r.error END
      FROM (VALUES ('P1', 'Ada', 'Lee', 'p1@campus.edu')) p(unique_id, first_name, last_name, email),
           LATERAL campus_sync.opscom_push(p, server => 'cs_priv_opscom') r$q$, NULL),
  (4, 'cloudcard_upsert', $q$SELECT CASE WHEN r.ok THEN 'sent' ELSE r.error END
      FROM (VALUES ('C1', 'c1@campus.edu')) c(identifier, email),
           LATERAL campus_sync.cloudcard_upsert(c, server => 'cs_priv_cloudcard') r$q$, NULL),
  (5, 'cloudcard_login_link', $q$SELECT CASE WHEN l LIKE 'https://%' THEN 'a link' ELSE l END
      FROM (VALUES ('C1', 'c1@campus.edu')) c(identifier, email),
           LATERAL campus_sync.cloudcard_login_link(c, server => 'cs_priv_cloudcard') l$q$, NULL),
  (6, 'opscom_user_types', $q$SELECT count(*) || ' types' FROM campus_sync.opscom_user_types('cs_priv_opscom')$q$, NULL),
  (7, 'cloudcard_person', $q$SELECT campus_sync.cloudcard_person('C1', 'cs_priv_cloudcard') ->> 'identifier'$q$, NULL),
  (8, 'enqueue', $q$SELECT CASE WHEN campus_sync.enqueue('cs_priv_opscom', p) > 0 THEN 'queued' END
      FROM (VALUES ('P1', 'Ada', 'Lee', 'p1@campus.edu')) p(unique_id, first_name, last_name, email)$q$, NULL),
  (9, 'INSERT into the person table (sync trigger)',
      $q$INSERT INTO cs_priv_people VALUES ('P3', 'Cy', 'Lee', 'p3@campus.edu') RETURNING NULL::text$q$, NULL),
  (10, 'UPDATE the person table (sync trigger)',
      $q$UPDATE cs_priv_people SET first_name = 'Di' RETURNING NULL::text$q$, NULL),
  (11, 'sync trigger on a table of its own',
      $q$INSERT INTO cs_priv_own VALUES ('P4', 'Ed', 'Lee', 'p4@campus.edu') RETURNING NULL::text$q$,
      $q$CREATE TEMP TABLE cs_priv_own (unique_id text, first_name text, last_name text, email text);
         CREATE TRIGGER cs_priv_own_opscom AFTER INSERT OR UPDATE ON cs_priv_own
           FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('cs_priv_opscom')$q$),
  (12, 'SELECT campus_sync.queue', $q$SELECT string_agg(person_key || ' ' || state, ', ' ORDER BY id)
      FROM campus_sync.queue WHERE server = 'cs_priv_opscom'$q$, NULL),
  (13, 'SELECT campus_sync.status', $q$SELECT format('up %s, pending %s, failed %s', up, pending, failed)
      FROM campus_sync.status WHERE server = 'cs_priv_opscom'$q$, NULL),
  (14, 'deliverer_xids()', $q$SELECT count(*)::text FROM campus_sync.deliverer_xids()$q$, NULL),
  (15, 'SELECT campus_sync.queue_items', $q$SELECT count(*)::text FROM campus_sync.queue_items WHERE server = 'cs_priv_opscom'$q$, NULL),
  (16, 'SELECT campus_sync.inbox', $q$SELECT count(*)::text FROM campus_sync.inbox WHERE server = 'cs_priv_opscom'$q$, NULL),
  (17, 'SELECT campus_sync.target_health', $q$SELECT count(*)::text FROM campus_sync.target_health WHERE server = 'cs_priv_opscom'$q$, NULL),
  (18, 'DELETE FROM campus_sync.queue_items', $q$DELETE FROM campus_sync.queue_items WHERE server = 'cs_priv_opscom' RETURNING NULL::text$q$, NULL),
  (19, 'deliver()', $q$SELECT format('%s delivered, %s retried, %s failed', delivered, retried, failed)
      FROM campus_sync.deliver('cs_priv_opscom')$q$, NULL),
  -- 20: CALL deliver_batches(), below (a procedure that commits cannot run in a function)
  (21, 'retry(id)', format('SELECT campus_sync.retry(%s)::text', :'failed_id'), NULL),
  (22, 'retry_failed()', $q$SELECT campus_sync.retry_failed('cs_priv_opscom')::text$q$, NULL),
  (23, 'purge()', $q$SELECT NULL::text FROM campus_sync.purge()$q$, NULL),
  (24, 'check_trigger(regclass)', $q$SELECT string_agg(trigger_name || ' ' || CASE WHEN ok THEN 'ok' ELSE sqlstate END, ', ')
      FROM campus_sync.check_trigger('cs_priv_people')$q$, NULL),
  (25, 'user mapping secrets (pg_user_mappings)', $q$SELECT CASE WHEN bool_and(umoptions IS NOT NULL) THEN 'all'
                   WHEN bool_or(umoptions IS NOT NULL) AND bool_and(umoptions IS NULL OR usename = current_user) THEN 'its own'
                   WHEN bool_or(umoptions IS NOT NULL) THEN 'some'
                   ELSE 'none' END
      FROM pg_user_mappings WHERE srvname LIKE 'cs\_priv\_%'$q$, NULL),
  (26, 'SELECT pg_user_mapping (catalog)', $q$SELECT NULL::text FROM pg_catalog.pg_user_mapping LIMIT 1$q$, NULL),
  (27, 'SELECT campus_sync.worker', $q$SELECT format('running %s', running) FROM campus_sync.worker$q$, NULL),
  (28, 'wake_worker()', $q$SELECT NULL::text FROM campus_sync.wake_worker()$q$, NULL),
  (29, 'check_server()', $q$SELECT string_agg(server || ' ' || CASE WHEN ok THEN 'ok' ELSE detail END, ', ' ORDER BY server)
      FROM campus_sync.check_server() WHERE server::text LIKE 'cs\_priv\_%'$q$, NULL),
  (30, 'pause(), resume()', $q$SELECT format('paused %s, resumed %s', campus_sync.pause('cs_priv_opscom', 'test'),
                                             campus_sync.resume('cs_priv_opscom'))$q$, NULL),
  (31, 'payload(), push()', $q$SELECT (campus_sync.payload(p, server => 'cs_priv_opscom') ->> 'unique_id') || ' ' ||
                                      CASE WHEN r.ok THEN 'sent' ELSE r.error END
      FROM (VALUES ('P1', 'Ada', 'Lee', 'p1@campus.edu')) p(unique_id, first_name, last_name, email),
           LATERAL campus_sync.push(p, server => 'cs_priv_opscom') r$q$, NULL),
  (32, 'cloudcard_diff', $q$SELECT count(d.*) || ' differences'
      FROM (VALUES ('C1', 'c1@campus.edu')) c(identifier, email),
           LATERAL campus_sync.cloudcard_diff(c, server => 'cs_priv_cloudcard') d$q$, NULL),
  (33, 'cloudcard_drift', $q$SELECT count(*) || ' differences'
      FROM campus_sync.cloudcard_drift($$SELECT 'C1' AS identifier, 'c1@campus.edu' AS email$$,
                                       server => 'cs_priv_cloudcard')$q$, NULL),
  -- (the query runs with the caller's privileges: the ETL role may not read the table)
  (34, 'cloudcard_drift of the person table',
      $q$SELECT string_agg(person_key || ' ' || field, ', ')
      FROM campus_sync.cloudcard_drift('SELECT unique_id AS identifier, email FROM cs_priv_people',
                                       server => 'cs_priv_cloudcard')$q$, NULL),
  (35, 'forget()', $q$SELECT format('forgot %s', campus_sync.forget('cs_priv_opscom'))$q$, NULL),
  (36, 'release_held(), discard_held()', $q$SELECT format('released %s, discarded %s',
                                                  campus_sync.release_held('cs_priv_cloudcard'),
                                                  campus_sync.discard_held('cs_priv_cloudcard'))$q$, NULL);

CREATE TEMP TABLE cs_priv_matrix (role_ord int, action_ord int, result text);
-- role after role, action after action: the order the mock sees is fixed
DO $$
DECLARE
  r record;
  a record;
BEGIN
  FOR r IN SELECT * FROM cs_priv_roles ORDER BY ord LOOP
    FOR a IN SELECT * FROM cs_priv_actions ORDER BY ord LOOP
      INSERT INTO cs_priv_matrix VALUES (r.ord, a.ord, cs_priv_can(r.role_name, a.stmt, a.setup));
    END LOOP;
  END LOOP;
END $$;

-- CALL deliver_batches(), as each role, at top level (it commits as it goes).
INSERT INTO cs_priv_actions VALUES (20, 'CALL deliver_batches()', NULL, NULL);
CALL campus_sync.deliver_batches('cs_priv_opscom');
\set failed :ERROR
INSERT INTO cs_priv_matrix VALUES (1, 20, CASE WHEN :'failed' THEN :'LAST_ERROR_SQLSTATE' || ': ' || :'LAST_ERROR_MESSAGE' ELSE 'ok' END);
SET ROLE cs_priv_owner;
CALL campus_sync.deliver_batches('cs_priv_opscom');
\set failed :ERROR
RESET ROLE;
INSERT INTO cs_priv_matrix VALUES (2, 20, CASE WHEN :'failed' THEN :'LAST_ERROR_SQLSTATE' || ': ' || :'LAST_ERROR_MESSAGE' ELSE 'ok' END);
SET ROLE cs_priv_writer;
CALL campus_sync.deliver_batches('cs_priv_opscom');
\set failed :ERROR
RESET ROLE;
INSERT INTO cs_priv_matrix VALUES (3, 20, CASE WHEN :'failed' THEN :'LAST_ERROR_SQLSTATE' || ': ' || :'LAST_ERROR_MESSAGE' ELSE 'ok' END);
SET ROLE cs_priv_etl;
CALL campus_sync.deliver_batches('cs_priv_opscom');
\set failed :ERROR
RESET ROLE;
INSERT INTO cs_priv_matrix VALUES (4, 20, CASE WHEN :'failed' THEN :'LAST_ERROR_SQLSTATE' || ': ' || :'LAST_ERROR_MESSAGE' ELSE 'ok' END);
SET ROLE cs_priv_monitor;
CALL campus_sync.deliver_batches('cs_priv_opscom');
\set failed :ERROR
RESET ROLE;
INSERT INTO cs_priv_matrix VALUES (5, 20, CASE WHEN :'failed' THEN :'LAST_ERROR_SQLSTATE' || ': ' || :'LAST_ERROR_MESSAGE' ELSE 'ok' END);
SET ROLE cs_priv_admin_ops;
CALL campus_sync.deliver_batches('cs_priv_opscom');
\set failed :ERROR
RESET ROLE;
INSERT INTO cs_priv_matrix VALUES (6, 20, CASE WHEN :'failed' THEN :'LAST_ERROR_SQLSTATE' || ': ' || :'LAST_ERROR_MESSAGE' ELSE 'ok' END);
SET ROLE cs_priv_nobody;
CALL campus_sync.deliver_batches('cs_priv_opscom');
\set failed :ERROR
RESET ROLE;
INSERT INTO cs_priv_matrix VALUES (7, 20, CASE WHEN :'failed' THEN :'LAST_ERROR_SQLSTATE' || ': ' || :'LAST_ERROR_MESSAGE' ELSE 'ok' END);

-- The matrix: every cell, with the exact outcome.
SELECT r.label AS role, a.action, m.result
FROM cs_priv_matrix m JOIN cs_priv_roles r ON r.ord = m.role_ord JOIN cs_priv_actions a ON a.ord = m.action_ord
ORDER BY a.ord, r.ord;

-- The same as the README's table: yes, no (42501), or whose secrets are shown.
SELECT a.action,
       max(c.cell) FILTER (WHERE m.role_ord = 1) AS superuser,
       max(c.cell) FILTER (WHERE m.role_ord = 2) AS owner,
       max(c.cell) FILTER (WHERE m.role_ord = 3) AS writer,
       max(c.cell) FILTER (WHERE m.role_ord = 4) AS etl,
       max(c.cell) FILTER (WHERE m.role_ord = 5) AS monitor,
       max(c.cell) FILTER (WHERE m.role_ord = 6) AS admin_ops,
       max(c.cell) FILTER (WHERE m.role_ord = 7) AS nobody
FROM cs_priv_matrix m JOIN cs_priv_actions a ON a.ord = m.action_ord,
     LATERAL (SELECT CASE WHEN m.result NOT LIKE 'ok%' THEN 'no'
                          WHEN a.ord = 25 THEN substr(m.result, 5)
                          ELSE 'yes' END AS cell) c
GROUP BY a.ord, a.action ORDER BY a.ord;
-- every refusal is a privilege error
SELECT DISTINCT split_part(result, ':', 1) AS refusal_sqlstate FROM cs_priv_matrix WHERE result NOT LIKE 'ok%';

-- Why deliverer_xids() is executable by PUBLIC: the views call it with the
-- privileges of whoever reads them.  Without it a monitoring role granted
-- SELECT on the views, as the README advises, could not read them.  (Each
-- read takes whole rows: a query that needs no column computed with
-- deliverer_xids(), count(*) of status say, would not call it.)
SELECT has_function_privilege('public', 'campus_sync.deliverer_xids()', 'EXECUTE') AS public_may_execute;
BEGIN;
REVOKE EXECUTE ON FUNCTION campus_sync.deliverer_xids() FROM PUBLIC;
SELECT v AS view, cs_priv_can('cs_priv_monitor',
         format('SELECT count(s.*)::text FROM campus_sync.%I s WHERE s.server = %L', v, 'cs_priv_opscom')) AS monitor_reads
FROM unnest(ARRAY['queue', 'status']) v;
GRANT EXECUTE ON FUNCTION campus_sync.deliverer_xids() TO PUBLIC;
SELECT v AS view, cs_priv_can('cs_priv_monitor',
         format('SELECT count(s.*)::text FROM campus_sync.%I s WHERE s.server = %L', v, 'cs_priv_opscom')) AS monitor_reads
FROM unnest(ARRAY['queue', 'status']) v;
ROLLBACK;

-- The writer fires the trigger on the strength of the owner's USAGE: revoked,
-- the next write is refused (this backend's cached plan of the trigger is
-- checked again), and the error names whose USAGE is missing.
BEGIN;
REVOKE USAGE ON FOREIGN SERVER cs_priv_opscom FROM cs_priv_owner;
SET ROLE cs_priv_writer;
INSERT INTO cs_priv_people VALUES ('P5', 'Flo', 'Lee', 'p5@campus.edu');
ROLLBACK;
SELECT current_user = session_user AS role_reset_by_rollback;

-- deliver_batches() acts as the queue's owner (a superuser) but is not
-- SECURITY DEFINER: with the caller's search_path, an operator the caller
-- put in a schema of its own ran inside the engine's SQL with the owner's
-- rights, and the ETL role made itself superuser.  It now runs that SQL
-- with search_path pg_catalog, pg_temp, and gives the caller's back.
CREATE SCHEMA cs_priv_stage AUTHORIZATION cs_priv_etl;
SET ROLE cs_priv_etl;
CREATE FUNCTION cs_priv_stage.texteq(text, text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  IF current_user <> 'cs_priv_etl' THEN EXECUTE 'ALTER ROLE cs_priv_etl SUPERUSER'; END IF;
  RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR cs_priv_stage.= (LEFTARG = text, RIGHTARG = text, FUNCTION = cs_priv_stage.texteq);
SET search_path = cs_priv_stage, pg_catalog;
CALL campus_sync.deliver_batches('cs_priv_opscom');
SHOW search_path;
RESET search_path;
RESET ROLE;
SELECT rolsuper AS etl_became_superuser FROM pg_roles WHERE rolname = 'cs_priv_etl';
DROP SCHEMA cs_priv_stage CASCADE;

-- Nothing the matrix did stayed: the failed item is the only one of the
-- server, the person table has only the writer's row.
SELECT person_key, state, attempts FROM campus_sync.queue WHERE server = 'cs_priv_opscom';
SELECT unique_id, first_name FROM cs_priv_people;

-- Clean up: the servers (their items go with them), the table, the roles.
DROP TABLE cs_priv_people;
DROP SERVER cs_priv_opscom, cs_priv_cloudcard CASCADE;
DROP FUNCTION cs_priv_can(name, text, text);
DROP OWNED BY cs_priv_owner, cs_priv_writer, cs_priv_etl, cs_priv_monitor, cs_priv_admin_ops, cs_priv_nobody;
DROP ROLE cs_priv_owner, cs_priv_writer, cs_priv_etl, cs_priv_monitor, cs_priv_admin_ops, cs_priv_nobody;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname LIKE 'cs\_priv\_%';
