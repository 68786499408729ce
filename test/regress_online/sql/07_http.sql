-- The HTTP client: timeouts, query cancel, TLS verification.
SELECT mock_reset();

-- statement_timeout stops a hanging request (the mock waits 10 s) promptly.
SELECT mock('behave?delay_ms=10000&count=1');
SELECT clock_timestamp() AS t0 \gset
SET statement_timeout = '500ms';
SELECT campus_sync.opscom_push(s) FROM students s WHERE unique_id = 'S001';
RESET statement_timeout;
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) BETWEEN 0.4 AND 1.5 AS stopped_within_a_second;
-- the backend and its HTTP client carry on
SELECT (campus_sync.opscom_push(s)).ok FROM students s WHERE unique_id = 'S001';

-- timeout_ms: the request's own limit gives ok = false, not an ERROR
SELECT mock('behave?delay_ms=2000&count=1');
SELECT r.ok, r.http_status, regexp_replace(r.error, '\d+ milliseconds', 'N milliseconds') AS error
FROM students s, LATERAL campus_sync.opscom_push(s, options => '{"timeout_ms": 300}') r WHERE unique_id = 'S001';

-- a connection the remote drops without answering: a transport error
SELECT mock('behave?drop=true&count=1');
SELECT r.ok, r.http_status, r.error FROM students s, LATERAL campus_sync.opscom_push(s) r WHERE unique_id = 'S001';
SELECT (campus_sync.opscom_push(s)).ok AS next_call_ok FROM students s WHERE unique_id = 'S001';

-- TLS is verified: the mock's self-signed certificate is refused until its CA is given.
DO $$ BEGIN
  EXECUTE format('CREATE SERVER opscom_tls FOREIGN DATA WRAPPER campus_sync OPTIONS (service %L, url %L, login_source %L, skip_unchanged %L)',
                 'opscom', current_setting('test.mock_tls'), 'BANNER', 'false');
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER opscom_tls OPTIONS (api_token 'opscom-test-token-0123456789');
SELECT r.ok, r.http_status, r.error FROM students s, LATERAL campus_sync.opscom_push(s, server => 'opscom_tls') r
WHERE unique_id = 'S001';
DO $$ BEGIN
  EXECUTE format('ALTER SERVER opscom_tls OPTIONS (ADD ca_file %L)', current_setting('test.ca_file'));
END $$;
SELECT r.ok, r.http_status, r.remote_id FROM students s, LATERAL campus_sync.opscom_push(s, server => 'opscom_tls') r
WHERE unique_id = 'S001';
SELECT r->>'tls' AS over_tls FROM mock_requests() r ORDER BY (r->>'seq')::int DESC LIMIT 1;
-- a superuser may turn verification off for one call
ALTER SERVER opscom_tls OPTIONS (DROP ca_file);
SELECT r.ok FROM students s, LATERAL campus_sync.opscom_push(s, server => 'opscom_tls', options => '{"verify_tls": false}') r
WHERE unique_id = 'S001';
-- a wrong CA file is an error of the request, named as such
SELECT r.ok, r.error ~ 'CA|certificate|cert' AS names_the_ca
FROM students s, LATERAL campus_sync.opscom_push(s, server => 'opscom_tls', options => '{"ca_file": "/nonexistent/ca.pem"}') r
WHERE unique_id = 'S001';
DROP SERVER opscom_tls CASCADE;
