-- The main job: a trigger queues every change; the background worker sends
-- each one as soon as its transaction commits
\set QUIET on
\pset footer off
\echo
\echo '== 4. a trigger on the person table is all a DBA writes'
CREATE TRIGGER people_opscom AFTER INSERT OR UPDATE ON people FOR EACH ROW
  EXECUTE FUNCTION campus_sync.sync_trigger('opscom', '{"unique_id": "banner_id"}');
CREATE TRIGGER people_cloudcard AFTER INSERT OR UPDATE ON people FOR EACH ROW
  EXECUTE FUNCTION campus_sync.sync_trigger('cloudcard', '{"identifier": "banner_id", "customFields": {"Dorm": "dorm"}}');

\echo '== 5. the nightly load changes people: the changes queue in the same transaction'
BEGIN;
UPDATE people SET last_name = 'Lovelace-King' WHERE banner_id = 'B00010001';
UPDATE people SET dorm = 'South' WHERE banner_id = 'B00010002';
UPDATE people SET dorm = 'South2' WHERE banner_id = 'B00010002';   -- a second change: coalesced
INSERT INTO people VALUES ('B00010006', 'Katherine', 'Johnson', 'kj@campus.edu', 'VA', '2004-08-26', 6, 'West');
UPDATE people SET state = state WHERE banner_id = 'B00010003';       -- changes nothing sent: not queued
UPDATE people SET dorm = 'Annex' WHERE banner_id = 'B00010005';      -- invalid email: kept as invalid, WARNING
COMMIT;
BEGIN;
UPDATE people SET first_name = 'Never' WHERE banner_id = 'B00010004';
ROLLBACK;                                                             -- rolled back: nothing queued

\echo '== 6. the background worker sent them at the commit: no deliver() call, no cron job'
DO $$
BEGIN
  FOR i IN 1..100 LOOP          -- at most 10 s; it takes milliseconds
    EXIT WHEN NOT EXISTS (SELECT 1 FROM campus_sync.queue
                          WHERE state IN ('pending', 'in_flight', 'retrying'));
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT id, server, person_key, state, last_http_status, remote_id, delivered_at IS NOT NULL AS delivered
FROM campus_sync.queue ORDER BY id;
SELECT running, state, delivered, last_error FROM campus_sync.worker;

\echo '== 7. is my sync healthy?'
SELECT server, up, pending, in_flight, retrying, failed, invalid, delivered_last_hour
FROM campus_sync.status ORDER BY server;
