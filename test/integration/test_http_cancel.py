"""Query cancel and backend termination interrupt a hanging request promptly,
and the backend's HTTP client is usable afterwards."""
import threading
import time
import unittest

import psycopg2
import psycopg2.errors

from helpers import connect, create_database, mock, scalar

DB = "cs_it_cancel"


class CancelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        create_database(DB, """
            CREATE TABLE people (unique_id text, first_name text, last_name text, email text);
            INSERT INTO people VALUES ('C1', 'Cat', 'Cancel', 'c1@campus.edu');
        """).close()

    def setUp(self):
        mock("reset")

    def hanging_push(self, conn):
        return conn.cursor().execute(
            "SELECT campus_sync.opscom_push(p) FROM people p")

    def test_pg_cancel_backend_stops_a_hanging_request(self):
        mock("behave", delay_ms=10000, count=1)
        victim = connect(DB)
        pid = victim.get_backend_pid()
        admin = connect(DB)
        outcome = {}

        def run():
            started = time.monotonic()
            try:
                self.hanging_push(victim)
                outcome["error"] = None
            except psycopg2.Error as e:
                outcome["error"] = e
            outcome["seconds"] = time.monotonic() - started

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)                       # the request is now in flight
        cancelled_at = time.monotonic()
        self.assertTrue(scalar(admin, "SELECT pg_cancel_backend(%s)", (pid,)))
        t.join(timeout=5)
        self.assertFalse(t.is_alive(), "the cancelled call did not return")
        self.assertIsInstance(outcome["error"], psycopg2.errors.QueryCanceled)
        self.assertLess(time.monotonic() - cancelled_at, 1.0)
        self.assertTrue(scalar(victim, "SELECT (campus_sync.opscom_push(p)).ok FROM people p"))
        victim.close()
        admin.close()

    def test_wait_event_is_reported_while_waiting(self):
        mock("behave", delay_ms=1500, count=1)
        victim = connect(DB)
        pid = victim.get_backend_pid()
        admin = connect(DB)
        t = threading.Thread(target=lambda: self.hanging_push(victim))
        t.start()
        time.sleep(0.5)
        row = scalar(admin, "SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity WHERE pid = %s",
                     (pid,))
        t.join(timeout=5)
        # 17+ lets an extension name its waits
        self.assertEqual(row, "Extension/CampusSyncRemote" if admin.server_version >= 170000
                         else "Extension/Extension")
        victim.close()
        admin.close()

    def test_pg_terminate_backend_ends_it(self):
        mock("behave", delay_ms=10000, count=1)
        victim = connect(DB)
        pid = victim.get_backend_pid()
        admin = connect(DB)
        errors = []
        t = threading.Thread(target=lambda: self._expect_error(victim, errors))
        t.start()
        time.sleep(0.3)
        started = time.monotonic()
        self.assertTrue(scalar(admin, "SELECT pg_terminate_backend(%s)", (pid,)))
        t.join(timeout=5)
        self.assertFalse(t.is_alive())
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertEqual(len(errors), 1)
        # the server is fine: a new session pushes
        other = connect(DB)
        self.assertTrue(scalar(other, "SELECT (campus_sync.opscom_push(p)).ok FROM people p"))
        other.close()
        admin.close()

    def _expect_error(self, conn, errors):
        try:
            self.hanging_push(conn)
        except psycopg2.Error as e:
            errors.append(e)


if __name__ == "__main__":
    unittest.main()
