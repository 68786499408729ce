-- Installing campus_sync, the test helper and the test targets (no remote needed).
CREATE EXTENSION campus_sync;

SELECT extname, extversion, extrelocatable, n.nspname
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'campus_sync';

SELECT fdwname, fdwvalidator::regproc, fdwhandler FROM pg_foreign_data_wrapper
WHERE fdwname = 'campus_sync';

-- The SQL interface, as SPEC.md names it.
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'campus_sync' ORDER BY 1, 2;

SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'campus_sync.push_result'::regclass AND attnum > 0 ORDER BY attnum;

-- Runs a statement that must fail; shows its SQLSTATE, message, detail, hint.
CREATE FUNCTION err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  st text; msg text; det text; hnt text;
BEGIN
  EXECUTE stmt;
  RETURN 'no error';
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
  RETURN st || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(det, ''), '')
         || coalesce(E'\nHINT: ' || nullif(hnt, ''), '');
END $$;

-- The targets most tests use.  Nothing is sent in this suite (it needs no
-- remote: the tests that do are in test/regress_online/); the URL is the
-- mock's when the test runner gives one.
DO $$
DECLARE
  url text := coalesce(nullif(current_setting('test.mock_api', true), ''), 'http://127.0.0.1:9');
BEGIN
  EXECUTE format('CREATE SERVER opscom FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L, login_source %L)',
                 'opscom', url, 'BANNER');
  EXECUTE format('CREATE SERVER cloudcard FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L)',
                 'cloudcard', url);
  EXECUTE format('CREATE SERVER cloudcard_static FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L, find_by %L)',
                 'cloudcard', url, 'email');
  EXECUTE format('CREATE SERVER cloudcard_people FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L, api %L)',
                 'cloudcard', url, 'people');
END $$;

CREATE USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (api_token 'opscom-test-token-0123456789');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard OPTIONS (persistent_access_token 'pat-test-0123456789abcdef');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_static OPTIONS (auth_token 'cc-static-token-0123456789');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_people OPTIONS (auth_token 'cc-static-token-0123456789');

SELECT srvname, array_to_string(srvoptions, ', ') ~ '127\.0\.0\.1' AS points_at_mock
FROM pg_foreign_server ORDER BY srvname;

-- Who may call what (SPEC section 7).
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_execute
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'campus_sync' ORDER BY 1;

-- The queue and its views hold personal data: not readable by PUBLIC.
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_may_read
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'campus_sync' AND c.relkind IN ('r', 'v', 'S') ORDER BY 1;
-- it is WAL-logged (not UNLOGGED), and pg_dump keeps its contents
SELECT relname, relpersistence FROM pg_class WHERE relname IN ('queue_items', 'target_health') ORDER BY 1;
SELECT extconfig::regclass[] FROM pg_extension WHERE extname = 'campus_sync';
