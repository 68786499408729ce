#!/usr/bin/env python3
"""campus_sync benchmarks (run by bench/run.sh, which starts everything).

Every figure is a ratio to a baseline measured in the same run, variants
interleaved round by round, medians reported: the machines are shared and
noisy, and absolute numbers move with them.

  1. calibration: wrk against the same nginx remote (what the remote can do)
     and curl_floor, libcurl with nothing else to do (what a libcurl
     deliverer could do at best)
  2. delivery: deliver() and deliver_batches() draining the queue, 20 ms
     remote at concurrency 32 (bound 1,600/s) and a zero-latency remote;
     nothing may be lost
  3. the background worker (it serves database bench_worker, a copy of
     bench): its delivery rate against deliver() and deliver_batches() in
     bench, the same items, interleaved; and its commit-to-request latency
     and end to end: one UPDATE of 100,000 people delivered by the worker
     at 20 ms, against wrk's time for as many requests
  4. sync_trigger: single-row UPDATE rate (pgbench) and a 100,000-row UPDATE,
     against no trigger and a hand-written PL/pgSQL outbox trigger
  5. the delivered-state memory: a nightly reload of 10,000 people with 100
     changed (TRUNCATE and INSERT of everyone, then deliver()), against the
     first full load of the same people
  6. memory across 1,000,000 deliveries: the private memory (RssAnon) of
     the deliver() backend and of the worker, before, at its peak and after
  7. instructions (callgrind): what each trigger adds to a single-row
     UPDATE commit and to a row of a 100,000-row UPDATE, free of the noise
"""
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import date

import psycopg2

QUICK = "--quick" in sys.argv
PG_BIN = "/usr/lib/postgresql/15/bin"
RUN_DIR = os.environ["RUN_DIR"]
FAST = f"http://127.0.0.1:{os.environ['NGINX_FAST']}"
SLOW = f"http://127.0.0.1:{os.environ['NGINX_SLOW']}"
ACCESS_LOG = os.path.join(RUN_DIR, "nginx", "access.log")
CURL_FLOOR = os.environ["CURL_FLOOR"]
PUSH_PATH = "/api/OC_TOMA/v1/profiles/push"
# what wrk and curl_floor send
PUSH_BODY = ('{"apiToken":"bench-token","unique_id":"U1","login_source":"BANNER",'
             '"first_name":"First1","last_name":"Last1","email":"u1@campus.edu"}')
ROUNDS = 2 if QUICK else 5
LATENCY_COMMITS = 50 if QUICK else 200
ONLY = os.environ.get("BENCH_ONLY")
assert ONLY in (None, "delivery", "worker", "endtoend", "memory", "rss", "trigger", "instructions"), \
    f"BENCH_ONLY={ONLY}: delivery, worker, endtoend, memory, rss, trigger or instructions"
PGBENCH_SECONDS = 5 if QUICK else 10
PEOPLE = 100_000

SETUP = f"""
CREATE EXTENSION campus_sync;
-- fast and slow send the same people round after round: skip_unchanged
-- off (the memory is still written, as it always is)
CREATE SERVER fast FOREIGN DATA WRAPPER campus_sync
  OPTIONS (service 'opscom', url '{FAST}', login_source 'BANNER', concurrency '32', skip_unchanged 'false');
CREATE SERVER slow FOREIGN DATA WRAPPER campus_sync
  OPTIONS (service 'opscom', url '{SLOW}', login_source 'BANNER', concurrency '32', skip_unchanged 'false');
-- the defaults: the sync_trigger figures and the memory's
CREATE SERVER memo_fast FOREIGN DATA WRAPPER campus_sync
  OPTIONS (service 'opscom', url '{FAST}', login_source 'BANNER', concurrency '32');
CREATE SERVER memo_slow FOREIGN DATA WRAPPER campus_sync
  OPTIONS (service 'opscom', url '{SLOW}', login_source 'BANNER', concurrency '32');
CREATE USER MAPPING FOR PUBLIC SERVER fast OPTIONS (api_token 'bench-token');
CREATE USER MAPPING FOR PUBLIC SERVER slow OPTIONS (api_token 'bench-token');
CREATE USER MAPPING FOR PUBLIC SERVER memo_fast OPTIONS (api_token 'bench-token');
CREATE USER MAPPING FOR PUBLIC SERVER memo_slow OPTIONS (api_token 'bench-token');

CREATE TABLE people (
  unique_id text PRIMARY KEY, first_name text, last_name text, email text, city text,
  state text, zip text, phone_cell text, user_type_id int, date_of_birth date)
  WITH (autovacuum_enabled = off);
INSERT INTO people
SELECT 'U' || g, 'First' || g, 'Last' || g, 'u' || g || '@campus.edu', 'Kingston', 'ON',
       'K7L 3N6', '613-555-0100', 6, date '1990-01-01' + g % 3000
FROM generate_series(1, {PEOPLE}) g;

-- the baseline: a hand-written outbox trigger (jsonb_build_object + INSERT)
CREATE TABLE outbox (id bigserial PRIMARY KEY, server text NOT NULL, person_key text NOT NULL,
                     payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())
  WITH (autovacuum_enabled = off);
CREATE FUNCTION outbox_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO outbox (server, person_key, payload) VALUES ('opscom', NEW.unique_id,
    jsonb_build_object('unique_id', NEW.unique_id, 'login_source', 'BANNER',
      'first_name', NEW.first_name, 'last_name', NEW.last_name, 'email', NEW.email,
      'city', NEW.city, 'state', NEW.state, 'zip', NEW.zip, 'phone_cell', NEW.phone_cell,
      'user_type_id', NEW.user_type_id::text,
      'date_of_birth', to_char(NEW.date_of_birth, 'YYYY-MM-DD')));
  RETURN NULL;
END $$;
-- the floors: an AFTER trigger that does nothing, and a table like the
-- inbox that the same rows are written to alone
CREATE FUNCTION noop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TABLE inbox_copy (LIKE campus_sync.inbox) WITH (autovacuum_enabled = off);
ALTER TABLE campus_sync.queue_items SET (autovacuum_enabled = off);
"""

TRIGGERS = {
    "none": None,
    "noop": "EXECUTE FUNCTION noop_trigger()",
    "plpgsql": "EXECUTE FUNCTION outbox_trigger()",
    "sync_trigger": "EXECUTE FUNCTION campus_sync.sync_trigger('memo_fast')",
}


def connect(db="bench"):
    conn = psycopg2.connect(dbname=db)
    conn.autocommit = True
    return conn


def sql(conn, statement, args=None):
    with conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else None


def timed(conn, statement):
    started = time.monotonic()
    rows = sql(conn, statement)
    return time.monotonic() - started, rows


class Arrivals:
    """The requests the remote logged since this was made.  Read
    incrementally: polling it every few ms costs only what is new."""

    def __init__(self):
        self.log = open(ACCESS_LOG, "rb")
        self.log.seek(0, os.SEEK_END)
        self.partial, self.count = b"", 0

    def new(self):
        *lines, self.partial = (self.partial + self.log.read()).split(b"\n")
        self.count += len(lines)
        return lines

    def total(self):
        self.new()
        return self.count


def use_trigger(conn, variant):
    sql(conn, "DROP TRIGGER IF EXISTS sync ON people")
    sql(conn, "TRUNCATE outbox, inbox_copy, campus_sync.queue_items, campus_sync.inbox")
    sql(conn, "VACUUM ANALYZE people, inbox_copy")
    if TRIGGERS[variant]:
        sql(conn, f"CREATE TRIGGER sync AFTER INSERT OR UPDATE ON people FOR EACH ROW {TRIGGERS[variant]}")


def median(values):
    return statistics.median(values)


def out(line=""):
    print(line, flush=True)


# -- 1. calibration -----------------------------------------------------------

def calibration():
    """({remote: wrk's rate}, {remote: libcurl's rate}), zero latency and 20 ms."""
    rates, floor = {}, {}
    for name, url, requests in (("zero latency", FAST, 300_000), ("20 ms", SLOW, 8_000)):
        rates[name] = wrk_rate(url)
        floor[name] = curl_floor(url, requests)
    return rates, floor


def wrk_rate(url):
    """wrk -t2 -c32 for 5 s: requests/s."""
    script = os.path.join(RUN_DIR, "post.lua")
    with open(script, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = \'{PUSH_BODY}\'\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    res = subprocess.run(["wrk", "-t2", "-c32", "-d5s", "-s", script, url + PUSH_PATH],
                         capture_output=True, text=True, check=True).stdout
    return float(next(l for l in res.splitlines() if l.startswith("Requests/sec")).split()[1])


def curl_floor(url, requests):
    """libcurl alone: requests/s of bench/curl_floor.c, 32 at a time."""
    res = subprocess.run([CURL_FLOOR, url + PUSH_PATH, "32", str(requests), PUSH_BODY],
                         capture_output=True, text=True, check=True).stdout.split()
    assert res[1] == "0", f"curl_floor: {res[1]} requests failed"
    return float(res[0])


# -- 2. delivery ----------------------------------------------------------------

def calling(statement):
    """A deliverer that is a call: timed from its start to its return."""
    def deliver(conn, server, items, arrivals, committed):
        seconds, _ = timed(conn, statement.format(server=server))
        return seconds
    return deliver


DELIVERERS = {
    "deliver()": calling("SELECT sum(delivered) FROM campus_sync.deliver('{server}', max_seconds => 600)"),
    "deliver_batches()": calling("CALL campus_sync.deliver_batches('{server}', max_seconds => 600)"),
}


def delivered_count(conn):
    return sql(conn, "SELECT count(*) FROM campus_sync.queue_items WHERE state = 'delivered'")[0][0]


def delivery(conns, server, items, rounds, deliverers=DELIVERERS):
    """Each deliverer, interleaved, draining `items` people queued (and
    committed) in its database, conns[deliverer] (default: bench);
    returns ({deliverer: rates}, lost)."""
    rates, lost = {v: [] for v in deliverers}, 0
    for _ in range(rounds):
        for variant, deliver in deliverers.items():
            conn = conns.get(variant, conns["bench"])
            sql(conn, "DROP TRIGGER IF EXISTS sync ON people")
            sql(conn, "TRUNCATE campus_sync.queue_items, campus_sync.inbox, campus_sync.target_health")
            # all before the items are committed: the worker starts at that commit
            sql(conn, "VACUUM ANALYZE campus_sync.queue_items")
            arrivals = Arrivals()
            conn.autocommit = False
            sql(conn, f"SELECT count(campus_sync.enqueue('{server}', p)) FROM people p WHERE unique_id IN "
                      f"(SELECT 'U' || g FROM generate_series(1, {items}) g)")
            committed = time.monotonic()
            conn.commit()
            conn.autocommit = True
            seconds = deliver(conn, server, items, arrivals, committed)
            delivered = delivered_count(conn)
            waiting = sql(conn, "SELECT count(*) FROM campus_sync.queue_items WHERE state <> 'delivered'")[0][0]
            lost += (items - delivered) + abs(arrivals.total() - items) + waiting
            rates[variant].append(delivered / seconds)
    return rates, lost


def synchronous_push(conn, server, items):
    """opscom_push over a SELECT: one request after the other (pgsql-http style)."""
    seconds, rows = timed(conn, f"SELECT count(*) FILTER (WHERE (campus_sync.opscom_push(p, server => '{server}')).ok) "
                                f"FROM people p WHERE unique_id IN (SELECT 'U' || g FROM generate_series(1, {items}) g)")
    assert rows[0][0] == items
    return items / seconds


# -- 3. the background worker ---------------------------------------------------

def worker_drains(conn, server, items, arrivals, committed):
    """The worker's time: from the COMMIT that queued the items until all are
    delivered (their outcomes committed).  Until every request has reached
    the remote only its log is read (every 20 ms, nearly free); the queue
    is counted only then."""
    deadline = committed + 600
    while arrivals.total() < items and time.monotonic() < deadline:
        time.sleep(0.02)
    while delivered_count(conn) < items and time.monotonic() < deadline:
        time.sleep(0.02)
    return time.monotonic() - committed


def wait_for_worker(conn):
    """The worker starts with the cluster, before bench_worker exists, and
    tries again every 5 s."""
    deadline = time.monotonic() + 60
    while not sql(conn, "SELECT running FROM campus_sync.worker")[0][0]:
        assert time.monotonic() < deadline, sql(conn, "SELECT * FROM campus_sync.worker")
        time.sleep(0.1)


def worker_latency(conn, commits):
    """Commit to request on an idle cluster: single-row UPDATEs through the
    sync trigger to the zero-latency remote, committed one by one, 20-50 ms
    apart, each waited for.  From just before the COMMIT to the arrival:
    nginx's $msec (when it logged the request) less $request_time; both
    clocks are this machine's."""
    sql(conn, "TRUNCATE campus_sync.queue_items, campus_sync.inbox, campus_sync.target_health")
    sql(conn, "CREATE TRIGGER sync AFTER UPDATE ON people FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('fast')")
    arrivals, latencies = Arrivals(), []
    conn.autocommit = False
    for i in range(1, commits + 1):
        time.sleep(random.uniform(0.02, 0.05))
        sql(conn, "UPDATE people SET last_name = last_name || 'x' WHERE unique_id = %s", (f"U{i}",))
        before = time.time()
        conn.commit()
        deadline, lines = time.monotonic() + 5, []
        while not lines and time.monotonic() < deadline:
            time.sleep(0.002)
            lines = arrivals.new()
        if len(lines) == 1:  # else lost, or a stray request: counted below
            msec, request_time = lines[0].split()[:2]
            latencies.append((float(msec) - float(request_time) - before) * 1000)
    conn.autocommit = True
    sql(conn, "DROP TRIGGER sync ON people")
    lost = (commits - delivered_count(conn)) + abs(arrivals.total() - commits) + (commits - len(latencies))
    return latencies, lost


def worker_figures(conn, worker_conn):
    conns = {"bench": conn, "worker": worker_conn}
    deliverers = {"worker": worker_drains, **DELIVERERS}
    wait_for_worker(worker_conn)
    rounds = max(2, ROUNDS - 2)
    slow, slow_lost = delivery(conns, "slow", 16_000, rounds, deliverers)
    fast, fast_lost = delivery(conns, "fast", PEOPLE, rounds, deliverers)
    latencies, latency_lost = worker_latency(worker_conn, LATENCY_COMMITS)
    errors = sql(worker_conn, "SELECT last_error FROM campus_sync.worker WHERE last_error IS NOT NULL")

    out("### Background worker (database bench_worker; deliver() in database bench, same items, interleaved)")
    out()
    out("Timed from the COMMIT that queued the items (worker) or from the call (deliver(), deliver_batches()) "
        "until all are delivered.")
    out()
    out("| remote | items | worker/s | deliver()/s | deliver_batches()/s | worker / deliver() "
        "| worker / deliver_batches() | lost |")
    out("|---|---|---|---|---|---|---|---|")
    for name, items, rates, lost in (("20 ms", 16_000, slow, slow_lost), ("zero latency", PEOPLE, fast, fast_lost)):
        m = {v: median(r) for v, r in rates.items()}
        out(f"| {name} | {items:,} | {m['worker']:,.0f} | {m['deliver()']:,.0f} | {m['deliver_batches()']:,.0f} "
            f"| {m['worker'] / m['deliver()']:.3f} | {m['worker'] / m['deliver_batches()']:.3f} | {lost} |")
    out()
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    out(f"Commit to request (zero-latency remote, idle cluster, {len(latencies)} single-row UPDATE commits "
        f"20-50 ms apart): median {median(latencies):.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms; "
        f"lost {latency_lost}.")
    out()
    out("Raw rounds: " + "; ".join(f"{name} {v} {', '.join(f'{x:,.0f}' for x in rates[v])}"
                                   for name, rates in (("20 ms", slow), ("zero latency", fast))
                                   for v in deliverers))
    if errors:
        out()
        out(f"The worker's last error: {errors[0][0]}")
    out()


def end_to_end(worker_conn):
    """Issue 12's goal 4: one UPDATE changes all 100,000 people, and the
    worker delivers them to the 20 ms remote, 32 at a time.  Timed from the
    UPDATE's start to the last outcome committed, against the time wrk,
    measured just before, needs for as many requests."""
    wait_for_worker(worker_conn)
    rounds = 1 if QUICK else 3
    ratios, lost, raw = [], 0, []
    for _ in range(rounds):
        sql(worker_conn, "DROP TRIGGER IF EXISTS sync ON people")
        sql(worker_conn, "TRUNCATE campus_sync.queue_items, campus_sync.inbox, campus_sync.target_health")
        sql(worker_conn, "VACUUM ANALYZE people, campus_sync.queue_items")
        sql(worker_conn, "CREATE TRIGGER sync AFTER UPDATE ON people FOR EACH ROW "
                         "EXECUTE FUNCTION campus_sync.sync_trigger('slow')")
        wrk_seconds = PEOPLE / wrk_rate(SLOW)
        arrivals = Arrivals()
        started = time.monotonic()
        update_seconds, _ = timed(worker_conn, "UPDATE people SET last_name = last_name || 'e'")
        seconds = worker_drains(worker_conn, "slow", PEOPLE, arrivals, started)
        lost += (PEOPLE - delivered_count(worker_conn)) + abs(arrivals.total() - PEOPLE)
        ratios.append(seconds / wrk_seconds)
        raw.append((seconds, update_seconds, wrk_seconds))
    sql(worker_conn, "DROP TRIGGER sync ON people")
    i = ratios.index(median(ratios)) if len(ratios) % 2 else 0
    seconds, update_seconds, wrk_seconds = raw[i]
    out("### End to end: one UPDATE of 100,000 people, delivered by the worker (20 ms remote, concurrency 32)")
    out()
    out("| figure | worker | wrk, 100,000 requests at its rate | ratio | goal | lost |")
    out("|---|---|---|---|---|---|")
    out(f"| UPDATE start to last outcome committed, s | {seconds:.1f} (the UPDATE: {update_seconds:.1f}) "
        f"| {wrk_seconds:.1f} | {median(ratios):.3f} | <= 1.05 | {lost} |")
    out()
    out("Raw rounds (worker s, UPDATE s, wrk s): " + "; ".join(f"{a:.1f}, {b:.1f}, {c:.1f}" for a, b, c in raw))
    out()


# -- 6. memory across 1,000,000 deliveries -------------------------------------

MILLION = 1_000_000


def rss_anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))


class RssSampler:
    """The private memory of one process, sampled every 0.5 s in a thread:
    the shared buffers it touches (in VmRSS) are not its own."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, rss_anon_kb(pid), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, rss_anon_kb(self.pid))

    def finish(self):
        self.stop.set()
        self.thread.join()
        return max(self.peak, rss_anon_kb(self.pid))


def queue_million(conn):
    sql(conn, "TRUNCATE campus_sync.queue_items, campus_sync.inbox, campus_sync.target_health")
    sql(conn, "CREATE TABLE IF NOT EXISTS people_1m AS SELECT 'M' || g AS unique_id, 'First' || g AS first_name, "
              "'Last' || g AS last_name, 'm' || g || '@campus.edu' AS email FROM generate_series(1, %s) g",
        (MILLION,))
    sql(conn, "SELECT count(campus_sync.enqueue('fast', p)) FROM people_1m p")


def rss_figures(conn, worker_conn):
    """deliver() in one call, and the worker, each delivering 1,000,000
    items to the zero-latency remote."""
    rows = []
    queue_million(conn)
    pid = sql(conn, "SELECT pg_backend_pid()")[0][0]
    before, sampler = rss_anon_kb(pid), RssSampler(pid)
    seconds, _ = timed(conn, "SELECT sum(delivered) FROM campus_sync.deliver('fast', max_seconds => 3600)")
    rows.append(("deliver(), one call", delivered_count(conn), before, sampler.finish(), rss_anon_kb(pid), seconds))

    wait_for_worker(worker_conn)
    pid = sql(worker_conn, "SELECT pid FROM campus_sync.worker")[0][0]
    before, sampler = rss_anon_kb(pid), RssSampler(pid)
    started = time.monotonic()
    queue_million(worker_conn)          # committed: the worker starts
    while delivered_count(worker_conn) < MILLION and time.monotonic() < started + 1800:
        time.sleep(2)
    seconds = time.monotonic() - started
    rows.append(("worker", delivered_count(worker_conn), before, sampler.finish(), rss_anon_kb(pid), seconds))
    for c in (conn, worker_conn):
        sql(c, "TRUNCATE campus_sync.queue_items, campus_sync.inbox, campus_sync.sync_state")
        sql(c, "DROP TABLE people_1m")

    out("### Memory across 1,000,000 deliveries (zero-latency remote)")
    out()
    out("Private memory (RssAnon) of the delivering process; the shared buffers it touches are not its own. "
        "The worker's time includes queueing the million (it starts at that commit).")
    out()
    out("| deliverer | delivered | RssAnon before | peak | after | growth | seconds |")
    out("|---|---|---|---|---|---|---|")
    for name, delivered, before, peak, after, seconds in rows:
        out(f"| {name} | {delivered:,} | {before / 1024:.1f} MB | {peak / 1024:.1f} MB | {after / 1024:.1f} MB "
            f"| {(peak - before) / 1024:+.1f} MB | {seconds:.0f} |")
    out()


# -- 4. sync_trigger ----------------------------------------------------------

def pgbench_tps():
    script = os.path.join(RUN_DIR, "update.sql")
    with open(script, "w") as f:
        f.write(f"\\set id random(1, {PEOPLE})\n"
                "UPDATE people SET last_name = 'L' || :id || '-' || (random() * 1000000)::int "
                "WHERE unique_id = 'U' || :id;\n")
    res = subprocess.run([f"{PG_BIN}/pgbench", "-n", "-c", "8", "-j", "2", "-T", str(PGBENCH_SECONDS),
                          "-f", script, "bench"], capture_output=True, text=True, check=True).stdout
    return float(next(l for l in res.splitlines() if l.startswith("tps")).split()[2])


def trigger_rates(conn):
    tps = {v: [] for v in TRIGGERS}
    for _ in range(ROUNDS):
        for variant in TRIGGERS:
            use_trigger(conn, variant)
            tps[variant].append(pgbench_tps())
    return tps


def bulk_update_seconds(conn):
    """Each variant's 100,000-row UPDATE; and "inbox rows": sync_trigger's
    inbox rows written again alone, by INSERT ... SELECT into a table like
    the inbox (what storing every change's body in a table costs)."""
    secs = {v: [] for v in (*TRIGGERS, "inbox rows")}
    for _ in range(max(2, ROUNDS - 2)):
        for variant in TRIGGERS:
            use_trigger(conn, variant)
            seconds, _ = timed(conn, "UPDATE people SET last_name = last_name || 'x'")
            secs[variant].append(seconds)
            if variant == "sync_trigger":
                queued = sql(conn, "SELECT count(*) FROM campus_sync.inbox")[0][0]
                assert queued == PEOPLE, f"{queued} items queued for {PEOPLE} updated rows"
                seconds, _ = timed(conn, "INSERT INTO inbox_copy SELECT * FROM campus_sync.inbox")
                secs["inbox rows"].append(seconds)
    return secs


def delivery_figures(conn):
    before = calibration()
    out("### Delivery (deliver(), one backend, concurrency 32)")
    out()
    slow_rates, slow_lost = delivery({"bench": conn}, "slow", 16_000, max(2, ROUNDS - 2))
    fast_rates, fast_lost = delivery({"bench": conn}, "fast", PEOPLE, max(2, ROUNDS - 2))
    sync_rate = synchronous_push(conn, "slow", 500)
    after = calibration()
    # the remote's and libcurl's rates: measured before and after the deliveries
    wrk = {k: median([before[0][k], after[0][k]]) for k in before[0]}
    floor = {k: median([before[1][k], after[1][k]]) for k in before[1]}
    slow, fast = slow_rates["deliver()"], fast_rates["deliver()"]
    out("| remote | deliveries/s | baseline in the same run | ratio | lost |")
    out("|---|---|---|---|---|")
    out(f"| 20 ms | {median(slow):,.0f} | bound 32 / 20 ms = 1,600/s (wrk: {wrk['20 ms']:,.0f}/s) | "
        f"{median(slow) / 1600:.3f} of the bound | {slow_lost} |")
    out(f"| zero latency | {median(fast):,.0f} | wrk -t2 -c32: {wrk['zero latency']:,.0f}/s | "
        f"{median(fast) / wrk['zero latency']:.3f} of wrk | {fast_lost} |")
    for name in ("20 ms", "zero latency"):
        out(f"| {name}, libcurl alone (bench/curl_floor.c, 32 at a time) | {floor[name]:,.0f} "
            f"| wrk: {wrk[name]:,.0f}/s | {floor[name] / wrk[name]:.3f} of wrk "
            f"(deliver(): {median(slow if name == '20 ms' else fast) / floor[name]:.3f} of it) | 0 |")
    out(f"| 20 ms, opscom_push one row after the other (pgsql-http style) | {sync_rate:,.0f} | deliver(): "
        f"{median(slow):,.0f}/s | deliver() is {median(slow) / sync_rate:.0f}x faster | 0 |")
    for name, rates, base in (("20 ms", slow_rates, slow), ("zero latency", fast_rates, fast)):
        batches = median(rates["deliver_batches()"])
        out(f"| {name}, deliver_batches() (commits as it goes) | {batches:,.0f} | deliver(): {median(base):,.0f}/s | "
            f"{batches / median(base):.3f} of deliver() | (above) |")
    out()
    out("Raw rounds: " + "; ".join(f"{name} {v} {', '.join(f'{x:,.0f}' for x in rates[v])}"
                                   for name, rates in (("20 ms", slow_rates), ("zero latency", fast_rates))
                                   for v in DELIVERERS)
        + "; calibration before, after: " + "; ".join(
            f"{name} wrk {before[0][name]:,.0f}, {after[0][name]:,.0f}, libcurl {before[1][name]:,.0f}, "
            f"{after[1][name]:,.0f}" for name in before[0]))
    out()


def sync_trigger_figures(conn):
    out("### sync_trigger")
    out()
    tps = trigger_rates(conn)
    secs = bulk_update_seconds(conn)
    m = {v: median(t) for v, t in tps.items()}
    b = {v: median(s) for v, s in secs.items()}
    out("| workload | no trigger | no-op PL/pgSQL trigger | PL/pgSQL outbox | sync_trigger | sync / none "
        "| sync / PL/pgSQL |")
    out("|---|---|---|---|---|---|---|")
    out(f"| single-row UPDATE, pgbench -c 8, tps | {m['none']:,.0f} | {m['noop']:,.0f} | {m['plpgsql']:,.0f} "
        f"| {m['sync_trigger']:,.0f} | {m['sync_trigger'] / m['none']:.2f} | {m['sync_trigger'] / m['plpgsql']:.2f}x |")
    out(f"| 100,000-row UPDATE, seconds | {b['none']:.2f} | {b['noop']:.2f} | {b['plpgsql']:.2f} "
        f"| {b['sync_trigger']:.2f} | {b['sync_trigger'] / b['none']:.2f}x the time "
        f"| {b['plpgsql'] / b['sync_trigger']:.2f}x faster |")
    out()
    floor = (b['noop'] + b['inbox rows']) / b['none']
    out(f"The floor of a bulk UPDATE that stores every change's body in a table: the no-op trigger "
        f"({b['noop'] / b['none']:.2f}x the time) plus writing sync_trigger's {PEOPLE:,} inbox rows alone "
        f"(INSERT ... SELECT: {b['inbox rows']:.2f} s, {b['inbox rows'] / b['none']:.2f}x) = {floor:.2f}x; "
        f"sync_trigger: {b['sync_trigger'] / b['none']:.2f}x.")
    out()
    out("Raw rounds: " + "; ".join(f"{v} tps {', '.join(f'{x:,.0f}' for x in t)}" for v, t in tps.items())
        + "; " + "; ".join(f"{v} bulk s {', '.join(f'{x:.2f}' for x in t)}" for v, t in secs.items()))


# -- 7. instructions, counted (callgrind) ---------------------------------------

SINGLE_ROW_COMMITS = 2000


def as_postgres(args, stdin_text, stderr=subprocess.DEVNULL):
    """A command as the postgres OS user (the server refuses root)."""
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], input=stdin_text, text=True, cwd="/",
                          stdout=subprocess.DEVNULL, stderr=stderr, check=True)


def single_user(data, statements, valgrind=False):
    """Runs the statements in a single-user backend on data (one per line,
    each its own transaction); under callgrind, returns the instructions
    it executed."""
    command = [f"{PG_BIN}/postgres", "--single", "-D", data, "-c", "shared_buffers=128MB", "bench"]
    if not valgrind:
        as_postgres(command, statements)
        return None
    out = os.path.join(data, "callgrind.out")
    res = as_postgres(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command], statements,
                      stderr=subprocess.PIPE)
    return int(next(l for l in res.stderr.splitlines() if "Collected" in l).split()[-1])


def instruction_cluster():
    """A stopped cluster of its own with the bench's database: each count
    runs on a fresh copy of it, so every variant starts from the same rows."""
    pristine = os.path.join(RUN_DIR, "instructions", "pristine")
    os.makedirs(pristine)
    shutil.chown(os.path.dirname(pristine), "postgres")
    shutil.chown(pristine, "postgres")
    as_postgres([f"{PG_BIN}/initdb", "-D", pristine, "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                 "--auth=trust"], "")
    as_postgres([f"{PG_BIN}/postgres", "--single", "-D", pristine, "postgres"], "CREATE DATABASE bench\n")
    setup = SETUP.replace("\n\n", "\n")  # -j: a command ends at a semicolon and an empty line
    as_postgres([f"{PG_BIN}/postgres", "--single", "-j", "-D", pristine, "bench"],
                setup + "\n\nVACUUM ANALYZE;\n\nCHECKPOINT;\n\n")
    return pristine


def count_instructions(pristine, variant, statements):
    data = os.path.join(RUN_DIR, "instructions", "data")
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run(["cp", "-a", pristine, data], check=True)
    trigger = TRIGGERS[variant]
    if trigger:
        single_user(data, f"CREATE TRIGGER sync AFTER INSERT OR UPDATE ON people FOR EACH ROW {trigger}\n")
    return single_user(data, statements, valgrind=True)


def instruction_figures():
    """Issue 12's goals 2 and 3 in instructions rather than time: what each
    trigger adds to a single-row UPDATE commit and to each row of a
    100,000-row UPDATE.  Counted by callgrind in a single-user backend,
    so the machine's noise does not reach them."""
    pristine = instruction_cluster()
    rng = random.Random(1)
    single = "".join(f"UPDATE people SET last_name = 'L{k}-{i}' WHERE unique_id = 'U{k}'\n"
                     for i, k in ((i, rng.randint(1, PEOPLE)) for i in range(SINGLE_ROW_COMMITS)))
    bulk = "UPDATE people SET last_name = last_name || 'x'\n"
    start = count_instructions(pristine, "none", "")
    counts = {v: (count_instructions(pristine, v, single), count_instructions(pristine, v, bulk))
              for v in TRIGGERS}
    none_single = (counts["none"][0] - start) / SINGLE_ROW_COMMITS
    none_bulk = (counts["none"][1] - start) / PEOPLE
    out("### Instructions (callgrind, single-user backend; PostgreSQL's own work included)")
    out()
    out(f"No trigger: {none_single:,.0f} instructions a single-row UPDATE commit, {none_bulk:,.0f} a row of the "
        f"100,000-row UPDATE. What each trigger adds:")
    out()
    out("| trigger | a single-row commit | of no trigger | a row of the bulk UPDATE | of no trigger |")
    out("|---|---|---|---|---|")
    for v in TRIGGERS:
        if v == "none":
            continue
        extra_single = (counts[v][0] - counts["none"][0]) / SINGLE_ROW_COMMITS
        extra_bulk = (counts[v][1] - counts["none"][1]) / PEOPLE
        out(f"| {v} | +{extra_single:,.0f} | +{extra_single / none_single:.0%} | +{extra_bulk:,.0f} "
            f"| +{extra_bulk / none_bulk:.0%} |")
    out()


# -- 5. the delivered-state memory -----------------------------------------------

RELOAD = 10_000
RELOAD_CHANGED = 100


def nightly_load(conn, server, changed, tag):
    """What a nightly ETL does: TRUNCATE the person table and INSERT every
    person again, in one transaction (the trigger queues them), then
    deliver().  The first `changed` people get a new first name.  Returns
    (seconds, requests the remote received)."""
    arrivals = Arrivals()
    started = time.monotonic()
    sql(conn, f"""BEGIN; TRUNCATE reload;
        INSERT INTO reload SELECT p.unique_id,
               CASE WHEN g <= {changed} THEN p.first_name || '-{tag}' ELSE p.first_name END,
               p.last_name, p.email, p.city, p.state, p.zip, p.phone_cell, p.user_type_id, p.date_of_birth
        FROM generate_series(1, {RELOAD}) g JOIN people p ON p.unique_id = 'U' || g; COMMIT""")
    sql(conn, f"SELECT sum(delivered) FROM campus_sync.deliver('{server}', max_seconds => 600)")
    seconds = time.monotonic() - started
    time.sleep(0.2)   # nginx logs a request after answering it
    return seconds, arrivals.total()


def memory_figures(conn):
    sql(conn, "CREATE TABLE IF NOT EXISTS reload (LIKE people INCLUDING ALL)")
    rounds = max(2, ROUNDS - 2)
    first = {"memo_slow": [], "memo_fast": []}
    again = {"memo_slow": [], "memo_fast": []}
    wrong = 0
    for r in range(rounds):
        for server in first:
            sql(conn, "DROP TRIGGER IF EXISTS sync ON reload")
            sql(conn, f"CREATE TRIGGER sync AFTER INSERT OR UPDATE ON reload FOR EACH ROW "
                      f"EXECUTE FUNCTION campus_sync.sync_trigger('{server}')")
            sql(conn, f"SELECT campus_sync.forget('{server}')")
            sql(conn, "TRUNCATE campus_sync.queue_items, campus_sync.inbox")
            sql(conn, "VACUUM ANALYZE campus_sync.queue_items, campus_sync.sync_state")
            seconds, requests = nightly_load(conn, server, 0, f"r{r}")
            wrong += abs(requests - RELOAD)
            first[server].append(seconds)
            seconds, requests = nightly_load(conn, server, RELOAD_CHANGED, f"r{r}")
            wrong += abs(requests - RELOAD_CHANGED)
            again[server].append(seconds)
    sql(conn, "DROP TRIGGER sync ON reload")
    out("### Delivered-state memory: a nightly reload that sends only what changed")
    out()
    out(f"TRUNCATE and INSERT of {RELOAD:,} people in one transaction (the sync trigger queues them), then "
        f"deliver(); concurrency 32.  First: the memory empty, every person sent.  Reload: the same people, "
        f"{RELOAD_CHANGED} of them changed.")
    out()
    out("| remote | first load, s | reload, s | reload / first | requests not as expected |")
    out("|---|---|---|---|---|")
    for server, name in (("memo_slow", "20 ms"), ("memo_fast", "zero latency")):
        ratios = [a / f for a, f in zip(again[server], first[server])]
        out(f"| {name} | {median(first[server]):.2f} | {median(again[server]):.3f} | {median(ratios):.3f} "
            f"| {wrong} |")
    out()
    out("Raw rounds: " + "; ".join(f"{s} first {', '.join(f'{x:.2f}' for x in first[s])}, reload "
                                   f"{', '.join(f'{x:.3f}' for x in again[s])}" for s in first))
    out()


def main():
    admin = connect("postgres")
    sql(admin, "DROP DATABASE IF EXISTS bench")
    sql(admin, "CREATE DATABASE bench")
    conn = connect()
    sql(conn, SETUP)
    sql(conn, "VACUUM ANALYZE")
    # the worker's database: the same servers, tables and statistics
    conn.close()
    sql(admin, "CREATE DATABASE bench_worker TEMPLATE bench")
    conn, worker_conn = connect(), connect("bench_worker")

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    out(f"## campus_sync benchmarks, {date.today().isoformat()}")
    out()
    out(f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"PostgreSQL 15, default settings but shared_buffers 1GB, max_wal_size 8GB, autovacuum off "
        f"(tables vacuumed between runs); campus_sync preloaded, its worker serving database bench_worker "
        f"only. Medians of {ROUNDS} interleaved rounds.")
    out()

    if ONLY in (None, "delivery"):
        delivery_figures(conn)
    if ONLY in (None, "worker"):
        worker_figures(conn, worker_conn)
    if ONLY in (None, "endtoend"):
        end_to_end(worker_conn)
    if ONLY in (None, "memory"):
        memory_figures(conn)
    if ONLY in (None, "rss"):
        rss_figures(conn, worker_conn)
    if ONLY in (None, "trigger"):
        sync_trigger_figures(conn)
    if ONLY in (None, "instructions"):
        instruction_figures()
    conn.close()


if __name__ == "__main__":
    main()
