"""What an interrupted or crashed delivery may resend, and what it may never
send; and how much memory delivery takes.

- deliver_batches() commits outcomes as they come: a backend killed mid-run
  resends at most what was in flight (concurrency), where deliver(), one
  transaction, resends everything it had sent.
- Nothing is sent before the commit that queued it is on disk, even when
  the writer commits with synchronous_commit = off.
- deliver()'s memory is bounded by what is in flight, not by the number or
  size of the items it sends.
- A long-lived deliverer (the worker) survives the queue's indexes changing
  under it (ANALYZE, ALTER INDEX) while it uses them.
"""
import collections
import json
import os
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

from helpers import SANITIZED, connect, create_database, mock, query, scalar, wait_for

DB = "cs_it_durability"

PEOPLE = """
    CREATE TABLE people (unique_id text PRIMARY KEY, first_name text, last_name text, email text);
    CREATE TRIGGER people_opscom AFTER INSERT OR UPDATE ON people
      FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('opscom');
"""


def reconnect():
    try:
        return connect(DB)
    except psycopg2.OperationalError:
        return None


def pushes():
    return [r for r in mock("requests") if r["path"].endswith("/profiles/push")]


class Sink(BaseHTTPRequestHandler):
    """A CloudCard stand-in that counts and forgets: 1 GB of bodies must not
    be kept by the test itself."""
    received = 0
    bytes = 0
    lock = threading.Lock()

    def do_PUT(self):
        n = int(self.headers.get("Content-Length", 0))
        while n > 0:
            n -= len(self.rfile.read(min(n, 1 << 20)))
        with Sink.lock:
            Sink.received += 1
            Sink.bytes += int(self.headers.get("Content-Length", 0))
        body = b'{"id": 1}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def memory_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class DurabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(DB, PEOPLE)

    def setUp(self):
        mock("reset")
        self.conn = DurabilityTest.conn
        query(self.conn, "TRUNCATE people; DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox; "
                         "DELETE FROM campus_sync.target_health")

    def add_people(self, n, prefix):
        query(self.conn, "INSERT INTO people SELECT %s || g, 'First' || g, 'Last' || g, "
                         "'p' || g || '@campus.edu' FROM generate_series(1, %s) g", (prefix, n))

    def test_a_killed_deliver_batches_resends_at_most_what_was_in_flight(self):
        query(self.conn, "ALTER SERVER opscom OPTIONS (ADD concurrency '8')")
        try:
            self.add_people(200, "K")
            mock("behave", path_prefix="/api/OC_TOMA", delay_ms=50)
            runner = connect(DB)
            pid = scalar(runner, "SELECT pg_backend_pid()")
            call = threading.Thread(target=lambda: self._call_ignoring_crash(runner), daemon=True)
            call.start()
            wait_for(lambda: len(pushes()) >= 100, 30, what="100 requests")
            os.kill(pid, 9)                      # the postmaster reinitialises
            call.join(30)
            DurabilityTest.conn = self.conn = wait_for(reconnect, 60, what="the server after the kill")
            sent_before = len(pushes())
            mock("clear_behaviours")
            query(self.conn, "CALL campus_sync.deliver_batches(max_seconds => 30)")
            counts = collections.Counter(json.loads(r["body"])["unique_id"] for r in pushes())
            resent = sum(n - 1 for n in counts.values())
            print(f"\n    killed after {sent_before} requests; {resent} people sent twice", end=" ")
            self.assertEqual(len(counts), 200)
            self.assertLessEqual(resent, 8)
            self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'delivered'"), 200)
        finally:
            mock("clear_behaviours")
            query(self.conn, "ALTER SERVER opscom OPTIONS (DROP concurrency)")

    @staticmethod
    def _call_ignoring_crash(conn):
        try:
            query(conn, "CALL campus_sync.deliver_batches(max_seconds => 60)")
        except psycopg2.Error:
            pass

    def test_deliver_batches_commits_as_it_goes(self):
        self.add_people(40, "B")
        mock("behave", path_prefix="/api/OC_TOMA", delay_ms=100)
        try:
            runner = connect(DB)
            call = threading.Thread(target=lambda: query(runner, "CALL campus_sync.deliver_batches()"),
                                    daemon=True)
            call.start()
            # another session sees outcomes while the call still runs
            wait_for(lambda: scalar(self.conn, "SELECT count(*) FROM campus_sync.queue "
                                               "WHERE state = 'delivered'") >= 8, 20, what="committed outcomes")
            self.assertTrue(call.is_alive())
            call.join(60)
            self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'delivered'"), 40)
            self.assertEqual(len(pushes()), 40)
        finally:
            mock("clear_behaviours")

    def test_an_index_changed_during_a_delivery_does_not_crash_it(self):
        """Regression: the queue's index maintenance kept BRIN's cached state
        (which points into the index's relcache entry) across uses, and opened
        the BRIN index only at the first insert of a use.  An invalidation
        taken in between (ANALYZE or ALTER INDEX committed by another session)
        freed the entry it pointed into: the next insert crashed the backend
        (seen: the worker, after 40 s of a 100,000-item load with autovacuum;
        here made certain by holding the deliverer on a lock in between)."""
        self.add_people(10, "X")
        deliverer, blocker, other = connect(DB), connect(DB), connect(DB)
        # the deliverer's backend caches BRIN state in its first insert
        self.assertEqual(query(deliverer, "SELECT delivered FROM campus_sync.deliver('opscom')"), [(10,)])
        query(self.conn, "UPDATE people SET first_name = first_name || 'x'")
        # hold the next deliver() after it opened the queue, before it inserts
        query(blocker, "BEGIN; LOCK campus_sync.target_health IN ACCESS EXCLUSIVE MODE")
        result = {}

        def deliver():
            try:
                result["rows"] = query(deliverer, "SELECT delivered FROM campus_sync.deliver('opscom')")
            except psycopg2.Error as err:
                result["error"] = str(err)
        call = threading.Thread(target=deliver, daemon=True)
        call.start()
        wait_for(lambda: scalar(other, "SELECT count(*) FROM pg_locks WHERE NOT granted "
                                       "AND relation = 'campus_sync.target_health'::regclass"),
                 10, what="the deliverer waiting")
        self.add_people(5, "Y")                  # reltuples changes: ANALYZE invalidates
        query(other, "ANALYZE campus_sync.queue_items")
        query(other, "SET lock_timeout = '1s'")
        try:                                     # the old code did not hold the index: this went through
            query(other, "ALTER INDEX campus_sync.queue_items_id SET (pages_per_range = 64)")
            query(other, "ALTER INDEX campus_sync.queue_items_id RESET (pages_per_range)")
        except psycopg2.errors.LockNotAvailable:
            pass
        query(blocker, "ROLLBACK")
        call.join(30)
        self.assertEqual(result, {"rows": [(15,)]})
        self.assertEqual(scalar(deliverer, "SELECT 1"), 1)

    def test_nothing_is_sent_before_an_asynchronous_commit_is_on_disk(self):
        query(self.conn, "ALTER SYSTEM SET wal_writer_delay = '10s'")
        query(self.conn, "SELECT pg_reload_conf()")
        try:
            query(self.conn, "CHECKPOINT")
            mock("behave", path_prefix="/api/OC_TOMA", delay_ms=20)
            deliverer = connect(DB)
            writer = connect(DB)
            query(writer, "SET synchronous_commit = off")
            query(writer, "INSERT INTO people SELECT 'A' || g, 'F', 'L', 'a@campus.edu' "
                          "FROM generate_series(1, 300) g")
            pid = scalar(deliverer, "SELECT pg_backend_pid()")
            t = threading.Thread(target=lambda: self._deliver_ignoring_crash(deliverer), daemon=True)
            t.start()
            wait_for(lambda: len(pushes()) >= 20, 20, what="the first requests")
            os.kill(pid, 9)                      # before deliver()'s own commit
            t.join(30)
            DurabilityTest.conn = self.conn = wait_for(reconnect, 60, what="the server after the kill")
            sent = {json.loads(r["body"])["unique_id"] for r in pushes()}
            stored = {r[0] for r in query(self.conn, "SELECT unique_id FROM people")}
            print(f"\n    {len(sent)} people sent before the kill; {len(sent - stored)} of them lost by the crash",
                  end=" ")
            self.assertGreater(len(sent), 0)
            self.assertEqual(sent - stored, set(), "the remote got people the database does not have")
        finally:
            mock("clear_behaviours")
            query(self.conn, "ALTER SYSTEM RESET wal_writer_delay")
            query(self.conn, "SELECT pg_reload_conf()")

    @staticmethod
    def _deliver_ignoring_crash(conn):
        try:
            query(conn, "SELECT * FROM campus_sync.deliver(max_seconds => 60)")
        except psycopg2.Error:
            pass

    def test_deliver_memory_is_bounded_by_what_is_in_flight(self):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        query(self.conn, f"""
            CREATE SERVER sink FOREIGN DATA WRAPPER campus_sync
              OPTIONS (service 'cloudcard', url '{url}', concurrency '8');
            CREATE USER MAPPING FOR PUBLIC SERVER sink OPTIONS (auth_token 'sink-token');
            -- 1,000 people with a 1 MB custom field each (hex: little to compress)
            SELECT campus_sync.enqueue('sink', p) FROM (
              SELECT 'M' || g AS identifier,
                     jsonb_build_object('Notes', (SELECT string_agg(md5(g::text || ':' || i), '')
                                                  FROM generate_series(1, 32768) i)) AS custom_fields
              FROM generate_series(1, 1000) g) p;""")
        try:
            runner = connect(DB)
            pid = scalar(runner, "SELECT pg_backend_pid()")
            query(runner, "SELECT 1 FROM campus_sync.deliver('sink', max_items => 1)")  # warm up
            base = memory_kb(pid, "RssAnon")
            peak = [base]
            done = threading.Event()

            def sample():
                while not done.is_set():
                    peak[0] = max(peak[0], memory_kb(pid, "RssAnon"))
                    time.sleep(0.01)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            delivered = scalar(runner, "SELECT delivered FROM campus_sync.deliver('sink', max_seconds => 600)")
            done.set()
            sampler.join()
            hwm = memory_kb(pid, "VmHWM")
            growth_mb = (peak[0] - base) / 1024
            print(f"\n    {delivered} x 1 MB delivered; private memory peak +{growth_mb:.0f} MB "
                  f"(VmHWM {hwm // 1024} MB, shared buffers included)", end=" ")
            self.assertEqual(delivered, 999)
            self.assertEqual(Sink.received, 1000)
            # concurrency 8 x 1 MB, a few copies each (payload, body, curl's)
            if not SANITIZED:
                self.assertLess(growth_mb, 8 * 1 * 8)
        finally:
            server.shutdown()
            query(self.conn, "DROP SERVER sink CASCADE")


if __name__ == "__main__":
    unittest.main()
