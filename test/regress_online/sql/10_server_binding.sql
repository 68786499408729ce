-- A queue item belongs to the server it was built for (by OID), and to
-- that server's service and person key; sync triggers are checked when
-- they are created and can be checked without writing a row.
SELECT mock_reset();
SET client_min_messages = notice;
DELETE FROM campus_sync.queue_items;
DELETE FROM campus_sync.inbox;

DO $$ BEGIN
  EXECUTE format('CREATE SERVER ops2 FOREIGN DATA WRAPPER campus_sync
                  OPTIONS (service %L, url %L, login_source %L)',
                 'opscom', current_setting('test.mock_api'), 'BANNER');
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER ops2 OPTIONS (api_token 'opscom-test-token-0123456789');
CREATE TABLE staff (unique_id text PRIMARY KEY, first_name text, last_name text, email text);
INSERT INTO staff VALUES ('B1', 'Bea', 'Ng', 'bea@campus.edu'), ('B2', 'Bo', 'Li', 'bo@campus.edu');
SELECT campus_sync.enqueue('ops2', s) > 0 AS queued FROM staff s ORDER BY unique_id;
SELECT server, person_key, state FROM campus_sync.queue ORDER BY person_key;
SELECT server_oid = (SELECT oid FROM pg_foreign_server WHERE srvname = 'ops2') AS bound_to_ops2,
       service, key_field
FROM campus_sync.inbox ORDER BY person_key;

-- Changing the service, or CloudCard's person key, under waiting items is refused.
SELECT err($q$ALTER SERVER ops2 OPTIONS (SET service 'cloudcard', DROP login_source)$q$);
SELECT count(*) AS still_waiting FROM campus_sync.queue WHERE server = 'ops2' AND state = 'pending';

-- Renaming is fine: the items follow the server, not its name.
ALTER SERVER ops2 RENAME TO ops3;
SELECT server, person_key, state FROM campus_sync.queue ORDER BY person_key;
ALTER SERVER ops3 RENAME TO ops2;

-- Dropping the server discards its items and their personal data; a new
-- server of the same name (another service) never gets them.
DROP SERVER ops2 CASCADE;
SELECT count(*) AS items_left FROM campus_sync.queue;
DO $$ BEGIN
  EXECUTE format('CREATE SERVER ops2 FOREIGN DATA WRAPPER campus_sync OPTIONS (service %L, url %L)',
                 'cloudcard', current_setting('test.mock_api'));
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER ops2 OPTIONS (persistent_access_token 'pat-test-0123456789abcdef');
SELECT server, delivered, retried, failed FROM campus_sync.deliver('ops2');
SELECT count(*) AS requests FROM mock_requests();
DROP SERVER ops2 CASCADE;

-- CloudCard keyed by identifier: changing find_by under waiting items is
-- refused too; with nothing waiting it is allowed.
CREATE TABLE badge_holders (identifier text, email text);
INSERT INTO badge_holders VALUES ('C7', 'c7@campus.edu');
SELECT campus_sync.enqueue('cloudcard', c) > 0 AS queued FROM badge_holders c;
SELECT err($q$ALTER SERVER cloudcard OPTIONS (ADD find_by 'email')$q$);
SELECT server, delivered, retried, failed FROM campus_sync.deliver('cloudcard');
ALTER SERVER cloudcard OPTIONS (ADD find_by 'email');
ALTER SERVER cloudcard OPTIONS (DROP find_by);

-- Should an item and its server disagree all the same (the check was
-- bypassed with event triggers disabled), the item fails and is not sent.
SELECT mock_reset();
DO $$ BEGIN
  EXECUTE format('CREATE SERVER ops4 FOREIGN DATA WRAPPER campus_sync
                  OPTIONS (service %L, url %L, login_source %L)',
                 'opscom', current_setting('test.mock_api'), 'BANNER');
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER ops4 OPTIONS (api_token 'opscom-test-token-0123456789');
SELECT campus_sync.enqueue('ops4', s) > 0 AS queued FROM staff s WHERE unique_id = 'B1';
ALTER EVENT TRIGGER campus_sync_server_altered DISABLE;
ALTER SERVER ops4 OPTIONS (SET service 'cloudcard', DROP login_source);
ALTER EVENT TRIGGER campus_sync_server_altered ENABLE;
CREATE USER MAPPING FOR CURRENT_USER SERVER ops4 OPTIONS (auth_token 'cc-static-token-0123456789');
SELECT server, delivered, retried, failed FROM campus_sync.deliver('ops4');
SELECT person_key, state, last_error FROM campus_sync.queue WHERE server = 'ops4';
SELECT count(*) AS requests FROM mock_requests();
-- retry_failed() brings it back; it fails the same way, still unsent
SELECT campus_sync.retry_failed('ops4') AS requeued;
SELECT server, delivered, retried, failed FROM campus_sync.deliver('ops4');
SELECT count(*) AS requests FROM mock_requests();
DROP SERVER ops4 CASCADE;

-- A table whose trigger names a dropped server: writes fail, naming the
-- trigger and how to mend it.
DO $$ BEGIN
  EXECUTE format('CREATE SERVER ops5 FOREIGN DATA WRAPPER campus_sync
                  OPTIONS (service %L, url %L, login_source %L)',
                 'opscom', current_setting('test.mock_api'), 'BANNER');
END $$;
CREATE USER MAPPING FOR PUBLIC SERVER ops5 OPTIONS (api_token 'opscom-test-token-0123456789');
CREATE TRIGGER staff_ops5 AFTER INSERT OR UPDATE ON staff
  FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('ops5');
UPDATE staff SET first_name = 'Beatrice' WHERE unique_id = 'B1';
SELECT person_key, state FROM campus_sync.queue WHERE server = 'ops5';
DROP SERVER ops5 CASCADE;
SELECT err($q$UPDATE staff SET first_name = 'Bee' WHERE unique_id = 'B1'$q$);
SELECT trigger_name, server, ok, sqlstate, error FROM campus_sync.check_trigger('staff');
DROP TRIGGER staff_ops5 ON staff;

-- Sync triggers are checked when they are created ...
SELECT err($q$CREATE TRIGGER t1 AFTER INSERT ON staff FOR EACH ROW
              EXECUTE FUNCTION campus_sync.sync_trigger('opscom', '{"unique_id": ')$q$);
SELECT err($q$CREATE TRIGGER t2 AFTER INSERT ON staff FOR EACH ROW
              EXECUTE FUNCTION campus_sync.sync_trigger('opscom', '{"unique_id": "staff_no"}')$q$);
SELECT err($q$CREATE TRIGGER t3 AFTER INSERT ON staff FOR EACH ROW
              EXECUTE FUNCTION campus_sync.sync_trigger('no_such_server')$q$);
SELECT err($q$CREATE TRIGGER t4 AFTER INSERT ON staff FOR EACH STATEMENT
              EXECUTE FUNCTION campus_sync.sync_trigger('opscom')$q$);
SELECT tgname FROM pg_trigger WHERE tgrelid = 'staff'::regclass ORDER BY 1;
-- ... a good one is taken; other triggers are left alone
CREATE TRIGGER staff_opscom AFTER INSERT OR UPDATE ON staff
  FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('opscom', '{"first_name": "first_name"}');
CREATE FUNCTION staff_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER staff_other AFTER INSERT ON staff FOR EACH ROW EXECUTE FUNCTION staff_noop();

-- ... and check_trigger() checks them without writing a row: one row per
-- sync trigger (here two broken ones, created with the check disabled).
ALTER EVENT TRIGGER campus_sync_trigger_created DISABLE;
CREATE TRIGGER staff_badmap AFTER INSERT ON staff FOR EACH ROW
  EXECUTE FUNCTION campus_sync.sync_trigger('opscom', '{"email": "no_such_column"}');
CREATE TRIGGER staff_badjson AFTER INSERT ON staff FOR EACH ROW
  EXECUTE FUNCTION campus_sync.sync_trigger('opscom', 'not json');
ALTER EVENT TRIGGER campus_sync_trigger_created ENABLE;
SELECT trigger_name, server, ok, sqlstate, error, hint FROM campus_sync.check_trigger('staff') ORDER BY 1;
-- the first write names the trigger, in the message or its context
INSERT INTO staff VALUES ('B3', 'Cy', 'Po', 'cy@campus.edu');
DROP TRIGGER staff_badjson ON staff;
DROP TRIGGER staff_badmap ON staff;
SELECT err($q$SELECT * FROM campus_sync.check_trigger('no_such_table')$q$);

-- deliver_batches() is a procedure that commits: CALL only, and not inside
-- a transaction block
BEGIN;
SELECT err($q$CALL campus_sync.deliver_batches()$q$);
ROLLBACK;
CALL campus_sync.deliver_batches(max_seconds => 0);
SELECT mock_reset();
INSERT INTO staff VALUES ('B4', 'Di', 'Wu', 'di@campus.edu');
CALL campus_sync.deliver_batches('opscom');
SELECT person_key, state FROM campus_sync.queue WHERE person_key = 'B4';

DROP TABLE staff, badge_holders;
DROP FUNCTION staff_noop();
DELETE FROM campus_sync.queue_items;
