-- The wrapper's validator: every server and user mapping option is checked
-- at CREATE/ALTER time with a clear message.

-- service and url are required
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (url 'https://x.example')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'banner', url 'https://x.example')$q$);
-- a service's own option without a service: the missing service is what to say
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (url 'https://x.example', login_source 'BANNER')$q$);

-- unknown options, and secrets put on the server by mistake
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', colour 'blue')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', api_token 'oops')$q$);

-- URLs: http and https only, a host, no credentials, no query
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'ftp://files.example')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'file:///etc/passwd')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'not a url')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://user:pw@x.example')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example/api?token=1')$q$);

-- numbers, booleans and choices
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', timeout_ms 'soon')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', timeout_ms '0')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', connect_timeout_ms '12x')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', concurrency '1000')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', max_attempts '-1')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', retry_max_delay_s '99999999999')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', verify_tls 'maybe')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', on_invalid 'ignore')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', login_source 'a-login-source-longer-than-20')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', required_fields 'email, shoe_size')$q$);

-- options of the other service
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', find_by 'email')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'cloudcard', url 'https://x.example', login_source 'BANNER')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'cloudcard', url 'https://x.example', find_by 'id')$q$);
SELECT err($q$CREATE SERVER s_bad FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'cloudcard', url 'https://x.example', api 'v2')$q$);

-- a good server with every option, then ALTER checks the result as a whole
CREATE SERVER s_all FOREIGN DATA WRAPPER campus_sync OPTIONS (
  service 'cloudcard', url 'https://api.cloudcard.us/', connect_timeout_ms '2000',
  timeout_ms '10000', concurrency '32', max_attempts '5', retry_max_delay_s '60',
  ca_file '/etc/ssl/certs/ca-certificates.crt', verify_tls 'true', on_invalid 'error',
  required_fields 'email, cardholderGroupName', find_by 'email', send_invitation 'false',
  update_roles 'true', api 'person');
SELECT err($q$ALTER SERVER s_all OPTIONS (SET timeout_ms 'never')$q$);
SELECT err($q$ALTER SERVER s_all OPTIONS (DROP url)$q$);
ALTER SERVER s_all OPTIONS (SET url 'http://127.0.0.1:9');
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname = 's_all';

-- verify_tls false: superusers only
CREATE ROLE cs_admin LOGIN;
GRANT USAGE ON FOREIGN DATA WRAPPER campus_sync TO cs_admin;
SET ROLE cs_admin;
SELECT err($q$CREATE SERVER s_insecure FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', verify_tls 'false')$q$);
CREATE SERVER s_mine FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example');
SELECT err($q$ALTER SERVER s_mine OPTIONS (ADD verify_tls 'false')$q$);
RESET ROLE;
SELECT err($q$CREATE SERVER s_insecure FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url 'https://x.example', verify_tls 'false')$q$);

-- user mappings carry only secrets, never echoed back in a message
SELECT err($q$CREATE USER MAPPING FOR cs_admin SERVER s_mine OPTIONS (password 'hunter2')$q$);
SELECT err($q$CREATE USER MAPPING FOR cs_admin SERVER s_mine OPTIONS (api_token '')$q$);
SELECT err($q$CREATE USER MAPPING FOR cs_admin SERVER s_mine OPTIONS (api_token 'this-api-token-is-far-too-long-for-ops-com-0123456789')$q$);
SELECT err($q$CREATE USER MAPPING FOR cs_admin SERVER s_all OPTIONS (auth_token 'a', persistent_access_token 'b')$q$);
CREATE USER MAPPING FOR cs_admin SERVER s_mine OPTIONS (api_token 'short-token');

-- the wrapper itself takes no options, and servers hold no foreign tables
SELECT err($q$ALTER FOREIGN DATA WRAPPER campus_sync OPTIONS (ADD url 'https://x.example')$q$);
SELECT err($q$CREATE FOREIGN TABLE people_remote (id int) SERVER s_mine$q$);

-- per-call options: the same names, but never the url (the secret goes there)
CREATE TABLE opt_people (unique_id text, first_name text);
INSERT INTO opt_people VALUES ('u1', 'Ann');
SELECT campus_sync.opscom_payload(p, options => '{"login_source": "OPSCOM"}') FROM opt_people p;
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '{"url": "https://evil.example"}') FROM opt_people p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '{"service": "cloudcard"}') FROM opt_people p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '{"colour": "blue"}') FROM opt_people p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '{"timeout_ms": "x"}') FROM opt_people p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '{"find_by": "email"}') FROM opt_people p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '{"login_source": ["a"]}') FROM opt_people p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '[1]') FROM opt_people p$q$);
GRANT SELECT ON opt_people TO cs_admin;
GRANT USAGE ON FOREIGN SERVER opscom TO cs_admin;
SET ROLE cs_admin;
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '{"verify_tls": false}') FROM opt_people p$q$);
SELECT err($q$SELECT campus_sync.opscom_payload(p, options => '{"ca_file": "/tmp/my-ca.pem"}') FROM opt_people p$q$);
RESET ROLE;

DROP SERVER s_all CASCADE;
DROP SERVER s_mine CASCADE;
DROP SERVER s_insecure CASCADE;
DROP TABLE opt_people;
REVOKE USAGE ON FOREIGN SERVER opscom FROM cs_admin;
REVOKE USAGE ON FOREIGN DATA WRAPPER campus_sync FROM cs_admin;
DROP ROLE cs_admin;
