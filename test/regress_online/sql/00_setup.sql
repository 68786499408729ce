-- The online suite (test/regress_online/, make installcheck-online): the
-- tests that send to the mock APIs the test runner starts.  Installs
-- campus_sync, the helpers and the test targets.
CREATE EXTENSION campus_sync;

-- Test helpers: commands to the mock API's control port, through curl.
CREATE TABLE mock_out (line text);

-- A string as one shell word: 'it'\''s'
CREATE FUNCTION shell_quote(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT chr(39) || replace(s, chr(39), chr(39) || '\' || chr(39) || chr(39)) || chr(39)
$$;

CREATE FUNCTION mock(cmd text, body jsonb DEFAULT NULL) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  url text := current_setting('test.mock_control') || '/_mock/' || cmd;
  result jsonb;
BEGIN
  DELETE FROM mock_out;
  EXECUTE format($c$COPY mock_out FROM PROGRAM %L WITH (FORMAT csv, DELIMITER E'\x01', QUOTE E'\x02')$c$,
                 'curl -sS -X POST ' ||
                 CASE WHEN body IS NULL THEN ''
                      ELSE '-H ' || shell_quote('Content-Type: application/json') ||
                           ' --data-binary ' || shell_quote(body::text) || ' '
                 END || shell_quote(url));
  SELECT string_agg(line, E'\n')::jsonb INTO result FROM mock_out;
  RETURN result;
END $$;

-- Every request the mock received since the last reset, in order.
CREATE FUNCTION mock_requests() RETURNS SETOF jsonb LANGUAGE sql AS $$
  SELECT jsonb_array_elements(mock('requests'))
$$;

CREATE FUNCTION mock_reset() RETURNS void LANGUAGE sql AS $$
  SELECT mock('reset'); SELECT NULL::void
$$;

SELECT mock('reset');

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

-- The targets most tests use, on the mock API.  They send every push and
-- item, even a body the target has (skip_unchanged false): these tests are
-- about requests and answers; 13_memory.sql tests the memory.
DO $$
DECLARE
  url text := current_setting('test.mock_api');
BEGIN
  EXECUTE format('CREATE SERVER opscom FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L, login_source %L, skip_unchanged %L)',
                 'opscom', url, 'BANNER', 'false');
  EXECUTE format('CREATE SERVER cloudcard FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L, skip_unchanged %L)',
                 'cloudcard', url, 'false');
  EXECUTE format('CREATE SERVER cloudcard_static FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L, find_by %L, skip_unchanged %L)',
                 'cloudcard', url, 'email', 'false');
  EXECUTE format('CREATE SERVER cloudcard_people FOREIGN DATA WRAPPER campus_sync
                    OPTIONS (service %L, url %L, api %L, skip_unchanged %L)',
                 'cloudcard', url, 'people', 'false');
END $$;

CREATE USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (api_token 'opscom-test-token-0123456789');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard OPTIONS (persistent_access_token 'pat-test-0123456789abcdef');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_static OPTIONS (auth_token 'cc-static-token-0123456789');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_people OPTIONS (auth_token 'cc-static-token-0123456789');

