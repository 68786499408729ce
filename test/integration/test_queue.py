"""The queue under concurrency, time and failure: what pg_regress cannot show.

Every test asserts on what the mock API received (bodies, order, timing,
connections in flight) and on the queue's states.
"""
import json
import os
import random
import subprocess
import threading
import time
import unittest

import psycopg2
import psycopg2.errors

from helpers import connect, create_database, mock, query, scalar, wait_for

DB = "cs_it_queue"

PEOPLE_TABLE = """
    CREATE TABLE people (unique_id text PRIMARY KEY, first_name text, last_name text,
                         email text, version int NOT NULL DEFAULT 0);
    CREATE TRIGGER people_opscom AFTER INSERT OR UPDATE ON people
      FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('opscom');
"""


def last_bodies_by_person():
    """unique_id -> the body the mock received last for it (without apiToken)."""
    last = {}
    for r in mock("requests"):
        body = r.get("json")
        if isinstance(body, dict) and "unique_id" in body and r.get("status") == 200:
            body = dict(body)
            body.pop("apiToken", None)
            last[body["unique_id"]] = body
    return last


def opscom_requests():
    return [r for r in mock("requests") if r["path"].endswith("/profiles/push")]


class Deliverer(threading.Thread):
    """Calls deliver() again and again, as pg_cron or an ETL loop would."""

    def __init__(self, pause=0.2, max_seconds=2):
        super().__init__(daemon=True)
        self.conn = connect(DB)
        self.pause = pause
        self.max_seconds = max_seconds
        self.stop = threading.Event()
        self.errors = []
        self.delivered = 0

    def run(self):
        while not self.stop.is_set():
            try:
                rows = query(self.conn, "SELECT coalesce(sum(delivered), 0) FROM campus_sync.deliver(max_seconds => %s)",
                             (self.max_seconds,))
                self.delivered += int(rows[0][0])
            except psycopg2.Error as e:
                self.errors.append(e)
            self.stop.wait(self.pause)
        self.conn.close()

    def finish(self):
        self.stop.set()
        self.join(timeout=60)


class QueueTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(DB, PEOPLE_TABLE)

    def setUp(self):
        mock("reset")
        query(self.conn, "TRUNCATE people; DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox; "
                         "DELETE FROM campus_sync.target_health; "
                         "ALTER SERVER opscom OPTIONS (SET url %s)", (os.environ["MOCK_API"],))
        for option in ("concurrency", "max_attempts"):
            try:
                query(self.conn, f"ALTER SERVER opscom OPTIONS (DROP {option})")
            except psycopg2.Error:
                pass

    def add_people(self, n, prefix="P"):
        query(self.conn, "INSERT INTO people (unique_id, first_name, last_name, email) "
                         "SELECT %s || g, 'First', 'Last', %s || g || '@campus.edu' "
                         "FROM generate_series(1, %s) g", (prefix, prefix.lower(), n))

    def drain(self, timeout=60):
        """deliver() until nothing is waiting."""
        def done():
            query(self.conn, "SELECT * FROM campus_sync.deliver(max_seconds => 5)")
            return scalar(self.conn, "SELECT count(*) FROM campus_sync.queue_items "
                                     "WHERE state IN ('pending', 'retrying')") == 0
        wait_for(done, timeout, interval=0.1, what="the queue to drain")

    def assert_mock_has_committed_rows(self):
        """For every person, the last body received equals the committed row's."""
        last = last_bodies_by_person()
        rows = query(self.conn, "SELECT unique_id, campus_sync.opscom_payload(p)::text FROM people p")
        self.assertTrue(rows)
        for unique_id, payload in rows:
            self.assertIn(unique_id, last, f"nothing received for {unique_id}")
            self.assertEqual(last[unique_id], json.loads(payload), f"stale body for {unique_id}")

    # -- coalescing and order --------------------------------------------

    def test_twenty_quick_updates_send_the_final_state_in_fewer_requests(self):
        self.add_people(1)
        deliverer = Deliverer(pause=0.05)
        deliverer.start()
        for i in range(1, 21):
            query(self.conn, "UPDATE people SET last_name = %s, version = %s WHERE unique_id = 'P1'",
                  (f"Last-{i}", i))
        deliverer.finish()
        self.drain()
        self.assertEqual(deliverer.errors, [])
        requests = opscom_requests()
        self.assertLess(len(requests), 20)
        self.assertEqual(requests[-1]["json"]["last_name"], "Last-20")
        self.assert_mock_has_committed_rows()

    def test_eight_writers_on_two_hundred_people_end_in_the_committed_state(self):
        self.add_people(200)
        stop = time.monotonic() + 20
        errors = []

        def writer(seed):
            rnd = random.Random(seed)
            conn = connect(DB, autocommit=False)
            try:
                while time.monotonic() < stop:
                    ids = sorted(rnd.sample(range(1, 201), rnd.randint(1, 3)))
                    with conn.cursor() as cur:
                        for i in ids:
                            cur.execute("UPDATE people SET first_name = %s, version = version + 1 "
                                        "WHERE unique_id = %s", (f"F{seed}-{rnd.randint(0, 10**6)}", f"P{i}"))
                    conn.commit()
            except Exception as e:          # pragma: no cover - reported below
                errors.append(e)
            finally:
                conn.close()

        deliverer = Deliverer(pause=0.1)
        deliverer.start()
        writers = [threading.Thread(target=writer, args=(s,)) for s in range(8)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        deliverer.finish()
        self.assertEqual(errors, [])
        self.assertEqual(deliverer.errors, [])
        updates = scalar(self.conn, "SELECT sum(version) FROM people")
        self.assertGreater(updates, 1000, "the writers did too little to prove anything")
        self.drain()
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue_items "
                                           "WHERE state NOT IN ('delivered')"), 0)
        self.assert_mock_has_committed_rows()
        # per person, never two requests at once: each request of a person
        # started after the previous one was answered
        by_person = {}
        for r in opscom_requests():
            by_person.setdefault(r["json"]["unique_id"], []).append(r)
        for person, reqs in by_person.items():
            for before, after in zip(reqs, reqs[1:]):
                self.assertGreaterEqual(after["t"], before["t_done"] - 0.001,
                                        f"two requests of {person} overlapped")

    def test_a_deliverer_never_blocks_a_writer_and_newer_states_wait_their_turn(self):
        self.add_people(1)
        self.drain()
        mock("reset")
        mock("behave", delay_ms=2000, count=1)
        query(self.conn, "UPDATE people SET last_name = 'B' WHERE unique_id = 'P1'")
        d = connect(DB)
        t = threading.Thread(target=lambda: query(d, "SELECT * FROM campus_sync.deliver()"))
        t.start()
        wait_for(lambda: scalar(self.conn, "SELECT count(*) FROM campus_sync.queue "
                                           "WHERE state = 'in_flight'") == 1, 5, what="the item in flight")
        # the item being sent is locked by the deliverer: writers do not wait for it
        for name in ("C", "D"):
            started = time.monotonic()
            query(self.conn, "UPDATE people SET last_name = %s WHERE unique_id = 'P1'", (name,))
            self.assertLess(time.monotonic() - started, 0.5)
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'in_flight'"), 1)
        self.assertEqual(scalar(self.conn, "SELECT in_flight FROM campus_sync.status WHERE server = 'opscom'"), 1)
        # a second deliverer must not send P1's newer state while B is in flight
        self.assertEqual(scalar(self.conn, "SELECT sum(delivered) FROM campus_sync.deliver(max_seconds => 1)"), 0)
        t.join(timeout=10)
        d.close()
        self.drain()
        # D superseded C: one request for both
        self.assertEqual([r["json"]["last_name"] for r in opscom_requests()], ["B", "D"])
        self.assertEqual(query(self.conn, "SELECT payload::jsonb->>'last_name', state FROM campus_sync.queue_items "
                                          "WHERE person_key = 'P1' ORDER BY id"),
                         [("Last", "delivered"), ("B", "delivered"), ("D", "delivered")])

    # -- the engine ------------------------------------------------------

    def test_at_most_concurrency_requests_in_flight(self):
        query(self.conn, "ALTER SERVER opscom OPTIONS (ADD concurrency '4')")
        self.add_people(40)
        mock("behave", delay_ms=200)
        started = time.monotonic()
        self.drain()
        seconds = time.monotonic() - started
        self.assertEqual(mock("stats")["max_in_flight"], 4)
        self.assertEqual(len(opscom_requests()), 40)
        # 40 requests of 200 ms, 4 at a time: about 2 s, not 8 s
        self.assertLess(seconds, 5)

    def test_two_deliverers_never_send_an_item_twice(self):
        self.add_people(201)
        # one item now: the rest moves from the inbox into the queue, committed
        self.assertEqual(scalar(self.conn, "SELECT sum(delivered) FROM campus_sync.deliver(max_items => 1)"), 1)
        mock("reset")
        mock("behave", delay_ms=50)
        barrier = threading.Barrier(2)
        results = []

        def deliver():
            conn = connect(DB)
            barrier.wait()
            results.append(scalar(conn, "SELECT sum(delivered) FROM campus_sync.deliver(max_seconds => 30)"))
            conn.close()

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(sum(results), 200)
        self.assertTrue(all(r > 0 for r in results), f"one deliverer did all the work: {results}")
        people = [r["json"]["unique_id"] for r in opscom_requests()]
        self.assertEqual(len(people), 200)
        self.assertEqual(len(set(people)), 200, "an item was sent twice")

    def test_retry_after_is_honoured(self):
        self.add_people(1)
        mock("behave", path_prefix="/api/OC_TOMA", status=503, retry_after="2", count=1)
        deliverer = Deliverer(pause=0.1)
        deliverer.start()
        wait_for(lambda: scalar(self.conn, "SELECT state FROM campus_sync.queue_items") == "delivered",
                 15, what="delivery after the 503")
        deliverer.finish()
        first, second = opscom_requests()[:2]
        self.assertEqual(first["status"], 503)
        self.assertEqual(second["status"], 200)
        self.assertGreaterEqual(second["t"] - first["t_done"], 2.0)
        self.assertLess(second["t"] - first["t_done"], 4.0)

    def test_a_long_outage_fails_nothing_and_delivery_resumes_within_35_s(self):
        self.add_people(1000, prefix="O")
        mock("down")
        deliverer = Deliverer(pause=1.0, max_seconds=5)
        deliverer.start()
        time.sleep(60)
        self.assertEqual(scalar(self.conn, "SELECT up FROM campus_sync.status WHERE server = 'opscom'"), False)
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue_items WHERE state = 'failed'"), 0)
        came_back = time.monotonic()
        mock("up")
        wait_for(lambda: scalar(self.conn, "SELECT count(*) FROM campus_sync.queue_items "
                                           "WHERE state = 'delivered'") == 1000,
                 40, interval=0.5, what="all 1,000 delivered")
        resumed_in = time.monotonic() - came_back
        deliverer.finish()
        self.assertEqual(deliverer.errors, [])
        self.assertLessEqual(resumed_in, 35)
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue_items WHERE state = 'failed'"), 0)
        # during the outage attempts did not pile up: at most the two that
        # counted before the target was marked down, then one for delivery
        self.assertLessEqual(scalar(self.conn, "SELECT max(attempts) FROM campus_sync.queue_items"), 3)
        self.assertEqual(scalar(self.conn, "SELECT up FROM campus_sync.status WHERE server = 'opscom'"), True)
        print(f"\n    1,000 items delivered {resumed_in:.1f} s after a 60 s outage ended", end=" ")

    def test_progress_is_reported_during_a_long_deliver(self):
        self.add_people(150)
        mock("behave", delay_ms=300)
        query(self.conn, "ALTER SERVER opscom OPTIONS (ADD concurrency '4')")
        notices = []
        conn = connect(DB)
        conn.notices = notices
        query(conn, "SELECT * FROM campus_sync.deliver(max_seconds => 7)")
        progress = [n for n in notices if "campus_sync: delivered" in n]
        self.assertGreaterEqual(len(progress), 1, notices)
        self.assertRegex(progress[0], r"delivered \d+, retried 0, failed 0 in 5 s \(\d+ per second\)")
        conn.close()

    # -- durability ------------------------------------------------------

    def test_committed_items_survive_a_crash(self):
        self.add_people(50, prefix="K")
        query(self.conn, "CHECKPOINT")
        self.add_people(25, prefix="L")          # only in the WAL when the server dies
        self.conn.close()
        subprocess.run(["runuser", "-u", "postgres", "--", os.environ["PG_BIN"] + "/pg_ctl", "-D",
                        os.environ["PGDATA_DIR"], "-m", "immediate", "-w", "-l",
                        os.environ["RUN_DIR"] + "/postgres.log", "restart"],
                       check=True, stdout=subprocess.DEVNULL, cwd="/")  # postgres may not read the cwd
        QueueTest.conn = self.conn = wait_for(self._reconnect, 30, what="the server after the crash")
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'pending'"), 75)
        self.drain()
        self.assertEqual(len(opscom_requests()), 75)

    @staticmethod
    def _reconnect():
        try:
            return connect(DB)
        except psycopg2.OperationalError:
            return None


if __name__ == "__main__":
    unittest.main()
