"""The delivered-state memory (campus_sync.sync_state, issue 11 part 1):
a body the target last acknowledged is not sent again.

- A nightly reload of 10,000 people with 100 changed sends exactly those
  100, by the trigger (one transaction) and by enqueue().
- A person changed and changed back while the change waits is queued, and
  ends as the last state (nothing is skipped over a waiting item: in the
  inbox, in the queue, earlier in the same transaction).
- An item whose body the target got meanwhile is removed unsent.
- Pushes say "unchanged" and send nothing unless forced; forget() clears
  the memory; skip_unchanged 'false' sends everything.
- The memory follows the server: a dropped and re-created server of the
  same name, or a new url, sends again; purge() keeps it.
- A writer whose snapshot is older than a delivery (REPEATABLE READ) judges
  by the delivery, not by its snapshot.
- A writer with INSERT on the person table only gets the same skips, and
  cannot read the memory or call forget().
- The memory survives a crash (pg_ctl stop -m immediate): no resend storm.
- deliver() removing 200,000 unchanged items it moved in itself, in one
  transaction, keeps its private memory flat.
- A reload queued for two servers at once drops what each one's memory
  has, and nothing of a server whose memory is empty (a flush asks once
  per server whether its memory knows anyone).
- The extension dropped and created again in the same session: the
  trigger's commit finds the new memory (the library keeps the relations'
  ids until an invalidation names them).
"""
import json
import threading
import unittest

import psycopg2
import psycopg2.errors

from cluster import Cluster
from helpers import (MOCK_API, SANITIZED, create_database, install_campus_sync, mock, proc_status_kb, query,
                     scalar)

DB = "cs_memory"

PEOPLE = """
    CREATE TABLE people (unique_id text PRIMARY KEY, first_name text, last_name text, email text);
    CREATE TRIGGER people_opscom AFTER INSERT OR UPDATE ON people
      FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('opscom');
"""
PUSH_PATH = "/api/OC_TOMA/v1/profiles/push"


def pushes():
    return [r for r in mock("requests") if r["path"] == PUSH_PATH]


def pushed(field="first_name"):
    return [(p["json"]["unique_id"], p["json"].get(field)) for p in pushes()]


def deliver(conn, server="opscom"):
    return query(conn, "SELECT delivered, retried, failed FROM campus_sync.deliver(%s, 120)", (server,))[0]


def waiting(conn):
    return scalar(conn, "SELECT count(*) FROM campus_sync.queue "
                        "WHERE state IN ('pending', 'retrying', 'in_flight')")


def reload_people(conn, n, changed):
    """What a nightly ETL does: empty the table and load everyone again,
    in one transaction; the first `changed` people have a new first name."""
    query(conn, "BEGIN; TRUNCATE people; "
                "INSERT INTO people SELECT 'P' || i, CASE WHEN i <= %s THEN 'New' ELSE 'First' END || i, "
                "'Last' || i, 'p' || i || '@campus.edu' FROM generate_series(1, %s) i; COMMIT",
          (changed, n))


class MemoryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(DB, PEOPLE, skip_unchanged=True)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()

    def setUp(self):
        mock("reset")
        query(self.conn, "TRUNCATE people; DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox; "
                         "DELETE FROM campus_sync.target_health; DELETE FROM campus_sync.sync_state; "
                         "ALTER SERVER opscom OPTIONS (SET url '%s')" % MOCK_API)
        if scalar(self.conn, "SELECT count(*) FROM pg_options_to_table((SELECT srvoptions FROM pg_foreign_server "
                             "WHERE srvname = 'opscom')) WHERE option_name = 'skip_unchanged'"):
            query(self.conn, "ALTER SERVER opscom OPTIONS (DROP skip_unchanged)")

    def deliver_one(self, first_name="Ada"):
        query(self.conn, "INSERT INTO people VALUES ('P1', %s, 'Lee', 'ada@campus.edu') "
                         "ON CONFLICT (unique_id) DO UPDATE SET first_name = EXCLUDED.first_name", (first_name,))
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        mock("reset")

    def test_a_nightly_reload_of_10000_people_sends_exactly_the_100_changed(self):
        reload_people(self.conn, 10000, 0)
        self.assertEqual(deliver(self.conn), (10000, 0, 0))
        self.assertEqual(len(pushes()), 10000)
        self.assertEqual(query(self.conn, "SELECT remembered FROM campus_sync.status WHERE server = 'opscom'"),
                         [(10000,)])
        # what is remembered: the key, a SHA-256, the remote id, the time; nothing personal
        [(key, hash_len, remote_id, recent)] = query(
            self.conn, "SELECT person_key, length(body_hash), remote_id, delivered_at > now() - interval '5 min' "
                       "FROM campus_sync.sync_state WHERE person_key = 'P7'")
        self.assertEqual((key, hash_len, recent), ("P7", 32, True))
        self.assertRegex(remote_id, r"^\d+$")
        mock("reset")

        reload_people(self.conn, 10000, 100)
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'pending'"), 100)
        self.assertEqual(deliver(self.conn), (100, 0, 0))
        self.assertEqual(sorted(pushed()), sorted((f"P{i}", f"New{i}") for i in range(1, 101)))

        # the same reload again, and enqueue() over everyone: nothing to send
        mock("reset")
        reload_people(self.conn, 10000, 100)
        self.assertEqual(query(self.conn, "SELECT count(*), count(campus_sync.enqueue('opscom', p)) FROM people p"),
                         [(10000, 0)])
        self.assertEqual(waiting(self.conn), 0)
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(pushes(), [])

    def remember_what_waits(self):
        """The memory gets the body of every item in the inbox, as if it
        had been delivered after it was queued."""
        query(self.conn, "INSERT INTO campus_sync.sync_state (server_oid, person_key, body_hash, delivered_at) "
                         "SELECT server_oid, person_key, sha256(convert_to(rtrim(%s, '/'), 'UTF8') "
                         "|| '\\x00'::bytea || convert_to(payload, 'UTF8')), now() FROM campus_sync.inbox",
              (MOCK_API,))

    @unittest.skipIf(SANITIZED, "ASan's allocator keeps what is freed: RssAnon tells nothing there")
    def test_deliver_settling_200000_items_it_moved_itself_keeps_its_memory_flat(self):
        """deliver() moves items out of the inbox and settles them in one
        transaction; here every body is remembered, so each is removed
        unsent (no request: the remote is not what is measured).  A command
        counter increment per settled item gave each update of a row moved
        in the same transaction a combo command id, about 50 bytes kept to
        the end of the transaction: 10 MB here, 53 MB for a million."""
        query(self.conn, "INSERT INTO people VALUES ('P1', 'Ada', 'Lee', 'ada@campus.edu')")
        self.remember_what_waits()
        self.assertEqual(deliver(self.conn), (0, 0, 0), "the memory's hash is not the deliverer's")
        self.assertEqual((pushes(), waiting(self.conn)), ([], 0))

        n = 200000
        query(self.conn, "INSERT INTO people SELECT 'M' || i, 'First' || i, 'Last' || i, 'm' || i || '@campus.edu' "
                         "FROM generate_series(1, %s) i", (n,))
        self.remember_what_waits()
        pid = scalar(self.conn, "SELECT pg_backend_pid()")
        before = peak = proc_status_kb(pid, "RssAnon")
        done = threading.Event()

        def sample():
            nonlocal peak
            while not done.wait(0.05):
                peak = max(peak, proc_status_kb(pid, "RssAnon"))
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            counts = deliver(self.conn)
        finally:
            done.set()
            sampler.join()
        print(f"\n    RssAnon {before // 1024} MB, at most {peak // 1024} MB while "
              f"{n:,} items were removed unsent", end=" ")
        self.assertEqual(counts, (0, 0, 0))
        self.assertEqual((pushes(), waiting(self.conn)), ([], 0))
        self.assertLess(peak - before, 4 * 1024, "deliver()'s memory grew with the items it settled")

    def test_enqueue_returns_null_for_a_body_the_target_has_and_an_id_otherwise(self):
        self.deliver_one("Ada")
        self.assertIsNone(scalar(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p"))
        query(self.conn, "UPDATE people SET first_name = 'Bea'")
        self.assertIsInstance(scalar(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p"), int)

    def test_a_change_and_back_while_the_change_waits_in_the_inbox_is_queued(self):
        self.deliver_one("Ada")
        query(self.conn, "UPDATE people SET first_name = 'Bea'")
        query(self.conn, "UPDATE people SET first_name = 'Ada'")
        self.assertEqual(waiting(self.conn), 2)
        # Ada, the newest, supersedes Bea and is what the target has: nothing is sent
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(pushes(), [])
        self.assertEqual(waiting(self.conn), 0)
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue"), 1)   # Ada's delivered item

    def test_a_change_and_back_in_one_transaction_is_queued(self):
        self.deliver_one("Ada")
        query(self.conn, "BEGIN; UPDATE people SET first_name = 'Bea'; UPDATE people SET first_name = 'Ada'; COMMIT")
        self.assertEqual(waiting(self.conn), 2)
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(pushes(), [])

    def test_a_change_and_back_while_the_change_is_retried_is_queued_and_ends_as_the_last_state(self):
        self.deliver_one("Ada")
        mock("behave", status=503, count=1)
        query(self.conn, "UPDATE people SET first_name = 'Bea'")
        self.assertEqual(deliver(self.conn), (0, 1, 0))
        self.assertEqual(pushed(), [("P1", "Bea")])     # answered 503: the target may or may not have it
        mock("reset")
        query(self.conn, "UPDATE people SET first_name = 'Ada'")
        self.assertEqual(waiting(self.conn), 2)
        # the person waits for Bea's retry (per-person order); once it is due, Ada
        # supersedes Bea, and the memory says the target has Ada: nothing to send
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(waiting(self.conn), 2)
        query(self.conn, "UPDATE campus_sync.queue_items SET next_attempt_at = now() WHERE state = 'retrying'")
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(waiting(self.conn), 0)

    def test_enqueue_after_the_triggers_change_in_one_transaction_is_queued(self):
        self.deliver_one("Ada")
        # Bea waits in the transaction's buffer (written at its commit) when enqueue() writes Ada
        query(self.conn, "BEGIN; UPDATE people SET first_name = 'Bea'; "
                         "SELECT campus_sync.enqueue('opscom', p) FROM "
                         "(SELECT 'P1'::text AS unique_id, 'Ada'::text AS first_name, 'Lee'::text AS last_name, "
                         "'ada@campus.edu'::text AS email) p; COMMIT")
        self.assertEqual(waiting(self.conn), 2)
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(pushes(), [])

    def test_a_change_back_inside_savepoints_is_queued(self):
        self.deliver_one("Ada")
        query(self.conn, """DO $$ BEGIN
            BEGIN UPDATE people SET first_name = 'Bea'; END;
            BEGIN UPDATE people SET first_name = 'Ada'; EXCEPTION WHEN others THEN NULL; END;
          END $$""")
        self.assertEqual(waiting(self.conn), 2)
        # an unchanged body alone, inside a savepoint, is not queued
        query(self.conn, "SELECT * FROM campus_sync.deliver('opscom')")
        query(self.conn, """DO $$ BEGIN
            BEGIN UPDATE people SET last_name = 'Lee2'; UPDATE people SET last_name = 'Lee';
            EXCEPTION WHEN others THEN NULL; END;
          END $$""")
        self.assertEqual(waiting(self.conn), 2)   # Lee2, then Lee: Lee2 waits before it
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        query(self.conn, "DO $$ BEGIN BEGIN UPDATE people SET email = email || ''; "
                         "INSERT INTO people VALUES ('P2', 'Cy', 'Ng', 'cy@campus.edu') ON CONFLICT DO NOTHING; END; END $$")
        self.assertEqual(waiting(self.conn), 1)   # only P2: P1's update changed nothing sent
        self.assertEqual(pushes(), [])

    def test_an_item_whose_body_the_target_got_meanwhile_is_removed_unsent(self):
        self.deliver_one("Ada")
        query(self.conn, "UPDATE people SET first_name = 'Bea'")
        [(ok, status)] = query(self.conn, "SELECT r.ok, r.http_status FROM people p, "
                                          "LATERAL campus_sync.opscom_push(p) r")
        self.assertEqual((ok, status), (True, 200))
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(pushed(), [("P1", "Bea")])     # the push's only
        self.assertEqual(waiting(self.conn), 0)

    def test_deliver_batches_says_how_many_it_removed_unsent(self):
        self.deliver_one("Ada")
        query(self.conn, "UPDATE people SET first_name = 'Bea'")
        query(self.conn, "SELECT campus_sync.opscom_push(p) FROM people p")
        del self.conn.notices[:]
        query(self.conn, "CALL campus_sync.deliver_batches('opscom')")
        [notice] = [n for n in self.conn.notices if "delivered 0" in n]
        self.assertIn("campus_sync: delivered 0, retried 0, failed 0", notice)
        self.assertIn("Removed unsent, the target having their body already (skip_unchanged): 1.", notice)
        self.assertEqual(len(pushes()), 1)      # the push's

    def test_a_push_says_unchanged_and_sends_nothing_unless_forced(self):
        [(ok, status, remote_id)] = query(self.conn, "SELECT r.ok, r.http_status, r.remote_id FROM "
                                                     "(SELECT 'P9'::text AS unique_id, 'Ida'::text AS first_name, "
                                                     "'Ng'::text AS last_name, 'ida@campus.edu'::text AS email) p, "
                                                     "LATERAL campus_sync.opscom_push(p) r")
        self.assertEqual((ok, status), (True, 200))
        row = ("(SELECT 'P9'::text AS unique_id, 'Ida'::text AS first_name, 'Ng'::text AS last_name, "
               "'ida@campus.edu'::text AS email) p")
        [(ok, status, rid, response, error, elapsed)] = query(
            self.conn, f"SELECT r.* FROM {row}, LATERAL campus_sync.opscom_push(p) r")
        self.assertEqual((ok, status, rid, error, elapsed), (True, None, remote_id, None, 0))
        self.assertEqual(response["unchanged"], True)
        self.assertRegex(response["delivered_at"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
        self.assertEqual(len(pushes()), 1)
        [(ok, status)] = query(self.conn, f"SELECT r.ok, r.http_status FROM {row}, "
                                          "LATERAL campus_sync.opscom_push(p, options => '{\"force\": true}') r")
        self.assertEqual((ok, status), (True, 200))
        self.assertEqual(len(pushes()), 2)
        # a per-call skip_unchanged false is the same as force
        query(self.conn, f"SELECT campus_sync.opscom_push(p, options => '{{\"skip_unchanged\": false}}') FROM {row}")
        self.assertEqual(len(pushes()), 3)
        with self.assertRaises(psycopg2.errors.InvalidParameterValue) as cm:
            query(self.conn, f"SELECT campus_sync.opscom_push(p, options => '{{\"force\": \"yes please\"}}') FROM {row}")
        self.assertEqual(cm.exception.diag.message_primary,
                         'invalid option "force": "yes please" is not a boolean')

    def test_forget_one_person_or_all_sends_again(self):
        query(self.conn, "INSERT INTO people SELECT 'P' || i, 'F' || i, 'L', 'p' || i || '@campus.edu' FROM generate_series(1, 3) i")
        self.assertEqual(deliver(self.conn), (3, 0, 0))
        mock("reset")
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.forget('opscom', 'P2')"), 1)
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.forget('opscom', 'P2')"), 0)
        self.assertEqual(query(self.conn, "SELECT count(campus_sync.enqueue('opscom', p)) FROM people p"), [(1,)])
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        self.assertEqual(pushed(), [("P2", "F2")])
        mock("reset")
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.forget('opscom')"), 3)
        self.assertEqual(query(self.conn, "SELECT count(campus_sync.enqueue('opscom', p)) FROM people p"), [(3,)])
        with self.assertRaises(psycopg2.errors.UndefinedObject) as cm:
            query(self.conn, "SELECT campus_sync.forget('nosuch')")
        self.assertEqual(cm.exception.diag.message_primary, 'campus_sync server "nosuch" does not exist')

    def test_skip_unchanged_false_sends_every_body_and_still_remembers(self):
        self.deliver_one("Ada")
        query(self.conn, "ALTER SERVER opscom OPTIONS (ADD skip_unchanged 'false')")
        self.assertIsInstance(scalar(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p"), int)
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        self.assertEqual(pushed(), [("P1", "Ada")])
        query(self.conn, "ALTER SERVER opscom OPTIONS (SET skip_unchanged 'true')")
        query(self.conn, "UPDATE people SET first_name = 'Bea'")
        query(self.conn, "ALTER SERVER opscom OPTIONS (SET skip_unchanged 'false')")
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        # remembered while off: Bea is not sent again once it is on
        query(self.conn, "ALTER SERVER opscom OPTIONS (SET skip_unchanged 'true')")
        self.assertIsNone(scalar(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p"))
        with self.assertRaises(psycopg2.errors.InvalidParameterValue) as cm:
            query(self.conn, "ALTER SERVER opscom OPTIONS (SET skip_unchanged 'maybe')")
        self.assertEqual(cm.exception.diag.message_primary,
                         'invalid server option "skip_unchanged": "maybe" is not a boolean')

    def test_a_new_url_sends_again(self):
        self.deliver_one("Ada")
        other = MOCK_API.replace("127.0.0.1", "localhost")
        self.assertNotEqual(other, MOCK_API)
        query(self.conn, "ALTER SERVER opscom OPTIONS (SET url %s)", (other,))
        self.assertIsInstance(scalar(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p"), int)

    def test_a_dropped_and_recreated_server_of_the_same_name_sends_again(self):
        query(self.conn, f"""
            CREATE SERVER twin FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url '{MOCK_API}',
                                                                          login_source 'BANNER');
            CREATE USER MAPPING FOR PUBLIC SERVER twin OPTIONS (api_token 'opscom-test-token-0123456789')""")
        query(self.conn, "INSERT INTO people VALUES ('T1', 'Tom', 'Ek', 'tom@campus.edu')")
        query(self.conn, "SELECT campus_sync.enqueue('twin', p) FROM people p")
        self.assertEqual(deliver(self.conn, "twin"), (1, 0, 0))
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.sync_state s "
                                           "JOIN pg_foreign_server f ON f.oid = s.server_oid "
                                           "WHERE f.srvname = 'twin'"), 1)
        query(self.conn, "DROP SERVER twin CASCADE")
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.sync_state s "
                                           "WHERE s.server_oid NOT IN (SELECT oid FROM pg_foreign_server)"), 0)
        query(self.conn, f"""
            CREATE SERVER twin FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url '{MOCK_API}',
                                                                          login_source 'BANNER');
            CREATE USER MAPPING FOR PUBLIC SERVER twin OPTIONS (api_token 'opscom-test-token-0123456789')""")
        self.assertIsInstance(scalar(self.conn, "SELECT campus_sync.enqueue('twin', p) FROM people p "
                                                "WHERE unique_id = 'T1'"), int)
        query(self.conn, "DROP SERVER twin CASCADE")

    def test_a_reload_for_two_servers_drops_only_what_each_ones_memory_has(self):
        reload_people(self.conn, 20, 0)
        self.assertEqual(deliver(self.conn), (20, 0, 0))
        # a server the memory knows nobody of, whose trigger fires first:
        # the first row of the next flush is its
        query(self.conn, f"""
            CREATE SERVER badge FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url '{MOCK_API}',
                                                                           login_source 'BANNER');
            CREATE USER MAPPING FOR PUBLIC SERVER badge OPTIONS (api_token 'opscom-test-token-0123456789');
            CREATE TRIGGER a_people_badge AFTER INSERT OR UPDATE ON people
              FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('badge')""")
        try:
            reload_people(self.conn, 20, 2)
            self.assertEqual(query(self.conn, "SELECT server, count(*) FROM campus_sync.queue "
                                              "WHERE state = 'pending' GROUP BY server ORDER BY server"),
                             [("badge", 20), ("opscom", 2)])
            mock("reset")
            self.assertEqual(deliver(self.conn, "opscom"), (2, 0, 0))
            self.assertEqual(sorted(pushed()), [("P1", "New1"), ("P2", "New2")])
        finally:
            query(self.conn, "DROP SERVER badge CASCADE; DROP TRIGGER a_people_badge ON people")

    def test_the_extension_created_again_in_the_same_session_has_its_memory_found(self):
        conn = create_database("cs_memory_again", PEOPLE, skip_unchanged=True)
        try:
            query(conn, "INSERT INTO people VALUES ('P1', 'Ada', 'Lee', 'ada@campus.edu')")
            self.assertEqual(deliver(conn), (1, 0, 0))
            query(conn, "DROP EXTENSION campus_sync CASCADE")
            install_campus_sync(conn, """
                CREATE TRIGGER people_opscom AFTER INSERT OR UPDATE ON people
                  FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('opscom')""", skip_unchanged=True)
            # the commit's memory check opens the new sync_state, not the dropped one
            query(conn, "UPDATE people SET first_name = 'Ada' || 'x'")
            self.assertEqual(scalar(conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'pending'"), 1)
            mock("reset")
            self.assertEqual(deliver(conn), (1, 0, 0))
            # and a reload of the same body is dropped by it
            query(conn, "BEGIN; TRUNCATE people; "
                        "INSERT INTO people VALUES ('P1', 'Adax', 'Lee', 'ada@campus.edu'); COMMIT")
            self.assertEqual(scalar(conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'pending'"), 0)
            self.assertEqual(deliver(conn), (0, 0, 0))
            self.assertEqual(pushed(), [("P1", "Adax")])
        finally:
            conn.close()

    def test_purge_keeps_the_memory(self):
        self.deliver_one("Ada")
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.purge('0 seconds')"), 1)
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.sync_state"), 1)
        self.assertIsNone(scalar(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p"))

    def test_a_repeatable_read_writer_judges_by_deliveries_after_its_snapshot(self):
        self.deliver_one("Ada")
        writer = psycopg2.connect(self.conn.dsn)
        try:
            cur = writer.cursor()
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT count(*) FROM campus_sync.sync_state")   # the snapshot is taken
            # meanwhile Bea is delivered: the target has Bea
            query(self.conn, "UPDATE people SET first_name = 'Bea'")
            self.assertEqual(deliver(self.conn), (1, 0, 0))
            # the writer, whose snapshot still says Ada, queues Ada: it is not what the target has
            cur.execute("SELECT campus_sync.enqueue('opscom', p) FROM "
                        "(SELECT 'P1'::text AS unique_id, 'Ada'::text AS first_name, 'Lee'::text AS last_name, "
                        "'ada@campus.edu'::text AS email) p")
            self.assertIsInstance(cur.fetchone()[0], int)
            writer.commit()
        finally:
            writer.close()
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        self.assertEqual(pushed()[-1], ("P1", "Ada"))

    def test_a_writer_without_privileges_gets_the_skips_and_cannot_read_or_forget(self):
        query(self.conn, "CREATE ROLE cs_memory_loader; GRANT SELECT, INSERT, UPDATE ON people TO cs_memory_loader")
        self.addCleanup(query, self.conn, "DROP OWNED BY cs_memory_loader; DROP ROLE cs_memory_loader")
        self.deliver_one("Ada")
        query(self.conn, "SET ROLE cs_memory_loader")
        try:
            query(self.conn, "UPDATE people SET first_name = 'Ada'")       # nothing changed
            query(self.conn, "UPDATE people SET first_name = 'Bea'")
            query(self.conn, "UPDATE people SET first_name = 'Ada'")
            query(self.conn, "INSERT INTO people VALUES ('P3', 'Cy', 'Ng', 'cy@campus.edu')")
            with self.assertRaises(psycopg2.errors.InsufficientPrivilege):
                query(self.conn, "SELECT * FROM campus_sync.sync_state")
            with self.assertRaises(psycopg2.errors.InsufficientPrivilege):
                query(self.conn, "SELECT campus_sync.forget('opscom')")
            with self.assertRaises(psycopg2.errors.InsufficientPrivilege):
                query(self.conn, "INSERT INTO campus_sync.sync_state VALUES (0, 'x', '\\\\x00', 'y', now())")
        finally:
            query(self.conn, "RESET ROLE")
        self.assertEqual(waiting(self.conn), 3)
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        self.assertEqual(pushed(), [("P3", "Cy")])

    def test_a_hostile_remote_id_is_remembered_redacted(self):
        mock("behave", path_prefix="/api/OC_TOMA", status=200, count=1,
             body='{"status": "success", "reference_id": "OPSCOM-TEST-TOKEN-0123456789"}')
        query(self.conn, "INSERT INTO people VALUES ('H1', 'Hal', 'Oz', 'hal@campus.edu')")
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        [(rid,)] = query(self.conn, "SELECT remote_id FROM campus_sync.sync_state WHERE person_key = 'H1'")
        self.assertNotIn("opscom-test-token", (rid or "").lower())
        self.assertEqual(rid, scalar(self.conn, "SELECT remote_id FROM campus_sync.queue WHERE person_key = 'H1'"))


class MemoryCrashTest(unittest.TestCase):
    """The memory is WAL-logged and written with the delivery: after a crash
    a reload of everyone sends nothing."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("memory-crash")
        cls.addClassCleanup(cls.cluster.destroy)
        cls.cluster.init()
        cls.cluster.start()
        create_database(DB, PEOPLE, skip_unchanged=True, **cls.cluster.conninfo).close()

    def test_a_crash_keeps_the_memory(self):
        mock("reset")
        conn = self.cluster.connect(DB)
        reload_people(conn, 1000, 0)
        query(conn, "CALL campus_sync.deliver_batches('opscom', 120)")
        self.assertEqual(len(pushes()), 1000)
        conn.close()
        self.cluster.stop("immediate")
        self.cluster.start()
        mock("reset")
        conn = self.cluster.wait_connect(DB)
        self.assertEqual(scalar(conn, "SELECT count(*) FROM campus_sync.sync_state"), 1000)
        reload_people(conn, 1000, 0)
        self.assertEqual(waiting(conn), 0)
        self.assertEqual(deliver(conn), (0, 0, 0))
        self.assertEqual(pushes(), [])
        conn.close()


if __name__ == "__main__":
    unittest.main()
