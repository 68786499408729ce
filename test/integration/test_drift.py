"""Drift against CloudCard: cloudcard_diff(person) compares one row's body
with the person CloudCard has (GET /person/{key}, read-only), field by
field; cloudcard_drift(query) does it for every row of a query with the
server's concurrency, at its max_rate, interruptibly, in bounded memory.

Timing assertions are bounds with wide margins: the overlapped run is
asserted well under the one-after-another time, the paced one at or above
what max_rate allows (less the mock's stamping margin, as in test_pace).
"""
import json
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.errors

from helpers import (CLOUDCARD_PAT, MOCK_API, SANITIZED, connect, create_database, mock,
                     query, scalar)

DB = "cs_it_drift"
STATIC_TOKEN = "cc-static-token-0123456789"
PEOPLE = f"""
    CREATE SERVER cloudcard_s FOREIGN DATA WRAPPER campus_sync
      OPTIONS (service 'cloudcard', url '{MOCK_API}');
    CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_s OPTIONS (auth_token '{STATIC_TOKEN}');
    CREATE SERVER cloudcard_e FOREIGN DATA WRAPPER campus_sync
      OPTIONS (service 'cloudcard', url '{MOCK_API}', find_by 'email');
    CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_e OPTIONS (auth_token '{STATIC_TOKEN}');
    CREATE TABLE people (identifier text, email text, cardholder_group_name text,
                         enabled boolean, manager_email text, role_cardholder boolean,
                         role_office boolean, custom_fields jsonb);
"""
# the mock's arrival stamps under load (see test_pace.py)
MARGIN_S = 0.04
DIFF = ("SELECT d.field, d.local, d.remote FROM people p, "
        "LATERAL campus_sync.cloudcard_diff(p, server => %s) d WHERE p.identifier = %s")
DRIFT = ("SELECT person_key, field, local, remote FROM campus_sync.cloudcard_drift(%s, server => %s) "
         "ORDER BY 1, 2")


def person_gets(since=0):
    return [r for r in mock("requests", since=since)
            if r["method"] == "GET" and r["path"].startswith("/person/")]


def last_seq():
    records = mock("requests")
    return records[-1]["seq"] if records else 0


def seed(**person):
    return mock("cloudcard_seed", _json=person)


class DriftTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(DB, PEOPLE)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()

    def setUp(self):
        mock("reset")
        # the mock forgot its people: so does the delivered-state memory
        query(self.conn, "TRUNCATE people; DELETE FROM campus_sync.paused_servers; "
                         "DELETE FROM campus_sync.sync_state")

    def set_option(self, server, name, value):
        query(self.conn, f"ALTER SERVER {server} OPTIONS (ADD {name} %s)", (value,))
        self.addCleanup(query, self.conn, f"ALTER SERVER {server} OPTIONS (DROP {name})")

    def add(self, identifier, email, group=None, enabled=None, manager=None,
            cardholder=None, office=None, custom=None):
        query(self.conn, "INSERT INTO people VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
              (identifier, email, group, enabled, manager, cardholder, office,
               json.dumps(custom) if custom is not None else None))

    def diff(self, identifier, server="cloudcard_s"):
        return query(self.conn, DIFF, (server, identifier))

    # -- what differs ------------------------------------------------------

    def test_a_person_as_the_row_would_send_it_has_no_differences(self):
        self.add("C1", "c1@campus.edu", "Students", True, "boss@campus.edu", True, False,
                 {"Dorm": "West", "Class Year": 2027})
        self.assertEqual(query(self.conn, "SELECT r.ok FROM people p, "
                                          "LATERAL campus_sync.cloudcard_upsert(p, server => 'cloudcard_s') r"),
                         [(True,)])
        seq = last_seq()
        self.assertEqual(self.diff("C1"), [])
        self.assertEqual(query(self.conn, DRIFT, ("SELECT * FROM people", "cloudcard_s")), [])
        # read-only: two GETs, nothing else
        self.assertEqual([(r["method"], r["path"], r["query"]) for r in mock("requests", since=seq)],
                         [("GET", "/person/C1", "findBy=identifier")] * 2)

    def test_changed_fields_are_exactly_the_rows(self):
        seed(identifier="C2", email="old@campus.edu", cardholderGroupName="Staff",
             enabled=True, roles=["ROLE_CARDHOLDER", "ROLE_OFFICE"],
             customFields={"Dorm": "East", "Class Year": "2027"})
        self.add("C2", "new@campus.edu", "Students", False, "boss@campus.edu", True, False,
                 {"Dorm": "West", "Class Year": 2027, "Locker": "12"})
        expected = [("email", "new@campus.edu", "old@campus.edu"),
                    ("cardholderGroupName", "Students", "Staff"),
                    ("enabled", "false", "true"),
                    ("managerEmail", "boss@campus.edu", None),     # CloudCard has none
                    ("ROLE_OFFICE", "false", "true"),
                    ("customFields.Dorm", "West", "East"),
                    ("customFields.Locker", "12", None)]           # nor this custom field
        self.assertEqual(self.diff("C2"), expected)
        self.assertEqual(query(self.conn, DRIFT, ("SELECT * FROM people", "cloudcard_s")),
                         sorted(("C2",) + row for row in expected))

    def test_a_person_cloudcard_does_not_have_is_one_star_row(self):
        self.add("C3", "c3@campus.edu", "Students")
        self.assertEqual(self.diff("C3"), [("*", "C3", None)])
        self.assertEqual(query(self.conn, DRIFT, ("SELECT * FROM people", "cloudcard_s")),
                         [("C3", "*", "C3", None)])
        # keyed by email: the key is the email
        self.assertEqual(self.diff("C3", "cloudcard_e"), [("*", "c3@campus.edu", None)])
        self.assertEqual([(r["path"], r["query"]) for r in person_gets()][-1],
                         ("/person/c3%40campus.edu", "findBy=email"))

    def test_roles_left_out_count_as_removed_only_with_update_roles(self):
        seed(identifier="C4", email="c4@campus.edu", roles=["ROLE_CARDHOLDER", "ROLE_OFFICE"])
        self.add("C4", "c4@campus.edu", cardholder=True)
        self.assertEqual(self.diff("C4"), [])
        self.set_option("cloudcard_s", "update_roles", "true")
        self.assertEqual(self.diff("C4"), [("ROLE_OFFICE", "false", "true")])

    def test_cloudcards_own_answer_shape_and_numbers_as_json_text(self):
        # as CloudCard's pages show a person: custom fields as CustomFieldValue
        # objects (or null), roles as objects with a class, numbers as numbers
        answer = {
            "id": 123, "email": "c5@campus.edu", "identifier": "C5", "enabled": True,
            "accountExpired": False, "cardholderGroupName": "Online Students",
            "authorities": [{"class": "com.campuscardtools.myphotoid.Role", "id": 3,
                             "authority": "ROLE_CARDHOLDER"}],
            "customFields": {
                "Upload Date": {"class": "com.campuscardtools.myphotoid.CustomFieldValue",
                                "customField": {"id": 34}, "value": "2017-06-22 11:17AM"},
                "Last Name": None,
                "Class Year": 2027,
                "Ratio": 1.50,
                "Batch": {"class": "com.campuscardtools.myphotoid.CustomFieldValue", "value": "1"},
            },
        }
        mock("behave", method="GET", path_prefix="/person/", status=200,
             body=json.dumps(answer).replace("1.5,", "1.50,"))
        self.add("C5", "c5@campus.edu", "Online Students", True, cardholder=True, office=False,
                 custom={"Upload Date": "2017-06-22 11:17AM", "Last Name": "Lee",
                         "Class Year": 2027, "Ratio": 1.5, "Batch": "2"})
        # (a jsonb column's keys come shortest first)
        self.assertEqual(self.diff("C5"), [("customFields.Batch", "2", "1"),
                                           ("customFields.Ratio", "1.5", "1.50"),
                                           ("customFields.Last Name", "Lee", None)])

    def test_a_null_person_or_query_gives_no_rows(self):
        self.assertEqual(query(self.conn, "SELECT * FROM campus_sync.cloudcard_diff(NULL::people)"), [])
        self.assertEqual(query(self.conn, "SELECT * FROM campus_sync.cloudcard_drift(NULL)"), [])
        # a query of whole rows: a NULL one is skipped
        self.add("C6", "c6@campus.edu")
        self.assertEqual(query(self.conn, DRIFT, ("SELECT p FROM people p UNION ALL SELECT NULL::people",
                                                  "cloudcard_s")),
                         [("C6", "*", "C6", None)])
        self.assertEqual(mock("requests")[-1]["path"], "/person/C6")
        self.assertEqual(len(person_gets()), 1)

    # -- errors ------------------------------------------------------------

    def error_of(self, sql, args=None, conn=None):
        with self.assertRaises(psycopg2.Error) as cm:
            query(conn or self.conn, sql, args)
        return cm.exception

    def test_an_invalid_row_raises_as_cloudcard_payload_does(self):
        self.add("C7", "not an email")
        payload = self.error_of("SELECT campus_sync.cloudcard_payload(p) FROM people p")
        diff = self.error_of("SELECT * FROM people p, LATERAL campus_sync.cloudcard_diff(p) d")
        drift = self.error_of("SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM people')")
        for e in (diff, drift):
            self.assertEqual((e.pgcode, e.diag.message_primary, e.diag.message_detail),
                             (payload.pgcode, payload.diag.message_primary, payload.diag.message_detail))
        self.assertIn("cloudcard_drift: row 1 of the query", drift.diag.context)
        self.assertEqual(person_gets(), [])

    def test_keys_the_path_would_misread_are_per_row_errors_and_nothing_is_sent(self):
        for key, message in (("..", 'CloudCard field "identifier" cannot be ".." as the person\'s key in the URL path'),
                             ("a/b", 'CloudCard field "identifier" cannot contain "/" as the person\'s key in the URL path: "a/b"')):
            with self.subTest(key=key):
                query(self.conn, "TRUNCATE people")
                self.add("OK1", "ok1@campus.edu")
                self.add(key, "k@campus.edu")
                person = self.error_of("SELECT campus_sync.cloudcard_person(%s, 'cloudcard_s')", (key,))
                diff = self.error_of(DIFF, ("cloudcard_s", key))
                drift = self.error_of(DRIFT, ("SELECT * FROM people ORDER BY identifier <> 'OK1'", "cloudcard_s"))
                for e in (person, diff, drift):
                    self.assertEqual((e.pgcode, e.diag.message_primary), ("22P02", message))
                self.assertIn("cloudcard_drift: row 2 of the query", drift.diag.context)
                self.assertEqual(person_gets(), [])

    def test_remote_failures_raise_with_a_clear_message(self):
        self.add("C8", "c8@campus.edu")
        mock("behave", method="GET", path_prefix="/person/", status=503, count=2,
             body='{"message": "maintenance"}')
        for sql in (DIFF % ("'cloudcard_s'", "'C8'"),
                    "SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM people', server => 'cloudcard_s')"):
            e = self.error_of(sql)
            self.assertIsInstance(e, psycopg2.errors.FdwError)
            self.assertEqual(e.diag.message_primary, 'could not look up CloudCard person "C8"')
            self.assertEqual(e.diag.message_detail, "CloudCard answered HTTP 503: maintenance")
        # a refused token (a static one is not renewed)
        mock("config", cloudcard_auth_tokens="other-token")
        e = self.error_of(DIFF, ("cloudcard_s", "C8"))
        self.assertEqual(e.diag.message_detail, "CloudCard answered HTTP 401: Unauthorized")
        mock("config", cloudcard_auth_tokens=STATIC_TOKEN)
        # no answer within timeout_ms
        self.set_option("cloudcard_s", "timeout_ms", "300")
        mock("behave", method="GET", path_prefix="/person/", delay_ms=2000, count=1)
        e = self.error_of(DIFF, ("cloudcard_s", "C8"))
        self.assertIsInstance(e, psycopg2.errors.ConnectionFailure)
        self.assertTrue(e.diag.message_detail.startswith("no complete answer within timeout_ms (300 ms)"),
                        e.diag.message_detail)
        # a 200 that is not a person
        mock("behave", method="GET", path_prefix="/person/", status=200, count=1,
             body="<html><body>Welcome</body></html>")
        e = self.error_of(DIFF, ("cloudcard_s", "C8"))
        self.assertEqual(e.diag.message_primary, 'could not compare CloudCard person "C8"')
        self.assertEqual(e.diag.message_detail,
                         "CloudCard answered HTTP 200 to GET /person/{key} with Welcome, not a person (a JSON object).")
        # and afterwards the backend looks up as before
        self.assertEqual(self.diff("C8"), [("*", "C8", None)])

    def test_configuration_problems_raise(self):
        self.add("C9", "c9@campus.edu")
        for server, pgcode in (("nosuch", "42704"), ("opscom", "42809")):
            with self.subTest(server=server):
                for sql in ("SELECT * FROM people p, LATERAL campus_sync.cloudcard_diff(p, server => %s) d",
                            "SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM people', server => %s)"):
                    self.assertEqual(self.error_of(sql, (server,)).pgcode, pgcode)
        query(self.conn, "CREATE SERVER cloudcard_nomap FOREIGN DATA WRAPPER campus_sync "
                         "OPTIONS (service 'cloudcard', url %s)", (MOCK_API,))
        self.addCleanup(query, self.conn, "DROP SERVER cloudcard_nomap")
        e = self.error_of("SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM people', server => 'cloudcard_nomap')")
        self.assertEqual((e.pgcode, e.diag.message_primary),
                         ("42704", 'no user mapping for role "postgres" on server "cloudcard_nomap"'))
        e = self.error_of("SELECT * FROM campus_sync.cloudcard_drift('DELETE FROM people', server => 'cloudcard_s')")
        self.assertEqual(e.diag.message_primary,
                         "the query given to cloudcard_drift must be one statement that returns rows")
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM people"), 1)
        # a paused server refuses, as the other ad hoc calls do
        query(self.conn, "SELECT campus_sync.pause('cloudcard_s', 'window')")
        for sql in (DIFF % ("'cloudcard_s'", "'C9'"),
                    "SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM people', server => 'cloudcard_s')"):
            self.assertIsInstance(self.error_of(sql), psycopg2.errors.ObjectNotInPrerequisiteState)
        self.assertEqual(person_gets(), [])

    def test_a_remote_echoing_the_token_is_redacted(self):
        body = ('{"identifier": "H1", "email": "${token}@campus.edu", "cardholderGroupName": "${token:u}", '
                '"customFields": {"Note": {"value": "x ${token:slash} y"}}, "authorities": []}')
        mock("behave", method="GET", path_prefix="/person/", status=200, body=body, echo=True)
        self.add("H1", "h1@campus.edu", "Staff", custom={"Note": "n"})
        expected = [("email", "h1@campus.edu", "[redacted]@campus.edu"),
                    ("cardholderGroupName", "Staff", "[redacted]"),
                    ("customFields.Note", "n", "x [redacted] y")]
        self.assertEqual(self.diff("H1", "cloudcard_s"), expected)
        self.assertEqual(self.diff("H1", "cloudcard"), expected)       # a session token of the PAT
        self.assertEqual(query(self.conn, DRIFT, ("SELECT * FROM people", "cloudcard")),
                         sorted(("H1",) + row for row in expected))
        # and in an error
        mock("clear_behaviours")
        mock("behave", method="GET", path_prefix="/person/", status=500, echo=True,
             body='{"message": "bad token ${token}"}')
        e = self.error_of(DIFF, ("cloudcard", "H1"))
        self.assertEqual(e.diag.message_detail, "CloudCard answered HTTP 500: bad token [redacted]")
        tokens = [STATIC_TOKEN, CLOUDCARD_PAT] + mock("session_tokens")
        self.assertEqual(len(tokens), 3)
        for token in tokens:
            self.assertNotIn(token, str(e) + str(e.diag.message_detail))

    # -- many at once ------------------------------------------------------

    def fill(self, n, prefix="D"):
        query(self.conn, "INSERT INTO people (identifier, email, cardholder_group_name) "
                         "SELECT %s || g, 'd' || g || '@campus.edu', 'Students' FROM generate_series(1, %s) g",
              (prefix, n))
        self.assertEqual(scalar(self.conn, "SELECT count(*) FILTER (WHERE r.ok) FROM people p, "
                                           "LATERAL campus_sync.cloudcard_upsert(p, server => 'cloudcard_s') r"), n)

    def test_the_set_form_overlaps_its_look_ups(self):
        n, delay_s = 200, 0.1
        self.set_option("cloudcard_s", "concurrency", "8")
        self.fill(n)
        # every fourth person changed here since
        query(self.conn, "UPDATE people SET cardholder_group_name = 'Alumni' "
                         "WHERE right(identifier, 1) IN ('0', '4', '8')")
        changed = scalar(self.conn, "SELECT count(*) FROM people WHERE cardholder_group_name = 'Alumni'")
        mock("behave", method="GET", path_prefix="/person/", delay_ms=int(delay_s * 1000))
        seq = last_seq()
        started = time.monotonic()
        rows = query(self.conn, DRIFT, ("SELECT * FROM people", "cloudcard_s"))
        elapsed = time.monotonic() - started
        print(f"\n    {n} look-ups at concurrency 8, {delay_s * 1000:.0f} ms each: {elapsed:.2f} s "
              f"(one after another: {n * delay_s:.0f} s)", end=" ")
        self.assertEqual(rows, sorted(query(self.conn, "SELECT identifier, 'cardholderGroupName', 'Alumni', 'Students' "
                                                       "FROM people WHERE cardholder_group_name = 'Alumni'")))
        self.assertEqual(len(rows), changed)
        gets = person_gets(seq)
        self.assertEqual(len(gets), n)
        self.assertEqual(sorted(r["path"] for r in gets), sorted(f"/person/D{g}" for g in range(1, n + 1)))
        self.assertEqual(len(mock("requests", since=seq)), n)    # GETs only
        self.assertLess(elapsed, n * delay_s / 4)
        self.assertGreaterEqual(elapsed, n * delay_s / 8 - MARGIN_S)
        self.assertEqual(most_at_once(gets), 8)
        # the LATERAL form, for comparison: one at a time
        seq = last_seq()
        started = time.monotonic()
        self.assertEqual(len(query(self.conn, "SELECT d.* FROM people p, "
                                              "LATERAL campus_sync.cloudcard_diff(p, server => 'cloudcard_s') d "
                                              "WHERE substr(p.identifier, 2)::int <= 10")),
                         sum(1 for r in rows if int(r[0][1:]) <= 10))
        self.assertGreaterEqual(time.monotonic() - started, 10 * delay_s - MARGIN_S)
        self.assertEqual(len(person_gets(seq)), 10)

    def test_connections_are_kept_between_calls(self):
        self.fill(20)
        self.set_option("cloudcard_s", "concurrency", "4")
        mock("behave", method="GET", path_prefix="/person/", delay_ms=50)   # 4 at once: 4 connections
        query(self.conn, DRIFT, ("SELECT * FROM people", "cloudcard_s"))
        opened = mock("stats")["connections_total"]
        self.assertLessEqual(opened, 4 + 1)
        query(self.conn, DRIFT, ("SELECT * FROM people", "cloudcard_s"))
        query(self.conn, "SELECT d.* FROM people p, LATERAL campus_sync.cloudcard_diff(p, server => 'cloudcard_s') d")
        self.assertEqual(mock("stats")["connections_total"], opened)

    def test_max_rate_is_kept(self):
        self.fill(11)
        self.set_option("cloudcard_s", "max_rate", "10")
        for form, sql in (("drift", "SELECT count(*) FROM campus_sync.cloudcard_drift('SELECT * FROM people', "
                                    "server => 'cloudcard_s')"),
                          ("diff", "SELECT count(d.*) FROM people p, "
                                   "LATERAL campus_sync.cloudcard_diff(p, server => 'cloudcard_s') d")):
            with self.subTest(form=form):
                seq = last_seq()
                self.assertEqual(scalar(self.conn, sql), 0)
                times = sorted(r["t"] for r in person_gets(seq))
                gaps = [b - a for a, b in zip(times, times[1:])]
                self.assertEqual(len(times), 11)
                self.assertGreaterEqual(min(gaps), 0.1 - MARGIN_S, gaps)
                self.assertGreaterEqual(times[-1] - times[0], 1.0 - MARGIN_S)

    def test_statement_timeout_and_cancel_interrupt_the_set_form(self):
        self.fill(40)
        mock("behave", method="GET", path_prefix="/person/", delay_ms=5000)
        victim = connect(DB)
        self.addCleanup(victim.close)
        query(victim, "SET statement_timeout = '500ms'")
        started = time.monotonic()
        e = self.error_of("SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM people', server => 'cloudcard_s')",
                          conn=victim)
        self.assertIsInstance(e, psycopg2.errors.QueryCanceled)
        self.assertLess(time.monotonic() - started, 1.5)
        query(victim, "RESET statement_timeout")

        admin = connect(DB)
        self.addCleanup(admin.close)
        pid = victim.get_backend_pid()
        outcome = {}

        def run():
            try:
                query(victim, "SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM people', "
                              "server => 'cloudcard_s')")
            except psycopg2.Error as err:
                outcome["error"] = err
        t = threading.Thread(target=run)
        t.start()
        wait = time.monotonic() + 5
        while len(person_gets()) < 8 + 8 and time.monotonic() < wait:    # 8 of the run above, 8 of this one
            time.sleep(0.05)
        self.assertEqual(len(person_gets()), 16)
        cancelled_at = time.monotonic()
        self.assertTrue(scalar(admin, "SELECT pg_cancel_backend(%s)", (pid,)))
        t.join(timeout=5)
        self.assertFalse(t.is_alive(), "the cancelled call did not return")
        self.assertIsInstance(outcome.get("error"), psycopg2.errors.QueryCanceled)
        self.assertLess(time.monotonic() - cancelled_at, 1.0)
        # the backend is fine afterwards
        mock("clear_behaviours")
        self.assertEqual(query(victim, "SELECT count(*) FROM campus_sync.cloudcard_drift('SELECT * FROM people', "
                                       "server => 'cloudcard_s')"), [(0,)])

    def test_the_readmes_recipe_requeues_exactly_the_drifted_people(self):
        query(self.conn, "DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox; "
                         "DROP TABLE IF EXISTS roster; "
                         "CREATE TABLE roster (banner_id text, email text, cardholder_group_name text); "
                         "INSERT INTO roster SELECT 'B' || g, 'b' || g || '@campus.edu', 'Students' "
                         "FROM generate_series(1, 10) g")
        self.addCleanup(query, self.conn, "DROP TABLE roster")
        mapping = '{"identifier": "banner_id"}'
        self.assertEqual(scalar(self.conn, "SELECT count(*) FILTER (WHERE r.ok) FROM roster p, LATERAL "
                                           "campus_sync.cloudcard_upsert(p, %s, 'cloudcard_s') r", (mapping,)), 10)
        query(self.conn, "UPDATE roster SET cardholder_group_name = 'Staff' WHERE banner_id = 'B2'; "
                         "UPDATE roster SET email = 'new5@campus.edu' WHERE banner_id = 'B5'; "
                         "INSERT INTO roster VALUES ('B11', 'b11@campus.edu', 'Students')")
        # someone edits B3 in CloudCard (here: through another server, by email):
        # the delivered-state memory of cloudcard_s still has B3's body as sent
        self.assertEqual(scalar(self.conn, "SELECT r.ok FROM (SELECT 'B3' AS banner_id, 'b3@campus.edu' AS email, "
                                           "'Alumni' AS cardholder_group_name) p, LATERAL "
                                           "campus_sync.cloudcard_upsert(p, %s, 'cloudcard_e') r", (mapping,)), True)
        self.assertIsNone(scalar(self.conn, "SELECT campus_sync.enqueue('cloudcard_s', p, %s) FROM roster p "
                                            "WHERE banner_id = 'B3'", (mapping,)))
        # the recipe: what drifted, forgotten, queued again
        query(self.conn, """
            CREATE TEMP TABLE drifted AS
              SELECT DISTINCT person_key FROM campus_sync.cloudcard_drift('SELECT * FROM roster', %(m)s, 'cloudcard_s');
            SELECT campus_sync.forget('cloudcard_s', person_key) FROM drifted;
            SELECT campus_sync.enqueue('cloudcard_s', p, %(m)s)
            FROM roster p JOIN drifted d ON d.person_key = p.banner_id;
            DROP TABLE drifted""", {"m": mapping})
        self.assertEqual(query(self.conn, "SELECT person_key, state FROM campus_sync.queue ORDER BY 1"),
                         [("B11", "pending"), ("B2", "pending"), ("B3", "pending"), ("B5", "pending")])
        self.assertEqual(query(self.conn, "SELECT delivered, failed FROM campus_sync.deliver('cloudcard_s')"),
                         [(4, 0)])
        self.assertEqual(query(self.conn, "SELECT * FROM campus_sync.cloudcard_drift('SELECT * FROM roster', "
                                          "%s, 'cloudcard_s')", (mapping,)), [])

    def test_the_query_may_deliver_while_look_ups_are_in_flight(self):
        """deliver() in the caller's query finds the look-ups' finished
        transfers beside its own, and leaves them to the look-ups (it took
        one for its own item, and the backend crashed)."""
        query(self.conn, "DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox")
        query(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM (SELECT 'U1' AS unique_id, "
                         "'Ann' AS first_name, 'Lee' AS last_name, 'u1@campus.edu' AS email) p")
        mock("behave", method="GET", path_prefix="/person/", delay_ms=200)
        mock("behave", path_prefix="/api/OC_TOMA", delay_ms=500)
        rows = query(self.conn, """
            SELECT count(*), count(*) FILTER (WHERE field = '*') FROM campus_sync.cloudcard_drift($$
              SELECT 'X' || g AS identifier,
                     CASE WHEN g = 70 THEN (SELECT delivered FROM campus_sync.deliver('opscom')) END AS delivered
              FROM generate_series(1, 100) g$$, server => 'cloudcard_s')""")
        self.assertEqual(rows, [(100, 100)])
        self.assertEqual(len(person_gets()), 100)
        self.assertEqual(query(self.conn, "SELECT person_key, state FROM campus_sync.queue"), [("U1", "delivered")])

    def test_memory_is_bounded_by_what_is_in_flight(self):
        """2,000 people whose answers are 256 KB each: the set form keeps
        the answers in flight, not all of them (500 MB)."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), BigPerson)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        query(self.conn, f"""
            CREATE SERVER big FOREIGN DATA WRAPPER campus_sync
              OPTIONS (service 'cloudcard', url '{url}', concurrency '8');
            CREATE USER MAPPING FOR PUBLIC SERVER big OPTIONS (auth_token 'big-token')""")
        self.addCleanup(query, self.conn, "DROP SERVER big CASCADE")
        runner = connect(DB)
        self.addCleanup(runner.close)
        pid = scalar(runner, "SELECT pg_backend_pid()")
        drift = ("SELECT count(*) FROM campus_sync.cloudcard_drift("
                 "'SELECT ''M'' || g AS identifier, ''m'' || g || ''@campus.edu'' AS email "
                 "FROM generate_series(1, %s) g', server => 'big')")
        self.assertEqual(scalar(runner, drift, (20,)), 0)                   # warm up
        base = memory_kb(pid, "RssAnon")
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], memory_kb(pid, "RssAnon"))
                time.sleep(0.01)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        BigPerson.served = 0
        self.assertEqual(scalar(runner, drift, (2000,)), 0)
        done.set()
        sampler.join()
        growth_mb = (peak[0] - base) / 1024
        print(f"\n    2000 x 256 KB answers compared; private memory peak +{growth_mb:.0f} MB", end=" ")
        self.assertEqual(BigPerson.served, 2000)
        if not SANITIZED:
            self.assertLess(growth_mb, 64)


def most_at_once(requests):
    """The most requests the mock was answering at one time."""
    events = sorted([(r["t"], 1) for r in requests] + [(r["t_done"], -1) for r in requests],
                    key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def memory_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class BigPerson(BaseHTTPRequestHandler):
    """GET /person/M<n>: the person M<n> as the row has it, with a 256 KB
    custom field the row does not send."""
    protocol_version = "HTTP/1.1"
    served = 0
    lock = threading.Lock()

    def do_GET(self):
        key = self.path.split("?")[0].rsplit("/", 1)[-1]
        body = json.dumps({"identifier": key, "email": key.lower() + "@campus.edu",
                           "customFields": {"Notes": "x" * (256 * 1024)}}).encode()
        with BigPerson.lock:
            BigPerson.served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    unittest.main()
