-- cloudcard_upsert: PUT /person/{key}?findBy=...&updateRoles=..., and on 404
-- POST /person?sendInvitation=... to create; X-Auth-Token from a fixed
-- auth_token or a persistent access token exchanged for a session token.
SELECT mock_reset();

CREATE TABLE cardholders (identifier text PRIMARY KEY, email text, "cardholderGroupName" text,
                          enabled boolean, role_office boolean, custom_fields jsonb);
INSERT INTO cardholders VALUES
  ('A1234567', 'jon.doe@foo.edu', 'Students', true, false, '{"Class Year": "2027", "Batch": "1"}'),
  (E'a?b#c%d+e f;g', 'odd@foo.edu', NULL, NULL, NULL, NULL),
  ('NOEMAIL', 'not an email', NULL, NULL, NULL, NULL);

-- New people: PUT answers 404, then POST creates them (201).
SELECT identifier, r.ok, r.http_status, r.remote_id, r.error
FROM cardholders c, LATERAL campus_sync.cloudcard_upsert(c) r ORDER BY identifier;
SELECT r->>'method' AS method, r->>'path' AS path, r->>'query' AS query, r->>'status' AS status,
       r->'headers' ? 'x-auth-token' AS has_token, r->'headers'->>'content-type' AS content_type
FROM mock_requests() r ORDER BY (r->>'seq')::int;
-- the PAT exchange body, and the update (flat) and create (nested) bodies
SELECT replace(r->>'body', 'pat-test-0123456789abcdef', '<pat>') AS body
FROM mock_requests() r WHERE r->>'path' = '/authentication-token';
SELECT r->>'method' AS method, r->>'body' AS body FROM mock_requests() r
WHERE r->>'path' LIKE '/person%' AND r->'json'->>'identifier' = 'A1234567' ORDER BY (r->>'seq')::int;
-- the path segment is percent-encoded (? # % + ; and the space) and arrives whole
SELECT r->>'path' AS path FROM mock_requests() r WHERE r->>'method' = 'PUT' AND r->'json'->>'email' = 'odd@foo.edu';
SELECT campus_sync.cloudcard_person(E'a?b#c%d+e f;g') ->> 'email' AS found_by_identifier;
SELECT campus_sync.cloudcard_person('nobody-here') IS NULL AS not_found_is_null;

-- Existing people: one PUT (202), custom fields flat, roles as booleans.
SELECT mock_reset();
SELECT (mock('cloudcard_seed', '{"identifier": "E100", "email": "old@foo.edu"}') ->> 'id') IS NOT NULL AS seeded;
SELECT r.ok, r.http_status, r.remote_id IS NOT NULL AS has_remote_id, r.response ->> 'email' AS email_now
FROM (SELECT 'E100'::text AS identifier, 'new@foo.edu'::text AS email, true AS role_office,
             '{"Dorm": "West"}'::jsonb AS custom_fields) x,
     LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT r->>'method' AS method, r->>'path' AS path, r->>'query' AS query, r->>'status' AS status, r->>'body' AS body
FROM mock_requests() r WHERE r->>'path' <> '/authentication-token' ORDER BY (r->>'seq')::int;
SELECT p->'customFields' AS custom_fields, p->'authorities' AS roles
FROM jsonb_array_elements(mock('cloudcard_people')) p WHERE p->>'identifier' = 'E100';

-- find_by email: the email is the key (percent-encoded), fixed auth_token header
SELECT mock_reset();
SELECT r.ok, r.http_status FROM (SELECT 'x+y@foo.edu'::text AS email) x,
  LATERAL campus_sync.cloudcard_upsert(x, server => 'cloudcard_static') r;
SELECT r->>'method' AS method, r->>'path' AS path, r->>'query' AS query, r->'headers'->>'x-auth-token' AS token
FROM mock_requests() r ORDER BY (r->>'seq')::int;

-- options: send_invitation and update_roles go into the query string
SELECT mock_reset();
SELECT r.ok FROM (SELECT 'OPT1'::text AS identifier) x,
  LATERAL campus_sync.cloudcard_upsert(x, options => '{"send_invitation": true, "update_roles": true}') r;
SELECT r->>'method' AS method, r->>'query' AS query FROM mock_requests() r
WHERE r->>'path' <> '/authentication-token' ORDER BY (r->>'seq')::int;

-- The deprecated people API: one POST with allowUpdate=true, nested customFields.
SELECT mock_reset();
SELECT r.ok, r.http_status, r.remote_id IS NOT NULL AS has_id
FROM cardholders c, LATERAL campus_sync.cloudcard_upsert(c, server => 'cloudcard_people') r
WHERE identifier = 'A1234567';
SELECT r.ok, r.http_status FROM cardholders c, LATERAL campus_sync.cloudcard_upsert(c, server => 'cloudcard_people') r
WHERE identifier = 'A1234567';
SELECT r->>'method' AS method, r->>'path' AS path, r->>'query' AS query, r->>'status' AS status, r->>'body' AS body
FROM mock_requests() r ORDER BY (r->>'seq')::int;

-- The single-sign-on login link (people API, getLoginLink=true).
SELECT campus_sync.cloudcard_login_link(c) ~ '^https://app\.cloudcard\.test/#/login\?access_token=[0-9a-f]{32}$' AS login_link
FROM cardholders c WHERE identifier = 'A1234567';
SELECT r->>'path' AS path, r->>'query' AS query FROM mock_requests() r ORDER BY (r->>'seq')::int DESC LIMIT 1;
SELECT err($q$SELECT campus_sync.cloudcard_login_link(c) FROM cardholders c WHERE identifier = 'NOEMAIL'$q$);

-- A persistent access token is exchanged once for many calls (new session),
-- and again once CloudCard expires the session token (a 401, then one retry).
\c
SELECT mock_reset();
SELECT count(*) FILTER (WHERE r.ok) AS ok
FROM (SELECT 'P' || g AS identifier FROM generate_series(1, 1000) g) x, LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT m->'token_exchanges' AS exchanges, m->'connections_total' AS connections FROM mock('stats') m;
SELECT mock('expire_tokens');
SELECT count(*) FILTER (WHERE r.ok) AS ok
FROM (SELECT 'P' || g AS identifier FROM generate_series(1, 10) g) x, LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT m->'token_exchanges' AS exchanges FROM mock('stats') m;
SELECT count(*) FILTER (WHERE (r->>'status')::int = 401) AS answered_401 FROM mock_requests() r;
-- a short-lived session token is renewed before it expires
SELECT mock('config?session_ttl_s=1') ->> 'session_ttl_s' AS ttl;
SELECT mock('expire_tokens') IS NOT NULL;
SELECT (campus_sync.cloudcard_upsert(x)).ok FROM (SELECT 'P1'::text AS identifier) x;
SELECT (campus_sync.cloudcard_upsert(x)).ok FROM (SELECT 'P2'::text AS identifier) x;
SELECT m->'token_exchanges' AS exchanges FROM mock('stats') m;
SELECT mock('config?session_ttl_s=43200') ->> 'session_ttl_s' AS ttl;

-- A PAT CloudCard refuses, and a wrong static token: ok = false, no secret shown.
CREATE SERVER cloudcard_badpat FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'cloudcard', url 'http://127.0.0.1:1');
CREATE SERVER cloudcard_badtok FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'cloudcard', url 'http://127.0.0.1:1');
DO $$ BEGIN
  EXECUTE format('ALTER SERVER cloudcard_badpat OPTIONS (SET url %L)', current_setting('test.mock_api'));
  EXECUTE format('ALTER SERVER cloudcard_badtok OPTIONS (SET url %L)', current_setting('test.mock_api'));
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_badpat OPTIONS (persistent_access_token 'wrong-token-not-valid-42');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_badtok OPTIONS (auth_token 'wrong-token-not-valid-42');
SELECT r.ok, r.http_status, r.error, r.response
FROM (SELECT 'Z1'::text AS identifier) x, LATERAL campus_sync.cloudcard_upsert(x, server => 'cloudcard_badpat') r;
SELECT r.ok, r.http_status, r.error, r.response
FROM (SELECT 'Z1'::text AS identifier) x, LATERAL campus_sync.cloudcard_upsert(x, server => 'cloudcard_badtok') r;
SELECT err($q$SELECT campus_sync.cloudcard_person('Z1', 'cloudcard_badtok')$q$);
DROP SERVER cloudcard_badpat CASCADE;
DROP SERVER cloudcard_badtok CASCADE;

-- Invalid rows are not sent; CloudCard's own refusals come back as errors.
SELECT mock_reset();
SELECT r.ok, r.http_status, r.error FROM cardholders c, LATERAL campus_sync.cloudcard_upsert(c) r WHERE identifier = 'NOEMAIL';
SELECT mock('behave?method=POST&path_prefix=/person&status=400&body=%7B%22message%22%3A%22Person%20already%20exists%22%7D&count=1');
SELECT r.ok, r.http_status, r.error FROM (SELECT 'DUP1'::text AS identifier) x, LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT mock('behave?method=PUT&status=500&count=1');
SELECT r.ok, r.http_status, r.error FROM (SELECT 'DUP1'::text AS identifier) x, LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT count(*) AS requests FROM mock_requests() r WHERE r->'json'->>'email' = 'not an email';

-- Keys the URL path /person/{key} would misread (".", "..", any "/"): ok =
-- false with the reason, and no request at all -- with either api, and for
-- the login link.  A NaN identifier neither.
SELECT mock_reset();
SELECT x.identifier, r.ok, r.http_status, r.error
FROM (VALUES ('..'), ('.'), ('a/b'), ('/')) x(identifier), LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT r.ok, r.error FROM (SELECT '..'::text AS identifier) x,
  LATERAL campus_sync.cloudcard_upsert(x, server => 'cloudcard_people') r;
SELECT r.ok, r.error FROM (SELECT 'x/y@foo.edu'::text AS email) x,
  LATERAL campus_sync.cloudcard_upsert(x, server => 'cloudcard_static') r;
SELECT r.ok, r.error FROM (SELECT 'NaN'::float8 AS identifier) x, LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT err($q$SELECT campus_sync.cloudcard_login_link(x) FROM (SELECT '..'::text AS identifier) x$q$);
-- cloudcard_person(key) refuses them too, and the empty key (GET /person/)
SELECT err($q$SELECT campus_sync.cloudcard_person('..')$q$);
SELECT err($q$SELECT campus_sync.cloudcard_person('.')$q$);
SELECT err($q$SELECT campus_sync.cloudcard_person('a/b')$q$);
SELECT err($q$SELECT campus_sync.cloudcard_person('')$q$);
SELECT err($q$SELECT campus_sync.cloudcard_person('x/y@foo.edu', 'cloudcard_static')$q$);
SELECT err($q$SELECT campus_sync.cloudcard_person(repeat('k', 256))$q$);
-- custom fields jsonb cannot hold: ok = false, not an error of the statement
SELECT r.ok, r.http_status, r.error FROM (SELECT 'U0'::text AS identifier, '{"Dorm": "a\u0000b"}'::json AS custom_fields) x,
  LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT count(*) AS requests FROM mock_requests();
-- dots inside a key are sent, unescaped (RFC 3986 leaves "." as it is)
SELECT r.ok, r.http_status FROM (SELECT '...'::text AS identifier) x, LATERAL campus_sync.cloudcard_upsert(x) r;
SELECT r->>'method' AS method, r->>'path' AS path, r->>'status' AS status FROM mock_requests() r
WHERE r->>'path' <> '/authentication-token' ORDER BY (r->>'seq')::int;
SELECT campus_sync.cloudcard_person('...') ->> 'identifier' AS found;
