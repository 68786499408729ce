"""Shared helpers of the integration suites: a database with campus_sync and
its test targets, connections, and the mock API's control port.

The test runner (test/run.sh) exports PGHOST, PGPORT, PGUSER, MOCK_API,
MOCK_CONTROL; each suite gets a fresh database of its own.
"""
import json
import os
import time
import urllib.parse
import urllib.request

import psycopg2
import psycopg2.extensions

MOCK_API = os.environ["MOCK_API"]
# test/sanitize.sh: ASan's allocator keeps freed memory in quarantine and
# pads every allocation, so the suites' memory bounds do not apply there
# (the sanitizers check memory errors instead).
SANITIZED = bool(os.environ.get("CS_SANITIZED"))
MOCK_CONTROL = os.environ["MOCK_CONTROL"]

OPSCOM_TOKEN = "opscom-test-token-0123456789"
CLOUDCARD_PAT = "pat-test-0123456789abcdef"


def mock(command, _json=None, **args):
    """Runs a control command of the mock API and returns its JSON answer.
    Arguments go in the query string, or in _json (a dict sent as the JSON
    body: for values too long for a URL)."""
    url = MOCK_CONTROL + "/_mock/" + command
    if args:
        url += "?" + urllib.parse.urlencode(
            {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in args.items()})
    data = json.dumps(_json).encode() if _json is not None else None
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def connect(dbname, autocommit=True, **conninfo):
    """A connection to the suites' cluster (PGHOST, PGPORT), or to the one
    conninfo names (host, port: a cluster of cluster.py)."""
    conn = psycopg2.connect(dbname=dbname, **conninfo)
    conn.autocommit = autocommit
    return conn


def create_database(name, setup_sql="", skip_unchanged=False, **conninfo):
    """A fresh database with campus_sync and the servers opscom and cloudcard."""
    admin = connect("postgres", **conninfo)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    conn = connect(name, **conninfo)
    install_campus_sync(conn, setup_sql, skip_unchanged)
    return conn


def install_campus_sync(conn, setup_sql="", skip_unchanged=False):
    """CREATE EXTENSION campus_sync, the servers opscom and cloudcard (on the
    mock API) with their user mappings, then setup_sql.  The servers send
    every body, even one the mock has already (skip_unchanged false), unless
    skip_unchanged: most suites are about requests and answers, and send the
    same people again and again; test_memory.py tests the memory."""
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION campus_sync")
        cur.execute(
            "CREATE SERVER opscom FOREIGN DATA WRAPPER campus_sync "
            "OPTIONS (service 'opscom', url %s, login_source 'BANNER', skip_unchanged %s)",
            (MOCK_API, str(skip_unchanged).lower()))
        cur.execute("CREATE USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (api_token %s)",
                    (OPSCOM_TOKEN,))
        cur.execute(
            "CREATE SERVER cloudcard FOREIGN DATA WRAPPER campus_sync "
            "OPTIONS (service 'cloudcard', url %s, skip_unchanged %s)",
            (MOCK_API, str(skip_unchanged).lower()))
        cur.execute("CREATE USER MAPPING FOR PUBLIC SERVER cloudcard "
                    "OPTIONS (persistent_access_token %s)", (CLOUDCARD_PAT,))
        if setup_sql:
            cur.execute(setup_sql)


def query(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def scalar(conn, sql, args=None):
    rows = query(conn, sql, args)
    return rows[0][0] if rows else None


def wait_for(condition, timeout, interval=0.05, what="condition"):
    """Polls condition() until it is true; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def proc_status_kb(pid, field):
    """A field of /proc/<pid>/status (VmRSS, RssAnon ...), in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")
