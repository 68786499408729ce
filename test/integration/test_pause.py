"""pause(server) / resume(server): a paused target queues but sends nothing
(deliver() skips it and says so, the push functions refuse it), the status
view shows it, and resume() sends what waited, coalesced.  The worker's
side is in test_worker.py (WorkerWakeTest).
"""
import unittest

import psycopg2
import psycopg2.errors

from helpers import MOCK_API, create_database, mock, query, scalar

DB = "cs_pause"

PEOPLE = """
    CREATE TABLE people (unique_id text PRIMARY KEY, first_name text, last_name text, email text);
    CREATE TRIGGER people_opscom AFTER INSERT OR UPDATE ON people
      FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('opscom');
"""
PUSH_PATH = "/api/OC_TOMA/v1/profiles/push"


def pushes():
    return [r for r in mock("requests") if r["path"] == PUSH_PATH]


class PauseTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(DB, PEOPLE)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()

    def setUp(self):
        mock("reset")
        query(self.conn, "TRUNCATE people; DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox; "
                         "DELETE FROM campus_sync.target_health; DELETE FROM campus_sync.paused_servers")
        del self.conn.notices[:]

    def test_a_paused_server_queues_sends_nothing_and_says_so_then_resume_sends_the_last_state(self):
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.pause('opscom', 'vendor window')"), True)
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.pause('opscom', 'vendor window 2')"), False)
        [(paused_at, reason)] = query(self.conn, "SELECT paused_at, paused_reason FROM campus_sync.status "
                                                 "WHERE server = 'opscom'")
        self.assertIsNotNone(paused_at)
        self.assertEqual(reason, "vendor window 2")
        self.assertEqual(query(self.conn, "SELECT paused_at, paused_reason FROM campus_sync.status "
                                          "WHERE server = 'cloudcard'"), [(None, None)])

        query(self.conn, "INSERT INTO people VALUES ('P1', 'Ada', 'Lee', 'ada@campus.edu')")
        query(self.conn, "UPDATE people SET first_name = 'Ava' WHERE unique_id = 'P1'")
        self.assertEqual(query(self.conn, "SELECT server, delivered, retried, failed FROM campus_sync.deliver('opscom')"),
                         [("opscom", 0, 0, 0)])
        self.assertEqual(pushes(), [])
        notices = [n for n in self.conn.notices if "paused" in n]
        self.assertEqual(len(notices), 1, self.conn.notices)
        self.assertIn('server "opscom" is paused: nothing was sent to it', notices[0])
        self.assertEqual(scalar(self.conn, "SELECT pending FROM campus_sync.status WHERE server = 'opscom'"), 2)

        # an ad hoc push is refused, with who paused it and why
        with self.assertRaises(psycopg2.errors.ObjectNotInPrerequisiteState) as cm:
            query(self.conn, "SELECT campus_sync.opscom_push(p) FROM people p")
        self.assertEqual(cm.exception.diag.message_primary, 'server "opscom" is paused')
        self.assertRegex(cm.exception.diag.message_detail, r"^Paused since .* by postgres: vendor window 2\.$")
        self.assertIn("campus_sync.resume('opscom')", cm.exception.diag.message_hint)
        # and so are the look-ups: the vendor is sent nothing at all
        with self.assertRaises(psycopg2.errors.ObjectNotInPrerequisiteState):
            query(self.conn, "SELECT * FROM campus_sync.opscom_user_types()")
        query(self.conn, "SELECT campus_sync.pause('cloudcard')")
        try:
            for sql in ("SELECT campus_sync.cloudcard_person('C1')",
                        "SELECT campus_sync.cloudcard_login_link(c) FROM (SELECT 'C1'::text AS identifier) c",
                        "SELECT * FROM (SELECT 'C1'::text AS identifier) c, LATERAL campus_sync.cloudcard_diff(c) d"):
                with self.subTest(sql=sql), self.assertRaises(psycopg2.errors.ObjectNotInPrerequisiteState) as cm:
                    query(self.conn, sql)
                self.assertEqual(cm.exception.diag.message_primary, 'server "cloudcard" is paused')
        finally:
            query(self.conn, "SELECT campus_sync.resume('cloudcard')")
        self.assertEqual(mock("requests"), [])

        # another server is not paused
        self.assertEqual(query(self.conn, "SELECT r.ok FROM (SELECT 'C1'::text AS identifier) c, "
                                          "LATERAL campus_sync.cloudcard_upsert(c) r"), [(True,)])

        self.assertEqual(scalar(self.conn, "SELECT campus_sync.resume('opscom')"), True)
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.resume('opscom')"), False)
        self.assertEqual(query(self.conn, "SELECT server, delivered, retried, failed FROM campus_sync.deliver('opscom')"),
                         [("opscom", 1, 0, 0)])
        [p] = pushes()
        self.assertEqual((p["json"]["unique_id"], p["json"]["first_name"]), ("P1", "Ava"))
        self.assertEqual(query(self.conn, "SELECT paused_at FROM campus_sync.status WHERE server = 'opscom'"), [(None,)])

    def test_deliver_for_every_server_skips_only_the_paused_one(self):
        query(self.conn, "SELECT campus_sync.pause('cloudcard')")
        query(self.conn, "INSERT INTO people VALUES ('P2', 'Bo', 'Ng', 'bo@campus.edu')")
        query(self.conn, "SELECT campus_sync.enqueue('cloudcard', c) FROM (SELECT 'C2'::text AS identifier) c")
        rows = dict((r[0], r[1]) for r in query(self.conn, "SELECT server, delivered FROM campus_sync.deliver()"))
        self.assertEqual((rows["opscom"], rows["cloudcard"]), (1, 0))
        self.assertEqual([r["path"] for r in mock("requests")], [PUSH_PATH])

    def test_pause_names_a_campus_sync_server_and_a_dropped_server_forgets_its_pause(self):
        with self.assertRaises(psycopg2.errors.UndefinedObject) as cm:
            query(self.conn, "SELECT campus_sync.pause('nosuch')")
        self.assertEqual(cm.exception.diag.message_primary, 'campus_sync server "nosuch" does not exist')
        query(self.conn, "CREATE SERVER short_lived FOREIGN DATA WRAPPER campus_sync "
                         "OPTIONS (service 'webhook', url %s)", (MOCK_API + "/hooks",))
        query(self.conn, "SELECT campus_sync.pause('short_lived', 'gone soon')")
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.paused_servers"), 1)
        query(self.conn, "DROP SERVER short_lived")
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.paused_servers"), 0)


if __name__ == "__main__":
    unittest.main()
