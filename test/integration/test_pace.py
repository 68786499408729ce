"""max_rate and a 429's Retry-After: the pace of requests to a target.

Only lower bounds on time are asserted (no two requests closer than the
rate allows, less a margin for the clock): a slow machine cannot break
them, only a pace that is not kept can.  Preloaded, the pace is shared by
every backend (PacePreloadedTest, a cluster of its own); not preloaded it
is per backend.
"""
import os
import threading
import unittest

from cluster import Cluster
from helpers import MOCK_API, OPSCOM_TOKEN, create_database, mock, query, scalar

DB = "cs_pace"
PUSH_PATH = "/api/OC_TOMA/v1/profiles/push"
PEOPLE = """
    CREATE TABLE people (unique_id text PRIMARY KEY, first_name text, last_name text, email text);
"""
# The mock stamps a request when its thread gets it: under load (the
# sanitizer run) one stamp may come late and the next on time.  A pace not
# kept shows gaps of about 1 ms, far below 1/rate - MARGIN_S.
MARGIN_S = 0.04


def push_times():
    return sorted(r["t"] for r in mock("requests") if r["path"] == PUSH_PATH)


def gaps(times):
    return [b - a for a, b in zip(times, times[1:])]


def cpu_seconds(pid):
    """The user and system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill_people(conn, n, prefix="P"):
    query(conn, "TRUNCATE people")
    query(conn, "INSERT INTO people SELECT %s || g, 'First' || g, 'Last', 'p' || g || '@campus.edu' "
                "FROM generate_series(1, %s) g", (prefix, n))


class PaceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(DB, PEOPLE)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()

    def setUp(self):
        mock("reset")
        query(self.conn, "DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox; "
                         "DELETE FROM campus_sync.target_health")

    def set_option(self, name, value):
        query(self.conn, f"ALTER SERVER opscom OPTIONS (ADD {name} %s)", (value,))
        self.addCleanup(query, self.conn, f"ALTER SERVER opscom OPTIONS (DROP {name})")

    def test_deliver_keeps_max_rate(self):
        self.set_option("max_rate", "10")
        fill_people(self.conn, 11)
        query(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p")
        self.assertEqual(query(self.conn, "SELECT delivered FROM campus_sync.deliver('opscom')"), [(11,)])
        times = push_times()
        self.assertEqual(len(times), 11)
        self.assertGreaterEqual(min(gaps(times)), 0.1 - MARGIN_S, gaps(times))
        self.assertGreaterEqual(times[-1] - times[0], 1.0 - MARGIN_S)

    def test_deliver_sleeps_while_the_pace_holds_it_back(self):
        """Regression: with nothing in flight, deliver() waiting for the pace
        spun on the CPU (1.96 s of CPU for 11 items at max_rate 5)."""
        self.set_option("max_rate", "5")
        self.set_option("concurrency", "1")
        fill_people(self.conn, 11)
        query(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p")
        pid = scalar(self.conn, "SELECT pg_backend_pid()")
        before = cpu_seconds(pid)
        self.assertEqual(query(self.conn, "SELECT delivered FROM campus_sync.deliver('opscom')"), [(11,)])
        self.assertGreaterEqual(max(push_times()) - min(push_times()), 2.0 - MARGIN_S)
        self.assertLess(cpu_seconds(pid) - before, 0.5)

    def test_pushes_keep_max_rate(self):
        self.set_option("max_rate", "10")
        fill_people(self.conn, 6)
        self.assertEqual(query(self.conn, "SELECT count(*) FILTER (WHERE r.ok) FROM people p, "
                                          "LATERAL campus_sync.opscom_push(p) r"), [(6,)])
        times = push_times()
        self.assertGreaterEqual(min(gaps(times)), 0.1 - MARGIN_S, gaps(times))

    def test_a_429_with_retry_after_holds_back_the_whole_target(self):
        mock("behave", path_prefix=PUSH_PATH, status=429, retry_after=2, count=1,
             body='{"ErrorCode": 429, "ErrorMessage": "slow down"}')
        fill_people(self.conn, 5)
        query(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM people p")
        self.set_option("concurrency", "1")
        for _ in range(3):
            query(self.conn, "SELECT * FROM campus_sync.deliver('opscom', max_seconds => 5)")
            if scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'delivered'") == 5:
                break
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'delivered'"), 5)
        times = push_times()
        self.assertEqual(len(times), 6)      # one of them twice: after its 429
        # nothing went to the target for the 2 s after the 429, not even another person
        self.assertGreaterEqual(times[1] - times[0], 2.0 - MARGIN_S, times)

    def test_max_rate_is_a_server_option_only(self):
        with self.assertRaises(Exception) as cm:
            query(self.conn, "SELECT campus_sync.opscom_payload(p, options => '{\"max_rate\": 1000}') FROM people p "
                             "RIGHT JOIN (SELECT 1) x ON true LIMIT 1")
        self.assertIn('option "max_rate" cannot be given per call', str(cm.exception))
        with self.assertRaises(Exception) as cm:
            query(self.conn, "ALTER SERVER opscom OPTIONS (ADD max_rate '0')")
        self.assertIn('invalid server option "max_rate": "0" is not an integer between 1 and 100000',
                      str(cm.exception))


class PacePreloadedTest(unittest.TestCase):
    """Preloaded: two backends pushing at once share the server's rate."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("pace", ["shared_preload_libraries = 'campus_sync'"])
        cls.addClassCleanup(cls.cluster.destroy)
        cls.cluster.init()
        cls.cluster.start()
        create_database(DB, PEOPLE, **cls.cluster.conninfo).close()

    def test_two_backends_share_the_rate(self):
        mock("reset")
        setup = self.cluster.connect(DB)
        query(setup, "ALTER SERVER opscom OPTIONS (ADD max_rate '10')")
        fill_people(setup, 12)
        setup.close()
        results = []

        def push(parity):
            conn = self.cluster.connect(DB)
            try:
                results.append(scalar(conn, "SELECT count(*) FILTER (WHERE r.ok) FROM people p, "
                                            "LATERAL campus_sync.opscom_push(p) r "
                                            "WHERE right(p.unique_id, 1)::int %% 2 = %s", (parity,)))
            finally:
                conn.close()
        threads = [threading.Thread(target=push, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(sum(results), 12)
        times = push_times()
        self.assertEqual(len(times), 12)
        self.assertGreaterEqual(min(gaps(times)), 0.1 - MARGIN_S, gaps(times))
        self.assertGreaterEqual(times[-1] - times[0], 1.1 - MARGIN_S)


if __name__ == "__main__":
    unittest.main()
