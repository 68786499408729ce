"""The background worker: what it delivers by itself, when it wakes, what
survives its crashes, restarts, shutdowns and a promotion, and what it shows.

Each class runs clusters of its own (cluster.py) with campus_sync in
shared_preload_libraries; the suites' shared cluster is not preloaded, and
NotPreloadedTest checks the view there.  The remote is the mock API; every
test asserts on what it received (exact requests, bodies, person keys) and
on the queue's states.

Where a test must tell a latch wake from a poll, its cluster polls every
10 minutes: anything delivered within seconds was woken by a commit.
"""
import asyncio
import collections
import hashlib
import hmac
import os
import re
import signal
import statistics
import threading
import time
import unittest

import psycopg2

from cluster import Cluster, process_gone
from helpers import (MOCK_API, OPSCOM_TOKEN, SANITIZED, connect, create_database, install_campus_sync,
                     mock, proc_status_kb, query, scalar, wait_for)

PRELOAD = "shared_preload_libraries = 'campus_sync'"
PUSH_PATH = "/api/OC_TOMA/v1/profiles/push"

PEOPLE_TABLE = """
    CREATE TABLE people (unique_id text PRIMARY KEY, first_name text, last_name text, email text);
"""
PEOPLE_TRIGGER = """
    CREATE TRIGGER people_opscom AFTER INSERT OR UPDATE ON people
      FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('opscom');
"""
PEOPLE = PEOPLE_TABLE + PEOPLE_TRIGGER


# -- what the remote received ---------------------------------------------------

def pushes(since=0):
    """OPS-COM pushes the mock received (answered or not) after seq since."""
    return [r for r in mock("requests", since=since) if r["path"] == PUSH_PATH]


def sent_keys(requests):
    """unique_id -> how many times it was sent."""
    return collections.Counter(r["json"]["unique_id"] for r in requests)


def requests_total():
    """Requests the mock received since its reset (cheaper to poll than
    the records of thousands)."""
    return mock("stats")["requests_total"]


def resent(counts):
    """How many requests repeated a person already sent."""
    return sum(n - 1 for n in counts.values())


def expected_body(unique_id, first, last, email):
    return {"unique_id": unique_id, "login_source": "BANNER", "first_name": first,
            "last_name": last, "email": email, "apiToken": OPSCOM_TOKEN}


# -- what the database shows ------------------------------------------------------

def worker(conn):
    """The campus_sync.worker row, as a dict."""
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM campus_sync.worker")
        rows = cur.fetchall()
        assert len(rows) == 1, f"campus_sync.worker has {len(rows)} rows"
        return dict(zip([d.name for d in cur.description], rows[0]))


def wait_worker(conn, timeout=30, what="the worker", **expected):
    """The worker row once its columns have the values given (e.g. state='idle')."""
    def check():
        row = worker(conn)
        return row if all(row[k] == v for k, v in expected.items()) else None
    try:
        return wait_for(check, timeout, interval=0.05, what=f"{what}: {expected}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last row: {worker(conn)}") from None


def activity_pids(conn):
    """pids pg_stat_activity shows as campus_sync workers."""
    return [r[0] for r in query(conn, "SELECT pid FROM pg_stat_activity "
                                      "WHERE backend_type = 'campus_sync worker'")]


def states(conn):
    return dict(query(conn, "SELECT state, count(*) FROM campus_sync.queue GROUP BY state"))


def wait_delivered(conn, n, timeout):
    """Waits until n items are delivered; fails with the queue's states."""
    try:
        wait_for(lambda: states(conn).get("delivered", 0) >= n, timeout, interval=0.1,
                 what=f"{n} items delivered")
    except AssertionError as e:
        raise AssertionError(f"{e}; queue: {states(conn)}") from None
    return states(conn)


def add_people(conn, n, prefix):
    """n people <prefix>1..n in one statement (the sync trigger queues them)."""
    query(conn, "INSERT INTO people SELECT %s || g, 'First' || g, 'Last' || g, "
                "lower(%s) || g || '@campus.edu' FROM generate_series(1, %s) g", (prefix, prefix, n))
    return {f"{prefix}{i}" for i in range(1, n + 1)}


def error_lines(log):
    return [line for line in log.splitlines() if re.search(r"\b(ERROR|PANIC):", line)]


# -- the worker as a process --------------------------------------------------------

def cpu_ticks(pid):
    """utime + stime of pid, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # fields 14 and 15 of proc(5)


def wait_gone(pid, timeout):
    """Seconds until pid exited (fails after timeout)."""
    started = time.monotonic()
    wait_for(lambda: process_gone(pid), timeout, interval=0.01, what=f"pid {pid} to exit")
    return time.monotonic() - started


# -- a fast remote, for the 100,000 deliveries ---------------------------------------

class FastSink:
    """An OPS-COM stand-in on asyncio that answers every push at once and
    only counts (the mock records every request with its headers: too slow
    and too big for 100,000).  Keep-alive, like the mock."""
    ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 44\r\n\r\n"
              b'{"status": "success", "reference_id": 12345}')
    KEY = re.compile(rb'"unique_id"\s*:\s*"([^"]*)"')

    def __init__(self):
        self.keys = collections.Counter()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self, started):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                key = self.KEY.search(body)
                self.keys[key.group(1).decode() if key else None] += 1
                writer.write(self.ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def received(self):
        return sum(self.keys.values())

    def close(self):
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _shutdown(self):
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ===================================================================================

class WorkerClusterCase(unittest.TestCase):
    """A preloaded cluster of the class's own whose worker serves DB, which
    has campus_sync, the servers opscom and cloudcard (the mock) and a
    people table with an OPS-COM sync trigger."""
    NAME = None
    DB = "cs_worker"
    CONF = ()

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(cls.NAME, [PRELOAD, *cls.CONF])
        cls.addClassCleanup(cls.cluster.destroy)          # runs even if setUpClass fails
        cls.cluster.init()
        cls.cluster.start()
        # The worker's database is made before it serves it (it serves the
        # default, postgres, until the restart): a worker whose database
        # does not exist is not what these classes test.
        create_database(cls.DB, PEOPLE, **cls.cluster.conninfo).close()
        cls.cluster.configure([f"campus_sync.database = '{cls.DB}'"])
        cls.cluster.restart()
        conn = cls.cluster.wait_connect(cls.DB)
        wait_worker(conn, running=True, state="idle")
        conn.close()

    def setUp(self):
        mock("reset")
        if not self.cluster.running():        # a test before failed with it stopped
            self.cluster.start()
        # a connection of each test's own: a crash test kills the last one
        self.conn = self.cluster.wait_connect(self.DB)
        self.addCleanup(self.conn.close)
        query(self.conn, "TRUNCATE people; DELETE FROM campus_sync.queue_items; "
                         "DELETE FROM campus_sync.inbox; DELETE FROM campus_sync.target_health")
        self.log_mark = self.cluster.log_size()

    def worker_pid(self):
        return worker(self.conn)["pid"]

    def set_poll_interval(self, value):
        """ALTER SYSTEM SET campus_sync.poll_interval + reload (RESET with
        None: back to the class's postgresql.conf value)."""
        if value is None:
            query(self.conn, "ALTER SYSTEM RESET campus_sync.poll_interval")
        else:
            query(self.conn, "ALTER SYSTEM SET campus_sync.poll_interval = %s", (value,))
        query(self.conn, "SELECT pg_reload_conf()")

    def reconnect(self, timeout=60):
        """After a crash: a new connection once the server accepts it."""
        self.conn = self.cluster.wait_connect(self.DB, timeout)
        self.addCleanup(self.conn.close)
        return self.conn

    def wait_progressing(self, done, progress, timeout, what, stall=30):
        """Waits for done(); fails at once when the worker is not the same
        process any more (it crashed), or when progress() has not moved
        for stall seconds, with the end of the server log."""
        pid = self.worker_pid()
        deadline = time.monotonic() + timeout
        last, moved = progress(), time.monotonic()
        while not done():
            now = time.monotonic()
            try:
                current = self.worker_pid()
            except psycopg2.Error as e:
                current = f"none ({e})".strip()
            problem = (f"the worker {pid} is gone (now: {current})" if current != pid else
                       f"no progress for {stall} s" if now - moved > stall else
                       f"timed out after {timeout} s" if now > deadline else None)
            if problem:
                self.fail(f"{what}: {problem} at {progress()}; {self.crash_report()}")
            if progress() != last:
                last, moved = progress(), now
            time.sleep(0.2)

    def crash_report(self):
        """The server log's end, once the postmaster has logged a crash
        (it may take a moment after a connection broke)."""
        try:
            wait_for(lambda: "terminated by signal" in self.log(), 5, what="the crash in the log")
        except AssertionError:
            pass
        return "the server log ends with:\n" + self.cluster.log_tail(8)

    def sql_on_new_connection(self, sql):
        """Runs sql on a connection of its own (a clean-up that must not
        depend on self.conn)."""
        conn = self.cluster.wait_connect(self.DB)
        try:
            query(conn, sql)
        finally:
            conn.close()

    def log(self):
        """The cluster's log since this test began."""
        return self.cluster.log_since(self.log_mark)


# ===================================================================================

class WorkerWakeTest(WorkerClusterCase):
    """Commits wake the worker (its latch); its poll is 10 minutes, so
    nothing here is delivered by a poll unless a test lowers it."""
    NAME = "worker-wake"
    CONF = ("campus_sync.poll_interval = '10min'",)

    def settled_cycle(self):
        """last_cycle_at once it stays put for half a second (a reload or a
        commit of the test before may just have woken the worker)."""
        def unchanged():
            before = wait_worker(self.conn, state="idle")["last_cycle_at"]
            time.sleep(0.5)
            return (before,) if worker(self.conn)["last_cycle_at"] == before else None
        return wait_for(unchanged, 10, what="the worker to settle")[0]

    def test_a_committed_trigger_write_is_delivered_without_deliver(self):
        """An INSERT into a table with the sync trigger, committed, reaches the
        remote with the exact body, no deliver() called; the worker counts it."""
        before = worker(self.conn)["delivered"]
        query(self.conn, "INSERT INTO people VALUES ('W1', 'Ada', 'Lovelace', 'ada@campus.edu')")
        wait_for(lambda: states(self.conn).get("delivered") == 1, 10, what="the item delivered")
        sent = pushes()
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent[0]["method"], "POST")
        self.assertEqual(sent[0]["path"], PUSH_PATH)
        self.assertEqual(sent[0]["json"], expected_body("W1", "Ada", "Lovelace", "ada@campus.edu"))
        self.assertEqual(sent[0]["status"], 200)
        wait_worker(self.conn, 5, delivered=before + 1)

    def test_a_paused_server_is_skipped_by_the_worker_and_resume_wakes_it(self):
        """pause(): committed writes wake the worker, which sends nothing to
        the paused server; resume() wakes it, and the last state goes out at
        once (the poll is 10 minutes: only the wake can send it)."""
        query(self.conn, "SELECT campus_sync.pause('opscom', 'test')")
        self.addCleanup(self.sql_on_new_connection, "DELETE FROM campus_sync.paused_servers")
        # one transaction: the worker, woken by its commit, moves both items
        # together and keeps the newer (two commits raced the worker's move:
        # moved apart, both stayed pending; together, one)
        query(self.conn, "BEGIN; INSERT INTO people VALUES ('Z1', 'Ada', 'Lovelace', 'ada@campus.edu'); "
                         "UPDATE people SET first_name = 'Ava' WHERE unique_id = 'Z1'; COMMIT")
        wait_for(lambda: scalar(self.conn, "SELECT count(*) FROM campus_sync.inbox") == 0, 10,
                 what="the worker to move the inbox")
        time.sleep(2)
        self.assertEqual(pushes(), [])
        self.assertEqual(states(self.conn), {"pending": 1})
        query(self.conn, "SELECT campus_sync.resume('opscom')")
        wait_for(lambda: states(self.conn).get("delivered") == 1, 10, what="the item delivered after resume()")
        sent = pushes()
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent[0]["json"], expected_body("Z1", "Ava", "Lovelace", "ada@campus.edu"))

    def test_the_worker_delivers_a_signed_webhook(self):
        """The third service through the worker: a committed write reaches the
        webhook signed with the mapping's signing_secret (the HMAC made in
        the worker's own transaction)."""
        secret = 'hook/Signing"Secret-3e8a'
        query(self.conn, "DROP TABLE IF EXISTS hooked; DROP SERVER IF EXISTS hooks CASCADE")
        query(self.conn, "CREATE SERVER hooks FOREIGN DATA WRAPPER campus_sync "
                         "OPTIONS (service 'webhook', url %s)", (MOCK_API + "/hooks/worker",))
        query(self.conn, "CREATE USER MAPPING FOR PUBLIC SERVER hooks OPTIONS (signing_secret %s)", (secret,))
        query(self.conn, "CREATE TABLE hooked (id int, name text); "
                         "CREATE TRIGGER hooked_sync AFTER INSERT ON hooked "
                         "FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('hooks')")
        self.addCleanup(self.sql_on_new_connection, "DROP TABLE hooked; DROP SERVER hooks CASCADE")
        mock("config", webhook_signing_secret=secret)
        query(self.conn, "INSERT INTO hooked VALUES (1, 'Ada')")
        wait_for(lambda: mock("webhook_deliveries"), 10, what="the webhook delivery")
        [r] = [r for r in mock("requests") if r["path"] == "/hooks/worker"]
        self.assertEqual((r["method"], r["body"], r["status"]), ("POST", '{"id":1,"name":"Ada"}', 200))
        self.assertEqual(mock("webhook_deliveries")[0]["signature"],
                         "sha256=" + hmac.new(secret.encode(), r["body"].encode(), hashlib.sha256).hexdigest())

    def test_a_rolled_back_transaction_sends_nothing_and_does_not_wake_the_worker(self):
        """A rollback neither sends nor wakes: last_cycle_at stays; a commit
        right after (the control) moves it."""
        cycle = self.settled_cycle()
        writer = self.cluster.connect(self.DB, autocommit=False)
        self.addCleanup(writer.close)
        query(writer, "INSERT INTO people VALUES ('R1', 'Rolled', 'Back', 'r1@campus.edu')")
        query(writer, "SELECT campus_sync.enqueue('opscom', p) FROM people p")
        writer.rollback()
        time.sleep(1.5)
        self.assertEqual(pushes(), [])
        self.assertEqual(worker(self.conn)["last_cycle_at"], cycle,
                         "the worker woke for a transaction that rolled back")
        self.assertEqual(states(self.conn), {})
        query(self.conn, "INSERT INTO people VALUES ('C1', 'Com', 'Mitted', 'c1@campus.edu')")
        wait_for(lambda: worker(self.conn)["last_cycle_at"] != cycle, 10, what="a cycle after a commit")
        wait_for(lambda: len(pushes()) == 1, 10, what="the committed item")
        self.assertEqual(pushes()[0]["json"]["unique_id"], "C1")

    def test_an_item_queued_in_an_open_transaction_waits_for_its_commit(self):
        """enqueue() in a transaction still open sends nothing (a second
        later); its COMMIT sends it."""
        writer = self.cluster.connect(self.DB, autocommit=False)
        self.addCleanup(writer.close)
        query(writer, "SELECT campus_sync.enqueue('opscom', p) FROM (SELECT 'E1' AS unique_id, "
                      "'Eve' AS first_name, 'Open' AS last_name, 'e1@campus.edu' AS email) p")
        time.sleep(1.0)
        self.assertEqual(pushes(), [], "sent before its transaction committed")
        writer.commit()
        wait_for(lambda: len(pushes()) == 1, 10, what="the item after COMMIT")
        self.assertEqual(pushes()[0]["json"], expected_body("E1", "Eve", "Open", "e1@campus.edu"))

    def test_retry_failed_wakes_the_worker(self):
        """An item that failed (a 400) is sent again as soon as retry_failed()
        commits, without a poll."""
        mock("behave", path_prefix=PUSH_PATH, status=400, count=1)
        query(self.conn, "INSERT INTO people VALUES ('F1', 'Fail', 'Once', 'f1@campus.edu')")
        wait_for(lambda: states(self.conn).get("failed") == 1, 10, what="the item failed")
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.retry_failed('opscom')"), 1)
        wait_for(lambda: states(self.conn).get("delivered") == 1, 10, what="the item retried and delivered")
        self.assertEqual([r["status"] for r in pushes()], [400, 200])

    def test_fifty_commits_one_by_one_each_wake_the_worker(self):
        """50 single-row commits, each waited for: all arrive within seconds
        though the poll is 10 minutes.  Prints the latency from just before
        COMMIT is issued to the request's arrival at the mock (its clock,
        time.time() on the same machine)."""
        writer = self.cluster.connect(self.DB, autocommit=False)
        self.addCleanup(writer.close)
        latencies = []
        seq = 0
        for i in range(1, 51):
            query(writer, "INSERT INTO people VALUES (%s, 'Lat', 'Ency', 'l@campus.edu')", (f"L{i}",))
            before_commit = time.time()
            writer.commit()
            arrived = wait_for(lambda: pushes(seq), 5, interval=0.002, what=f"the request of commit {i}")
            self.assertEqual([r["json"]["unique_id"] for r in arrived], [f"L{i}"])
            latencies.append(arrived[0]["t"] - before_commit)
            seq = arrived[-1]["seq"]
        latencies.sort()
        print(f"\n    commit to request, 50 commits: median {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {latencies[-1] * 1000:.1f} ms (max of 50; from just before COMMIT was issued)", end=" ")
        wait_delivered(self.conn, 50, 10)

    def test_a_retry_waits_for_the_poll_and_a_reloaded_poll_interval_applies(self):
        """A 503 with Retry-After 1 is not retried within 3 s while the poll is
        10 minutes and nothing wakes the worker.  After ALTER SYSTEM SET
        poll_interval = '200ms' and pg_reload_conf() (no restart), a second
        such 503 is retried within seconds with nothing waking the worker
        (the reload's own wake may have sent the first one)."""
        pid = self.worker_pid()
        try:
            first = self.retry_after_503("P1")
            time.sleep(3)
            self.assertEqual([r["status"] for r in pushes(first)], [], "retried before any poll or wake")
            self.set_poll_interval("200ms")
            wait_for(lambda: states(self.conn).get("delivered") == 1, 5, what="P1's retry after the reload")
            self.assertEqual(scalar(self.conn, "SHOW campus_sync.poll_interval"), "200ms")
            second = self.retry_after_503("P2")
            wait_for(lambda: states(self.conn).get("delivered") == 2, 5, what="P2's retry, polled")
            self.assertEqual([(r["json"]["unique_id"], r["status"]) for r in pushes(second)], [("P2", 200)])
            self.assertEqual(self.worker_pid(), pid)
        finally:
            self.set_poll_interval(None)

    def retry_after_503(self, unique_id):
        """Queues unique_id, which the remote answers once with 503 and
        Retry-After: 1; returns the mock's seq of that answer, once the item
        waits to be retried."""
        mock("behave", path_prefix=PUSH_PATH, status=503, retry_after=1, count=1)
        query(self.conn, "INSERT INTO people VALUES (%s, 'Poll', 'Ed', 'p@campus.edu')", (unique_id,))
        wait_for(lambda: states(self.conn).get("retrying") == 1, 10, what=f"{unique_id} retrying")
        [answer] = [r for r in pushes() if r["json"]["unique_id"] == unique_id]
        self.assertEqual(answer["status"], 503)
        return answer["seq"]


class WorkerVisibilityTest(WorkerClusterCase):
    """What the worker shows: pg_stat_activity, campus_sync.worker,
    campus_sync.status, the log, its errors."""
    NAME = "worker-show"
    CONF = ("campus_sync.poll_interval = '10min'",)

    def test_the_worker_is_in_pg_stat_activity_and_both_views(self):
        """One pg_stat_activity row of backend_type 'campus_sync worker'; its
        pid is the view's and status.worker_pid; idle, it waits on an
        Extension wait event."""
        row = wait_worker(self.conn, running=True, state="idle")
        self.assertEqual(activity_pids(self.conn), [row["pid"]])
        self.assertEqual(row["database"], self.DB)
        self.assertIsNotNone(row["started_at"])
        status = query(self.conn, "SELECT DISTINCT worker_running, worker_pid, worker_last_cycle_at "
                                  "FROM campus_sync.status")
        self.assertEqual(status, [(True, row["pid"], row["last_cycle_at"])])
        waits = query(self.conn, "SELECT wait_event_type, wait_event, datname FROM pg_stat_activity "
                                 "WHERE pid = %s", (row["pid"],))
        # 17+ lets an extension name its waits
        self.assertEqual(waits, [("Extension", "CampusSyncWorkerIdle" if self.conn.server_version >= 170000
                                  else "Extension", self.DB)])

    def test_a_delivering_worker_says_so(self):
        """While a request is in flight: state 'delivering' in the view, query
        'delivering' in pg_stat_activity; idle again after it."""
        before = worker(self.conn)["delivered"]
        mock("behave", path_prefix=PUSH_PATH, delay_ms=2000, count=1)
        query(self.conn, "INSERT INTO people VALUES ('Q1', 'Que', 'Ry', 'q1@campus.edu')")
        pid = wait_worker(self.conn, 5, state="delivering")["pid"]
        self.assertEqual(query(self.conn, "SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)),
                         [("active", "delivering")])
        wait_worker(self.conn, 10, state="idle", delivered=before + 1)
        self.assertEqual(states(self.conn), {"delivered": 1})

    def test_last_cycle_at_and_delivered_advance_with_a_delivery(self):
        """A delivery moves last_cycle_at forward and adds to delivered."""
        before = wait_worker(self.conn, state="idle")
        add_people(self.conn, 3, "V")
        after = wait_worker(self.conn, 10, delivered=before["delivered"] + 3, state="idle")
        self.assertGreater(after["last_cycle_at"], before["last_cycle_at"] or after["started_at"])
        self.assertEqual(after["pid"], before["pid"])

    def test_a_cycle_error_is_shown_logged_and_survived(self):
        """A cycle that raises (campus_sync.target_health lost a column the
        engine reads) sets last_error and logs the ERROR; the worker keeps
        its pid and delivers once the column is back."""
        self.set_poll_interval("1s")   # the worker waits a poll after an error
        broken = False
        try:
            pid = wait_worker(self.conn, state="idle")["pid"]
            query(self.conn, "ALTER TABLE campus_sync.target_health RENAME COLUMN probe_interval_s TO broken_s")
            broken = True
            since = scalar(self.conn, "SELECT now()")
            query(self.conn, "INSERT INTO people VALUES ('X1', 'Err', 'Or', 'x1@campus.edu')")
            def failed_cycle():
                row = worker(self.conn)
                return row if row["last_error_at"] and row["last_error_at"] >= since else None
            row = wait_for(failed_cycle, 10, what="last_error")
            self.assertIn("probe_interval_s", row["last_error"])
            wait_for(lambda: any("probe_interval_s" in line for line in error_lines(self.log())), 5,
                     what="the ERROR in the log")
            self.assertEqual(pushes(), [])
            time.sleep(1.5)                                   # a poll later: still there
            self.assertEqual(activity_pids(self.conn), [pid])
            query(self.conn, "ALTER TABLE campus_sync.target_health RENAME COLUMN broken_s TO probe_interval_s")
            broken = False
            wait_for(lambda: states(self.conn).get("delivered") == 1, 10, what="delivery after the fix")
            self.assertEqual([r["json"]["unique_id"] for r in pushes()], ["X1"])
            self.assertEqual(worker(self.conn)["pid"], pid)
        finally:
            if broken:
                query(self.conn, "ALTER TABLE campus_sync.target_health RENAME COLUMN broken_s TO probe_interval_s")
            self.set_poll_interval(None)

    def test_a_database_the_worker_does_not_serve_shows_no_worker(self):
        """In another database of the same cluster: running false, pid NULL."""
        other = create_database("cs_worker_other", **self.cluster.conninfo)
        try:
            row = worker(other)
            self.assertEqual((row["running"], row["pid"]), (False, None))
            self.assertEqual(query(other, "SELECT DISTINCT worker_running, worker_pid FROM campus_sync.status"),
                             [(False, None)])
        finally:
            other.close()

    def test_the_idle_worker_takes_almost_no_cpu(self):
        """With the default poll interval (1 s, set explicitly), 5 s idle cost
        the worker at most 5 clock ticks of CPU."""
        self.set_poll_interval("1s")
        try:
            time.sleep(1.5)            # the reload woke it; let it settle into 1 s polls
            pid = wait_worker(self.conn, state="idle")["pid"]
            before, cycle = cpu_ticks(pid), worker(self.conn)["last_cycle_at"]
            time.sleep(5)
            used = cpu_ticks(pid) - before
            print(f"\n    idle worker, 5 s at poll_interval 1s: {used} ticks "
                  f"(of {os.sysconf('SC_CLK_TCK')}/s); last_cycle_at {cycle} -> "
                  f"{worker(self.conn)['last_cycle_at']}", end=" ")
            self.assertLessEqual(used, 5)
        finally:
            self.set_poll_interval(None)


class WorkerLoadTest(WorkerClusterCase):
    """The worker beside other deliverers, and under a long run."""
    NAME = "worker-load"
    CONF = ("campus_sync.poll_interval = '200ms'",)

    def test_deliver_and_deliver_batches_beside_the_worker_never_send_twice(self):
        """2,000 people queued in 20 commits while a client alternates
        deliver() and CALL deliver_batches(): exactly 2,000 requests, no
        person twice, and both the worker and the client delivered some."""
        mock("behave", path_prefix=PUSH_PATH, delay_ms=10)
        started = worker(self.conn)["delivered"]
        stop = threading.Event()
        client = {"deliver": 0, "calls": 0, "errors": []}

        def loop():
            conn = self.cluster.connect(self.DB)
            try:
                while not stop.is_set():
                    try:
                        client["deliver"] += scalar(conn, "SELECT coalesce(sum(delivered), 0) "
                                                          "FROM campus_sync.deliver(max_seconds => 1)")
                        query(conn, "CALL campus_sync.deliver_batches(max_seconds => 1)")
                        client["calls"] += 2
                    except psycopg2.Error as e:
                        client["errors"].append(e)
                    stop.wait(0.02)          # a pause, as a scheduled job would take
            finally:
                conn.close()
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            for batch in range(20):
                add_people(self.conn, 100, f"D{batch}_")
                time.sleep(0.05)
            wait_delivered(self.conn, 2000, 60)
        finally:
            stop.set()
            thread.join(30)
        counts = sent_keys(pushes())
        by_worker = worker(self.conn)["delivered"] - started
        print(f"\n    worker delivered {by_worker}, the client's deliver() {client['deliver']} "
              f"(deliver_batches() the rest) in {client['calls']} calls", end=" ")
        self.assertEqual(client["errors"], [])
        self.assertEqual(len(counts), 2000)
        self.assertEqual(sum(counts.values()), 2000, f"sent twice: {[k for k, n in counts.items() if n > 1][:10]}")
        self.assertEqual(states(self.conn), {"delivered": 2000})
        self.assertGreater(by_worker, 0, "the worker delivered nothing: no concurrency was tested")
        self.assertLess(by_worker, 2000, "the client delivered nothing: no concurrency was tested")

    def test_vacuum_of_the_queue_beside_the_worker_is_harmless(self):
        """10,000 people queued; VACUUM and ANALYZE of campus_sync.queue_items
        every half second while the worker delivers them (what autovacuum
        does to a busy queue; VACUUM summarizes the BRIN index's ranges):
        the same worker delivers every item, once."""
        people = add_people(self.conn, 10000, "Y")
        pid = self.worker_pid()
        maintenance = self.cluster.connect(self.DB)
        self.addCleanup(maintenance.close)
        rounds = 0
        while True:
            try:
                if states(self.conn).get("delivered", 0) == 10000:
                    break
                query(maintenance, "VACUUM campus_sync.queue_items")
                query(maintenance, "ANALYZE campus_sync.queue_items")
                rounds += 1
                alive = activity_pids(self.conn) == [pid]
            except psycopg2.Error:       # the server reinitialised: a crash
                alive = False
            if not alive:
                self.fail(f"the worker is gone after {rounds} VACUUMs; {self.crash_report()}")
            self.assertLess(rounds, 240, f"not delivered in 2 minutes: {states(self.conn)}")
            time.sleep(0.5)
        print(f"\n    {rounds} VACUUMs and ANALYZEs while the worker delivered", end=" ")
        counts = sent_keys(pushes())
        self.assertEqual(set(counts), people)
        self.assertEqual(resent(counts), 0)
        self.assertEqual(states(self.conn), {"delivered": 10000})

    def test_memory_stays_bounded_over_100000_deliveries(self):
        """100,000 deliveries to a fast remote: the worker's private memory
        (RssAnon) grows less than 32 MB (not under the sanitizers); prints
        VmRSS and RssAnon before and after, and the rate."""
        sink = FastSink()
        self.addCleanup(sink.close)
        query(self.conn, "CREATE SERVER sink FOREIGN DATA WRAPPER campus_sync OPTIONS "
                         "(service 'opscom', url %s, login_source 'BANNER', concurrency '32'); "
                         "CREATE USER MAPPING FOR PUBLIC SERVER sink OPTIONS (api_token %s)",
              (sink.url, OPSCOM_TOKEN))
        self.addCleanup(self.sql_on_new_connection, "DROP SERVER sink CASCADE")
        enqueue = ("SELECT count(campus_sync.enqueue('sink', p)) FROM (SELECT %s || g AS unique_id, "
                   "'First' AS first_name, 'Last' AS last_name FROM generate_series(1, %s) g) p")
        query(self.conn, enqueue, ("warm", 2000))            # caches, plans, connections
        self.wait_progressing(lambda: sink.received >= 2000, lambda: sink.received, 60, what="the warm-up")
        pid = wait_worker(self.conn, state="idle")["pid"]
        before = {f: proc_status_kb(pid, f) for f in ("VmRSS", "RssAnon")}
        started = time.monotonic()
        query(self.conn, enqueue, ("M", 100000))
        queued = time.monotonic()
        self.wait_progressing(lambda: sink.received >= 102000, lambda: sink.received, 300,
                              what="100,000 deliveries")
        took = time.monotonic() - queued
        after = {f: proc_status_kb(pid, f) for f in ("VmRSS", "RssAnon")}
        growth_mb = (after["RssAnon"] - before["RssAnon"]) / 1024
        print(f"\n    100,000 delivered in {took:.1f} s ({100000 / took:.0f}/s; queued in {queued - started:.1f} s); "
              f"VmRSS {before['VmRSS'] // 1024} -> {after['VmRSS'] // 1024} MB, "
              f"RssAnon {before['RssAnon'] // 1024} -> {after['RssAnon'] // 1024} MB", end=" ")
        wait_for(lambda: scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'delivered' "
                                           "AND server = 'sink'") == 102000, 30, what="outcomes committed")
        self.assertEqual(len(sink.keys), 102000, "a person sent twice")
        self.assertEqual(worker(self.conn)["pid"], pid)
        if not SANITIZED:
            self.assertLess(growth_mb, 32)


# ===================================================================================

class WorkerCrashTest(WorkerClusterCase):
    """Kills, signals, restarts and shutdowns around the worker."""
    NAME = "worker-crash"
    CONF = ("campus_sync.poll_interval = '500ms'",)

    def setUp(self):
        super().setUp()
        # what a test that ended in a crash could not undo itself
        if scalar(self.conn, "SELECT 1 FROM pg_foreign_server, unnest(srvoptions) o "
                             "WHERE srvname = 'opscom' AND o LIKE 'concurrency=%'"):
            query(self.conn, "ALTER SERVER opscom OPTIONS (DROP concurrency)")
        query(self.conn, "DROP SERVER IF EXISTS opscom2 CASCADE")

    def wait_new_worker(self, old_pid, timeout=30):
        """The pid of a worker other than old_pid, once it runs (reconnecting
        when the server reinitialised)."""
        def new_pid():
            try:
                pid = worker(self.conn)["pid"]
            except psycopg2.Error:
                self.reconnect()
                return None
            return pid if pid not in (None, old_pid) else None
        return wait_for(new_pid, timeout, interval=0.1, what="a new worker")

    def test_kill_9_of_the_worker_then_of_a_client_loses_nothing_and_resends_at_most_what_was_in_flight(self):
        """3,000 items at 50 ms a request, concurrency 16: the worker killed
        (-9) a third of the way, a client backend holding 50 uncommitted
        items killed two thirds of the way.  Every committed item is
        delivered, none failed, none of the uncommitted ones sent, and at
        most 16 people were sent twice per kill."""
        concurrency = 16
        query(self.conn, f"ALTER SERVER opscom OPTIONS (ADD concurrency '{concurrency}')")
        mock("behave", path_prefix=PUSH_PATH, delay_ms=50)
        committed = add_people(self.conn, 3000, "K")

        wait_for(lambda: requests_total() >= 1000, 60, interval=0.1, what="1,000 requests")
        first = self.worker_pid()
        os.kill(first, signal.SIGKILL)                   # the postmaster reinitialises
        at_first_kill = requests_total()
        second = self.wait_new_worker(first)

        client = self.cluster.connect(self.DB, autocommit=False)
        self.addCleanup(client.close)
        uncommitted = add_people(client, 50, "U")
        client_pid = scalar(client, "SELECT pg_backend_pid()")
        wait_for(lambda: requests_total() >= 2000, 60, interval=0.1, what="2,000 requests")
        os.kill(client_pid, signal.SIGKILL)              # the worker is ended with the rest
        at_second_kill = requests_total()
        self.wait_new_worker(second)

        final = wait_delivered(self.conn, 3000, 120)
        counts = sent_keys(pushes())
        print(f"\n    kills after {at_first_kill} and {at_second_kill} requests; "
              f"{resent(counts)} requests repeated a person", end=" ")
        self.assertEqual(final, {"delivered": 3000})
        self.assertEqual(set(counts) & uncommitted, set(), "sent from a transaction that never committed")
        self.assertEqual(set(counts), committed)
        self.assertLessEqual(resent(counts), 2 * concurrency)

    def test_a_restart_while_the_remote_is_down_loses_nothing(self):
        """200 items pending while the remote is down, pg_ctl restart -m fast,
        the remote back: all 200 delivered, once each, none failed."""
        mock("down")
        people = add_people(self.conn, 200, "O")
        wait_for(lambda: scalar(self.conn, "SELECT NOT up FROM campus_sync.target_health "
                                           "WHERE server = 'opscom'"), 20, what="the target marked down")
        self.cluster.restart("fast")
        self.reconnect()
        mock("up")
        final = wait_delivered(self.conn, 200, 90)
        self.assertEqual(final, {"delivered": 200})
        counts = sent_keys(r for r in pushes() if r["status"] == 200)
        self.assertEqual(set(counts), people)
        self.assertEqual(resent(counts), 0)

    def test_a_fast_shutdown_with_300_requests_in_flight_is_fast_and_loses_nothing(self):
        """300 requests in flight to a remote that answers after 20 s (two
        servers at concurrency 150): pg_ctl stop -m fast returns within 5 s;
        started again with the remote answering at once, all 300 are
        delivered."""
        query(self.conn, "ALTER SERVER opscom OPTIONS (ADD concurrency '150'); "
                         "CREATE SERVER opscom2 FOREIGN DATA WRAPPER campus_sync OPTIONS "
                         "(service 'opscom', url %s, login_source 'BANNER', concurrency '150'); "
                         "CREATE USER MAPPING FOR PUBLIC SERVER opscom2 OPTIONS (api_token %s)",
              (os.environ["MOCK_API"], OPSCOM_TOKEN))
        mock("behave", path_prefix=PUSH_PATH, delay_ms=20000)
        query(self.conn, "SELECT count(campus_sync.enqueue(s, p)) FROM (VALUES ('opscom', 'A'), ('opscom2', 'B')) "
                         "v(s, prefix), LATERAL (SELECT prefix || g AS unique_id, 'F' AS first_name, "
                         "'L' AS last_name, 'f@campus.edu' AS email FROM generate_series(1, 150) g) p")
        wait_for(lambda: mock("stats")["in_flight"] >= 300, 30, interval=0.1, what="300 requests in flight")
        abandoned = max(r["seq"] for r in pushes())
        self.conn.close()
        took = self.cluster.stop("fast")
        print(f"\n    pg_ctl stop -m fast with 300 requests in flight: {took:.2f} s", end=" ")
        mock("clear_behaviours")
        self.cluster.start()
        self.reconnect()
        final = wait_delivered(self.conn, 300, 90)
        self.assertLess(took, 5)
        self.assertEqual(final, {"delivered": 300})
        # sent again after the start (the 300 abandoned ones are answered,
        # to no one, 20 s after they arrived)
        again = sent_keys(r for r in pushes(abandoned) if r["status"] == 200)
        self.assertEqual(set(again), {f"{p}{i}" for p in "AB" for i in range(1, 151)})

    def test_sigterm_ends_the_worker_within_a_second_and_it_comes_back(self):
        """SIGTERM to the worker alone, with 5 requests in flight to a slow
        remote: it exits within 1 s; the postmaster starts a new one (within
        15 s), which delivers the 5."""
        mock("behave", path_prefix=PUSH_PATH, delay_ms=20000, count=5)
        people = add_people(self.conn, 5, "T")
        wait_for(lambda: mock("stats")["in_flight"] >= 5, 10, what="5 requests in flight")
        pid = self.worker_pid()
        os.kill(pid, signal.SIGTERM)
        took = wait_gone(pid, 10)
        again = time.monotonic()
        new = self.wait_new_worker(pid, 30)
        came_back = time.monotonic() - again
        print(f"\n    SIGTERM: exited in {took:.2f} s; new worker (pid {new}) after {came_back:.1f} s", end=" ")
        self.assertLess(took, 1.0)
        self.assertLess(came_back, 15, "not restarted by the postmaster within ~10 s")
        final = wait_delivered(self.conn, 5, 30)
        self.assertEqual(final, {"delivered": 5})
        self.assertEqual(set(sent_keys(r for r in pushes() if r["status"] == 200)), people)

    def test_kill_9_of_the_worker_loses_nothing(self):
        """The worker killed (-9) with requests in flight: a new worker (after
        the postmaster's reinitialisation) delivers everything queued before
        and after."""
        mock("behave", path_prefix=PUSH_PATH, delay_ms=100)
        people = add_people(self.conn, 50, "N")
        wait_for(lambda: len(pushes()) >= 10, 20, what="10 requests")
        pid = self.worker_pid()
        os.kill(pid, signal.SIGKILL)
        self.wait_new_worker(pid)
        people |= add_people(self.conn, 10, "Z")
        final = wait_delivered(self.conn, 60, 60)
        self.assertEqual(final, {"delivered": 60})
        self.assertEqual(set(sent_keys(r for r in pushes() if r["status"] == 200)), people)

    def test_postmaster_death_ends_the_worker_within_a_second(self):
        """kill -9 of the postmaster, 5 requests in flight to a slow remote:
        the worker exits within 1 s.  Started again, the cluster delivers
        them."""
        mock("behave", path_prefix=PUSH_PATH, delay_ms=20000, count=5)
        people = add_people(self.conn, 5, "M")
        wait_for(lambda: mock("stats")["in_flight"] >= 5, 10, what="5 requests in flight")
        pid = self.worker_pid()
        children = self.cluster.children()
        self.conn.close()
        os.kill(self.cluster.postmaster_pid(), signal.SIGKILL)
        try:
            took = wait_gone(pid, 30)         # how long, even when it is too long
            print(f"\n    postmaster killed: the worker exited in {took:.2f} s", end=" ")
        finally:                # whatever happened, the next tests need the cluster
            stuck = self.cluster.start_after_postmaster_death(children)
            self.reconnect()
        self.assertEqual(stuck, [], "server processes still there 20 s after the postmaster died")
        self.assertLess(took, 1.0)
        final = wait_delivered(self.conn, 5, 30)
        self.assertEqual(final, {"delivered": 5})
        self.assertEqual(set(sent_keys(r for r in pushes() if r["status"] == 200)), people)


# ===================================================================================

class WorkerStandbyTest(unittest.TestCase):
    """A standby's worker stays idle, and delivers once promoted."""
    DB = "cs_worker"

    @classmethod
    def setUpClass(cls):
        conf = [PRELOAD, "campus_sync.poll_interval = '500ms'", "wal_level = replica", "max_wal_senders = 5"]
        cls.primary = Cluster("worker-primary", conf)
        cls.addClassCleanup(cls.primary.destroy)
        cls.standby = Cluster("worker-standby")
        cls.addClassCleanup(cls.standby.destroy)
        cls.primary.init()
        cls.primary.start()
        create_database(cls.DB, PEOPLE, **cls.primary.conninfo).close()   # as WorkerClusterCase does
        cls.primary.configure([f"campus_sync.database = '{cls.DB}'"])
        cls.primary.restart()
        # the copy's postgresql.conf has the primary's lines, the preload too
        cls.standby.init_from_base_backup(cls.primary)
        cls.standby.start()

    def setUp(self):
        mock("reset")

    def test_a_standby_stays_idle_and_delivers_when_promoted(self):
        """The standby's worker shows state 'standby'; 100 items queued on the
        primary with the remote down; the primary stopped (-m immediate),
        the standby promoted, the remote back: the same worker (no restart)
        delivers the 100 once each; the standby's log has no ERROR."""
        standby = self.standby.wait_connect(self.DB)
        self.addCleanup(standby.close)
        pid = wait_worker(standby, running=True, state="standby")["pid"]
        self.assertEqual(activity_pids(standby), [pid])
        primary = self.primary.wait_connect(self.DB)
        mock("down")
        people = add_people(primary, 100, "S")
        lsn = scalar(primary, "SELECT pg_current_wal_lsn()")
        primary.close()
        wait_for(lambda: scalar(standby, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)), 30,
                 what="the standby to replay the 100 items")
        time.sleep(1)                                        # a poll or two on the standby
        self.assertEqual(worker(standby)["state"], "standby")
        self.primary.stop("immediate")
        self.standby.promote()
        mock("up")
        promoted = time.monotonic()
        final = wait_delivered(standby, 100, 90)
        print(f"\n    promoted: 100 delivered {time.monotonic() - promoted:.1f} s later (the old primary "
              f"had marked the remote down: its probe schedule applies)", end=" ")
        self.assertEqual(final, {"delivered": 100})
        counts = sent_keys(r for r in pushes() if r["status"] == 200)
        self.assertEqual(set(counts), people)
        self.assertEqual(resent(counts), 0)
        row = worker(standby)
        self.assertEqual((row["pid"], row["running"]), (pid, True), "the worker was restarted")
        log = self.standby.log_since()
        self.assertEqual(error_lines(log), [])
        self.assertEqual(log.count("hot standby; idle until it is promoted"), 1, "logged once, not per poll")


# ===================================================================================

class WorkerBinaryUpgradeTest(unittest.TestCase):
    """pg_upgrade starts both servers in binary-upgrade mode, preloads and
    all: no worker may run then."""
    DB = "cs_worker"

    @classmethod
    def setUpClass(cls):
        if os.path.exists(os.path.join(os.environ["RUN_DIR"], "server-bin", "postgres")):
            raise unittest.SkipTest("pg_upgrade starts its servers without the sanitizers' wrapper")
        conf = [PRELOAD, f"campus_sync.database = '{cls.DB}'", "campus_sync.poll_interval = '200ms'"]
        cls.old = Cluster("worker-upgrade-old", conf)
        cls.addClassCleanup(cls.old.destroy)
        cls.new = Cluster("worker-upgrade-new", conf)
        cls.addClassCleanup(cls.new.destroy)
        cls.old.init()
        cls.old.start()
        create_database(cls.DB, PEOPLE, **cls.old.conninfo).close()

    def test_pg_upgrade_starts_no_worker_and_the_upgraded_cluster_delivers(self):
        """5 items pending (queued while the remote was down), the old
        cluster stopped, the remote up, pg_upgrade: nothing is sent while it
        runs and its servers' logs show no worker; the new cluster, started,
        delivers the 5 once each."""
        mock("reset")
        conn = self.old.wait_connect(self.DB)
        mock("down")
        people = add_people(conn, 5, "G")
        conn.close()
        self.old.stop("fast")
        mock("up")
        self.new.init()
        self.new.upgrade_from(self.old)
        self.assertEqual(requests_total(), 0, "sent during pg_upgrade")
        logs = self.new.server_logs_of_upgrade()
        self.assertIn("ready to accept connections", logs, "not the upgrade's server logs")
        self.assertNotIn("campus_sync worker", logs)
        self.new.start()
        conn = self.new.wait_connect(self.DB)
        self.addCleanup(conn.close)
        final = wait_delivered(conn, 5, 60)
        self.assertEqual(final, {"delivered": 5})
        counts = sent_keys(r for r in pushes() if r["status"] == 200)
        self.assertEqual(set(counts), people)
        self.assertEqual(resent(counts), 0)


# ===================================================================================

class WorkerExtensionLifecycleTest(unittest.TestCase):
    """The worker of a database (campus_sync.database's default, postgres)
    where campus_sync is created after it started, dropped, created again.
    The tests run in name order: a_ starts without the extension."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("worker-late", [PRELOAD, "campus_sync.poll_interval = '200ms'"])
        cls.addClassCleanup(cls.cluster.destroy)
        cls.cluster.init()
        cls.cluster.start()
        cls.conn = cls.cluster.wait_connect("postgres")
        cls.addClassCleanup(cls.conn.close)
        query(cls.conn, PEOPLE_TABLE)

    def setUp(self):
        mock("reset")
        query(self.conn, "TRUNCATE people")

    def worker_activity(self):
        """(pid, wait_event_type) of the worker in pg_stat_activity, or None."""
        rows = query(self.conn, "SELECT pid, wait_event_type FROM pg_stat_activity "
                                "WHERE backend_type = 'campus_sync worker'")
        self.assertLessEqual(len(rows), 1, rows)
        return rows[0] if rows else None

    def assert_delivers(self, unique_id):
        query(self.conn, "INSERT INTO people VALUES (%s, 'Late', 'Comer', 'late@campus.edu')", (unique_id,))
        wait_for(lambda: len(pushes()) == 1, 10, what=f"{unique_id} delivered")
        self.assertEqual(pushes()[0]["json"], expected_body(unique_id, "Late", "Comer", "late@campus.edu"))

    def test_a_waits_once_for_create_extension_then_delivers_without_restart(self):
        """Without the extension, the worker logs 'waiting for CREATE
        EXTENSION' once over several polls; CREATE EXTENSION makes it log
        'delivering' and deliver, same pid."""
        pid = wait_for(self.worker_activity, 30, what="the worker in pg_stat_activity")[0]
        time.sleep(1.5)                                     # 7 polls of 200 ms
        self.assertEqual(self.cluster.log_since().count("waiting for CREATE EXTENSION"), 1,
                         self.cluster.log_tail())
        mark = self.cluster.log_size()
        install_campus_sync(self.conn, PEOPLE_TRIGGER)
        wait_for(lambda: "delivering" in self.cluster.log_since(mark), 10, what="'delivering' in the log")
        self.assert_delivers("LATE1")
        self.assertEqual(worker(self.conn)["pid"], pid)
        self.assertEqual(worker(self.conn)["database"], "postgres")
        self.assertEqual(error_lines(self.cluster.log_since()), [])

    def test_b_drop_extension_leaves_the_worker_idle_and_create_again_works(self):
        """DROP EXTENSION while the worker runs: same pid, waiting idle (no
        ERROR over several polls); CREATE EXTENSION again: it delivers."""
        if not scalar(self.conn, "SELECT 1 FROM pg_extension WHERE extname = 'campus_sync'"):
            install_campus_sync(self.conn, PEOPLE_TRIGGER)
        pid = wait_worker(self.conn, running=True, state="idle")["pid"]
        mark = self.cluster.log_size()
        query(self.conn, "DROP EXTENSION campus_sync CASCADE")   # the servers and the trigger too
        time.sleep(1.5)                                     # 7 polls without the extension
        wait_for(lambda: self.worker_activity() == (pid, "Extension"), 5,
                 what=f"the worker {pid} waiting idle; pg_stat_activity: {self.worker_activity()}")
        self.assertEqual(error_lines(self.cluster.log_since(mark)), [])
        install_campus_sync(self.conn, PEOPLE_TRIGGER)
        self.assert_delivers("AGAIN1")
        self.assertEqual(worker(self.conn)["pid"], pid)
        self.assertEqual(error_lines(self.cluster.log_since(mark)), [])


# ===================================================================================

class NotPreloadedTest(unittest.TestCase):
    """The suites' shared cluster does not preload campus_sync: no worker."""
    DB = "cs_it_worker_off"

    def test_without_preload_the_views_show_no_worker(self):
        """campus_sync.worker: running false, pid NULL; campus_sync.status:
        worker_running false, worker_pid and worker_last_cycle_at NULL."""
        conn = create_database(self.DB)
        try:
            row = worker(conn)
            self.assertEqual((row["running"], row["pid"], row["last_cycle_at"]), (False, None, None))
            self.assertEqual(query(conn, "SELECT DISTINCT worker_running, worker_pid, worker_last_cycle_at "
                                         "FROM campus_sync.status"), [(False, None, None)])
            self.assertEqual(activity_pids(conn), [])
        finally:
            conn.close()
            admin = connect("postgres")
            query(admin, f"DROP DATABASE {self.DB} WITH (FORCE)")
            admin.close()


if __name__ == "__main__":
    unittest.main()
