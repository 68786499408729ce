-- opscom_push: POST /api/OC_TOMA/v1/profiles/push with apiToken in the body;
-- per-row problems come back as ok = false, never as an ERROR.
SELECT mock_reset();

CREATE TABLE students (unique_id text PRIMARY KEY, first_name text, last_name text,
                       email text, user_type_id int, date_of_birth date);
INSERT INTO students VALUES
  ('S001', 'Ada', 'Lovelace', 'ada@campus.edu', 6, '1815-12-10'),
  ('S002', E'Zo\u00eb "Z"', 'O''Neil', 'zoe@campus.edu', 7, NULL),
  ('S003', repeat('x', 60), 'Toolong', 'x@campus.edu', 6, NULL);

-- The DBA's ad hoc SELECT over a table: one request per valid row, none for S003.
SELECT unique_id, r.ok, r.http_status, r.remote_id, r.error
FROM students s, LATERAL campus_sync.opscom_push(s) r ORDER BY unique_id;

-- What the mock received: method, path, headers, and the exact body
-- (apiToken first, then the payload in the API page's order).
SELECT r->>'method' AS method, r->>'path' AS path, r->>'query' AS query,
       r->'headers'->>'content-type' AS content_type, r->'headers'->>'accept' AS accept,
       r->'headers'->>'user-agent' AS user_agent, r->'headers' ? 'x-auth-token' AS has_auth_header
FROM mock_requests() r;
SELECT replace(r->>'body', 'opscom-test-token-0123456789', '<api_token>') AS body FROM mock_requests() r;
-- the body is exactly what opscom_payload previews, plus the token
SELECT (r->'json') = campus_sync.opscom_payload(s) || '{"apiToken": "opscom-test-token-0123456789"}'
FROM mock_requests() r JOIN students s ON s.unique_id = r->'json'->>'unique_id';
SELECT jsonb_pretty(mock('opscom_profiles') -> 'S002' -> 'fields');

-- (f(p)).* calls f once per column: campus_sync sends once all the same.
SELECT mock_reset();
SELECT (campus_sync.opscom_push(s)).ok, (campus_sync.opscom_push(s)).remote_id FROM students s WHERE unique_id = 'S001';
CREATE TEMP TABLE pushed AS SELECT (campus_sync.opscom_push(s)).* FROM students s WHERE unique_id = 'S002';
SELECT ok, http_status, remote_id, error FROM pushed;
SELECT count(*) AS requests FROM mock_requests();

-- OPS-COM reports errors as HTTP 200 with an ErrorCode body: a failure all the same.
SELECT mock_reset();
SELECT r.ok, r.http_status, r.remote_id, r.error, r.response
FROM students s, LATERAL campus_sync.opscom_push(s, options => '{"login_source": "NOPE"}') r
WHERE unique_id = 'S001';
-- a new profile without names: OPS-COM's 9017
SELECT r.ok, r.http_status, r.error
FROM (SELECT 'NEW1'::text AS unique_id, 'n@campus.edu'::text AS email) x, LATERAL campus_sync.opscom_push(x) r;

-- a wrong token: the remote echoes it back, campus_sync redacts it everywhere
CREATE SERVER opscom_wrong FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', login_source 'BANNER', url 'http://127.0.0.1:1');
DO $$ BEGIN
  EXECUTE format('ALTER SERVER opscom_wrong OPTIONS (SET url %L)', current_setting('test.mock_api'));
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER opscom_wrong OPTIONS (api_token 'wrong-token-not-valid-42');
SELECT r.ok, r.http_status, r.error, r.response
FROM students s, LATERAL campus_sync.opscom_push(s, server => 'opscom_wrong') r WHERE unique_id = 'S001';
SELECT position('wrong-token' in r::text) AS token_in_result
FROM students s, LATERAL campus_sync.opscom_push(s, server => 'opscom_wrong') r WHERE unique_id = 'S001';

-- HTTP errors: 503 (with a body), a redirect (never followed), a non-JSON answer
SELECT mock_reset();
SELECT mock('behave?status=503&body=maintenance&count=1');
SELECT r.ok, r.http_status, r.error, r.response FROM students s, LATERAL campus_sync.opscom_push(s) r WHERE unique_id = 'S001';
SELECT mock('behave?status=302&location=http://127.0.0.1:1/elsewhere&count=1');
SELECT r.ok, r.http_status, r.error FROM students s, LATERAL campus_sync.opscom_push(s) r WHERE unique_id = 'S001';
SELECT mock('behave?status=200&body=%3Chtml%3Eok%3C/html%3E&count=1');
SELECT r.ok, r.http_status, r.error, r.response FROM students s, LATERAL campus_sync.opscom_push(s) r WHERE unique_id = 'S001';
SELECT r->>'path' AS path, r->>'status' AS status FROM mock_requests() r;

-- no server listening: a transport error, no HTTP status
ALTER SERVER opscom_wrong OPTIONS (SET url 'http://127.0.0.1:1');
SELECT r.ok, r.http_status, regexp_replace(r.error, 'after \d+ ms', 'after N ms') AS error
FROM students s, LATERAL campus_sync.opscom_push(s, server => 'opscom_wrong') r WHERE unique_id = 'S001';
DROP SERVER opscom_wrong CASCADE;

-- One connection, kept alive and reused, for 1,000 calls in a (new) session.
\c
SELECT mock_reset();
SELECT count(*) FILTER (WHERE r.ok) AS ok, count(*) AS calls
FROM (SELECT 'B' || g AS unique_id, 'First' AS first_name, 'Last' AS last_name,
             'b' || g || '@campus.edu' AS email FROM generate_series(1, 1000) g) x,
     LATERAL campus_sync.opscom_push(x) r;
SELECT m->'connections_total' AS connections, m->'requests_total' AS requests FROM mock('stats') m;

-- the OPS-COM user types, for mapping user_type_id
SELECT * FROM campus_sync.opscom_user_types() ORDER BY id;
SELECT r->>'path' AS path, replace(r->>'body', 'opscom-test-token-0123456789', '<api_token>') AS body
FROM mock_requests() r WHERE r->>'path' LIKE '%types%';
