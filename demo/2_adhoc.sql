-- The DBA's ad hoc SELECT: preview, then push now, row by row
\set QUIET on
\pset footer off
\echo
\echo '== 1. a DBA previews the OPS-COM body of a row (nothing is sent, no secret shown)'
SELECT jsonb_pretty(campus_sync.opscom_payload(p, '{"unique_id": "banner_id"}'))
FROM people p WHERE banner_id = 'B00010004';

\echo '== 2. ... and pushes the whole table to OPS-COM now: a bad row is a result, not an ERROR'
SELECT p.banner_id, r.ok, r.http_status, r.remote_id, r.error
FROM people p, LATERAL campus_sync.opscom_push(p, '{"unique_id": "banner_id"}') r
ORDER BY p.banner_id;

\echo '== 3. CloudCard: create or update each cardholder (PUT, then POST when not found)'
SELECT p.banner_id, r.ok, r.http_status, r.remote_id, r.error
FROM people p,
     LATERAL campus_sync.cloudcard_upsert(p, '{"identifier": "banner_id", "customFields": {"Dorm": "dorm"}}') r
ORDER BY p.banner_id;
