-- Who may send, which secret is used, and where secrets never appear.
SELECT mock_reset();
CREATE ROLE clerk LOGIN;
GRANT SELECT ON students TO clerk;

-- no USAGE on the server: refused, with the GRANT to run
SET ROLE clerk;
SELECT err($q$SELECT campus_sync.opscom_push(s) FROM students s WHERE unique_id = 'S001'$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(s) FROM students s WHERE unique_id = 'S001'$q$);
SELECT err($q$SELECT * FROM campus_sync.opscom_user_types()$q$);
SELECT err($q$SELECT campus_sync.cloudcard_person('A1234567')$q$);
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER opscom TO clerk;
SET ROLE clerk;
SELECT (campus_sync.opscom_push(s)).ok FROM students s WHERE unique_id = 'S001';
-- a non-superuser cannot read the secrets of user mappings
SELECT srvname, umoptions FROM pg_user_mappings WHERE srvname = 'opscom';
RESET ROLE;

-- the mapping of the calling role wins over PUBLIC's
CREATE USER MAPPING FOR clerk SERVER opscom OPTIONS (api_token 'wrong-token-not-valid-42');
SET ROLE clerk;
SELECT r.ok, r.error FROM students s, LATERAL campus_sync.opscom_push(s) r WHERE unique_id = 'S001';
RESET ROLE;
SELECT (campus_sync.opscom_push(s)).ok AS superuser_uses_public_mapping FROM students s WHERE unique_id = 'S001';
DROP USER MAPPING FOR clerk SERVER opscom;

-- no user mapping at all: a configuration error, raised
CREATE SERVER opscom_nomap FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'http://127.0.0.1:1', login_source 'BANNER');
SELECT err($q$SELECT campus_sync.opscom_push(s, server => 'opscom_nomap') FROM students s WHERE unique_id = 'S001'$q$);
-- a mapping without the secret this service needs
CREATE USER MAPPING FOR PUBLIC SERVER opscom_nomap OPTIONS (auth_token 'cc-static-token-0123456789');
SELECT err($q$SELECT campus_sync.opscom_push(s, server => 'opscom_nomap') FROM students s WHERE unique_id = 'S001'$q$);
DROP SERVER opscom_nomap CASCADE;
CREATE SERVER cloudcard_nomap FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'cloudcard', url 'http://127.0.0.1:1');
CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_nomap OPTIONS (api_token 'opscom-test-token-0123456789');
SELECT err($q$SELECT campus_sync.cloudcard_upsert(c, server => 'cloudcard_nomap') FROM cardholders c LIMIT 1$q$);
DROP SERVER cloudcard_nomap CASCADE;

-- secrets: never in a preview, a result, an error or a notice of these tests
SELECT campus_sync.opscom_payload(s) ? 'apiToken' AS preview_has_token FROM students s WHERE unique_id = 'S001';
SELECT count(*) AS results_with_a_secret
FROM students s, LATERAL campus_sync.opscom_push(s) r
WHERE r::text ~ 'opscom-test-token|pat-test-|cc-static-token|wrong-token';

DROP OWNED BY clerk;
DROP ROLE clerk;
