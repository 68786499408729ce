"""CloudCard and OPS-COM as their own public clients show them (issue 9):
the mock in its realistic mode (/_mock/config realistic=true) and, where
the behaviour differs, in its default mode too.  Every test asserts the
exact requests the remote received (paths, query strings, bodies) and, for
CloudCard's sessions, the exchanges, logouts and live sessions left.

The suites' shared cluster is not preloaded: each backend keeps its own
session and logs it out as it exits.  SharedSessionTest runs a preloaded
cluster of its own, where one session serves every backend.
"""
import base64
import json
import threading
import time
import unittest
import urllib.parse

from cluster import Cluster
from helpers import (CLOUDCARD_PAT, MOCK_API, OPSCOM_TOKEN, connect, create_database, mock, query,
                     scalar, wait_for)

DB = "cs_vendor"
PUSH_PATH = "/api/OC_TOMA/v1/profiles/push"
TYPES_PATH = "/api/OC_TOMA/v1/profiles/types/list"
# makes every session token recognisable in the server logs (test/secrets.txt)
TOKEN_PREFIX = 'Leaky/Token"1x'

UPSERT = ("SELECT r.ok, r.http_status, r.remote_id, r.error "
          "FROM (SELECT %s::text AS identifier, %s::text AS email) c, "
          "LATERAL campus_sync.cloudcard_upsert(c) r")
LINK = ("SELECT campus_sync.cloudcard_login_link(c) "
        "FROM (SELECT %s::text AS identifier, %s::text AS email) c")
PUSH = ("SELECT r.ok, r.http_status, r.remote_id, r.error "
        "FROM (SELECT %s::text AS unique_id, 'Ada'::text AS first_name, 'Lee'::text AS last_name, "
        "'ada@campus.edu'::text AS email) p, LATERAL campus_sync.opscom_push(p) r")


def cc_requests(since=0):
    """The CloudCard requests after seq since, as (method, path, query)
    (the token exchange included)."""
    return [(r["method"], r["path"], r["query"]) for r in mock("requests", since=since)
            if not r["path"].startswith("/api/OC_TOMA")]


def last_seq():
    requests = mock("requests")
    return requests[-1]["seq"] if requests else 0


def sessions():
    return mock("cloudcard_sessions")


def close_and_wait(conn):
    """Closes conn once its backend has exited (as it exits, it logs its
    CloudCard sessions out)."""
    if conn.closed:
        return
    pid = scalar(conn, "SELECT pg_backend_pid()")
    conn.close()
    monitor = connect("postgres")
    try:
        wait_for(lambda: not scalar(monitor, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)),
                 10, what=f"backend {pid} to exit")
    finally:
        monitor.close()


class VendorCase(unittest.TestCase):
    """A database of the suites' cluster with the servers opscom and
    cloudcard on the mock; the mock realistic, session tokens marked."""

    @classmethod
    def setUpClass(cls):
        create_database(DB).close()

    def setUp(self):
        mock("reset")
        mock("config", realistic=True, session_token_prefix=TOKEN_PREFIX)
        self.conn = self.new_connection()
        query(self.conn, "ALTER SERVER cloudcard OPTIONS (SET url %s)", (MOCK_API,))
        query(self.conn, "ALTER SERVER opscom OPTIONS (SET url %s)", (MOCK_API,))
        if scalar(self.conn, "SELECT 'api=people' = ANY(srvoptions) FROM pg_foreign_server WHERE srvname = 'cloudcard'"):
            query(self.conn, "ALTER SERVER cloudcard OPTIONS (DROP api)")

    def new_connection(self):
        """A connection whose backend has exited (logged its sessions out)
        when the test ends: the next test's counts are its own."""
        conn = connect(DB)
        self.addCleanup(close_and_wait, conn)
        return conn

    def upsert(self, identifier, email, conn=None):
        return query(conn or self.conn, UPSERT, (identifier, email))[0]


class CloudCardPathsTest(VendorCase):

    def test_1_a_url_with_or_without_api_reaches_the_same_endpoints(self):
        mock("cloudcard_seed", {"identifier": "E1", "email": "e1@foo.edu"})
        for n, url in enumerate([MOCK_API, MOCK_API + "/", MOCK_API + "/api", MOCK_API + "/api/",
                                 MOCK_API + "/api//"]):
            query(self.conn, "ALTER SERVER cloudcard OPTIONS (SET url %s)", (url,))
            since = last_seq()
            ok, status, remote_id, error = self.upsert(f"N{n}", f"n{n}@foo.edu")
            self.assertEqual((ok, status, error), (True, 201, None), url)
            self.assertEqual(self.upsert("E1", "e1@foo.edu")[:2], (True, 202), url)
            link = scalar(self.conn, LINK, ("E1", "e1@foo.edu"))
            self.assertTrue(link.startswith("https://app.cloudcard.test/#/login?access_token="), link)
            self.assertEqual(scalar(self.conn, "SELECT campus_sync.cloudcard_person('E1') ->> 'email'"),
                             "e1@foo.edu")
            paths = [(m, p) for m, p, _ in cc_requests(since)]
            # a server altered: its session token is exchanged anew
            self.assertEqual(paths, [
                ("POST", "/authentication-token"),
                ("PUT", f"/person/N{n}"), ("POST", "/person"),
                ("PUT", "/person/E1"),
                ("PUT", "/person/E1"), ("GET", "/people/E1/with-links"),
                ("GET", "/person/E1")], url)
        # and the deprecated people API, under the same url with /api
        query(self.conn, "ALTER SERVER cloudcard OPTIONS (SET url %s, ADD api 'people')", (MOCK_API + "/api",))
        mock("config", cloudcard_deprecated_endpoints=True)
        since = last_seq()
        self.assertEqual(self.upsert("P1", "p1@foo.edu")[:2], (True, 201))
        self.assertEqual([p for _, p, _ in cc_requests(since)], ["/authentication-token", "/api/people"])
        self.assertEqual(mock("stats")["api_api_requests"], 0)

    def test_2_the_create_asks_for_the_resource_so_remote_id_is_the_new_id(self):
        ok, status, remote_id, error = self.upsert("A1", "a1@foo.edu")
        self.assertEqual((ok, status, error), (True, 201, None))
        person = [p for p in mock("cloudcard_people") if p["identifier"] == "A1"][0]
        self.assertEqual(remote_id, str(person["id"]))
        create = [r for r in mock("requests") if r["method"] == "POST" and r["path"] == "/person"][0]
        self.assertEqual(create["params"], {"sendInvitation": "false", "renderResource": "true"})
        self.assertEqual(create["json"], {"email": "a1@foo.edu", "identifier": "A1"})
        # the mock answers without a body unless asked: the request is what matters
        self.assertEqual(create["status"], 201)

    def test_3_a_key_with_a_slash_is_refused_before_sending(self):
        since = last_seq()
        ok, status, remote_id, error = self.upsert("a/b", "ab@foo.edu")
        self.assertFalse(ok)
        self.assertIsNone(status)
        self.assertIn('cannot contain "/" as the person\'s key in the URL path', error)
        self.assertEqual([r for r in cc_requests(since) if r[1] != "/authentication-token"], [])


class CloudCardEmailOnlyTest(VendorCase):
    """A person CloudCard knows by email only (an office user made it)."""

    def test_1_is_updated_by_email_which_sets_the_identifier(self):
        seeded = mock("cloudcard_seed", {"email": "office@foo.edu"})
        since = last_seq()
        ok, status, remote_id, error = self.upsert("A777", "office@foo.edu")
        self.assertEqual((ok, status, error), (True, 202, None))
        self.assertEqual(remote_id, str(seeded["id"]))
        self.assertEqual(cc_requests(since), [
            ("POST", "/authentication-token", ""),
            ("PUT", "/person/A777", "findBy=identifier&updateRoles=false"),
            ("POST", "/person", "sendInvitation=false&renderResource=true"),
            ("PUT", "/person/office%40foo.edu", "findBy=email&updateRoles=false")])
        self.assertEqual([r["status"] for r in mock("requests", since=since)], [200, 404, 400, 202])
        by_email = mock("requests", since=since)[-1]
        self.assertEqual(by_email["json"], {"email": "office@foo.edu", "identifier": "A777"})
        person = [p for p in mock("cloudcard_people") if p["email"] == "office@foo.edu"][0]
        self.assertEqual(person["identifier"], "A777")
        # from now on CloudCard knows it by identifier: one PUT
        since = last_seq()
        self.assertEqual(self.upsert("A777", "office@foo.edu")[:2], (True, 202))
        self.assertEqual(cc_requests(since), [("PUT", "/person/A777", "findBy=identifier&updateRoles=false")])

    def test_2_a_second_refusal_names_both_answers_and_nothing_loops(self):
        mock("cloudcard_seed", {"email": "office@foo.edu"})
        mock("behave", method="PUT", path_prefix="/person/office%40foo.edu", status=409,
             body='{"message": "Conflict"}', count=1)
        since = last_seq()
        ok, status, remote_id, error = self.upsert("B2", "office@foo.edu")
        self.assertEqual((ok, status, remote_id), (False, 409, None))
        self.assertEqual(error,
                         "CloudCard answered HTTP 400 to the create (POST /person): Person already exists; "
                         "then CloudCard answered HTTP 409 to the update by email "
                         "(PUT /person/{email}?findBy=email): Conflict")
        self.assertEqual([(m, p) for m, p, _ in cc_requests(since)], [
            ("POST", "/authentication-token"), ("PUT", "/person/B2"), ("POST", "/person"),
            ("PUT", "/person/office%40foo.edu")])

    def test_3_without_an_email_the_create_refusal_stands(self):
        mock("behave", method="POST", path_prefix="/person", status=400,
             body='{"message": "Person already exists"}', count=1)
        since = last_seq()
        ok, status, remote_id, error = query(self.conn, """
            SELECT r.ok, r.http_status, r.remote_id, r.error
            FROM (SELECT 'B1'::text AS identifier) c, LATERAL campus_sync.cloudcard_upsert(c) r""")[0]
        self.assertEqual((ok, status), (False, 400))
        self.assertEqual(error, "CloudCard answered HTTP 400 to the create (POST /person): Person already exists")
        self.assertEqual([(m, p) for m, p, _ in cc_requests(since)], [
            ("POST", "/authentication-token"), ("PUT", "/person/B1"), ("POST", "/person")])


class CloudCardSessionTest(VendorCase):
    """Session tokens: renewed on 401 or 403, once; a refused PAT; logouts."""

    def test_1_an_expired_session_answered_403_is_renewed_once(self):
        self.assertEqual(self.upsert("S1", "s1@foo.edu")[:2], (True, 201))
        mock("expire_tokens")
        since = last_seq()
        self.assertEqual(self.upsert("S1", "s1@foo.edu")[:2], (True, 202))
        self.assertEqual([(m, p, r) for (m, p, _), r in
                          zip(cc_requests(since), [r["status"] for r in mock("requests", since=since)])], [
            ("PUT", "/person/S1", 403), ("POST", "/authentication-token", 200), ("PUT", "/person/S1", 202)])
        # and 401 the same way
        mock("config", cloudcard_expired_status=401)
        mock("expire_tokens")
        since = last_seq()
        self.assertEqual(self.upsert("S1", "s1@foo.edu")[:2], (True, 202))
        self.assertEqual([r["status"] for r in mock("requests", since=since)], [401, 200, 202])
        self.assertEqual(sessions()["exchanges"], 3)

    def test_0_an_exchange_answered_200_or_201_is_taken(self):
        # CloudCard's own clients see 200 (the realistic mode); its pages say 201
        for status in (200, 201):
            mock("config", cloudcard_exchange_status=status)
            conn = self.new_connection()      # a session of its own: it exchanges
            since = last_seq()
            self.assertEqual(self.upsert(f"X{status}", f"x{status}@foo.edu", conn)[:2], (True, 201))
            self.assertEqual([(r["path"], r["status"]) for r in mock("requests", since=since)][:1],
                             [("/authentication-token", status)])

    def test_2_a_token_refused_again_is_an_error_not_a_loop(self):
        self.upsert("S2", "s2@foo.edu")
        mock("behave", method="PUT", path_prefix="/person/S2", status=403, body='{"message": "Forbidden"}', count=5)
        since = last_seq()
        ok, status, remote_id, error = self.upsert("S2", "s2@foo.edu")
        self.assertEqual((ok, status, error), (False, 403, "CloudCard answered HTTP 403: Forbidden"))
        self.assertEqual([(m, p) for m, p, _ in cc_requests(since)], [
            ("PUT", "/person/S2"), ("POST", "/authentication-token"), ("PUT", "/person/S2")])

    def test_3_a_refused_pat_says_to_create_a_new_one(self):
        mock("config", cloudcard_pats=["some-other-pat"])
        conn = self.new_connection()          # no session of its own yet
        ok, status, remote_id, error = self.upsert("S3", "s3@foo.edu", conn)
        self.assertEqual((ok, status), (False, 401))
        self.assertEqual(error, "persistent access token refused; create a new one in CloudCard and set it as "
                                "the user mapping's persistent_access_token (CloudCard answered HTTP 401 to "
                                "the token exchange)")

    def test_4_twenty_sessions_log_out_as_they_end_naming_their_token(self):
        for i in range(20):
            conn = connect(DB)
            self.assertEqual(self.upsert(f"L{i}", f"l{i}@foo.edu", conn)[:2], (True, 201))
            close_and_wait(conn)
        self.assertEqual(sessions(), {"exchanges": 20, "logouts": 20, "logout_all": 0, "live": 0})
        issued = mock("session_tokens")
        logouts = [r for r in mock("requests") if r["path"] == "/person/me/logout"]
        self.assertEqual(len(logouts), 20)
        for r in logouts:
            # the body names the session, and it is the one the header uses
            self.assertEqual(r["json"], {"authenticationToken": r["headers"]["x-auth-token"]})
            self.assertIn(r["json"]["authenticationToken"], issued)
            self.assertEqual(r["status"], 204)
        self.assertEqual(len({r["json"]["authenticationToken"] for r in logouts}), 20)
        # no token in what a DBA can see
        conn = connect(DB)
        self.addCleanup(conn.close)
        shown = json.dumps(query(conn, "SELECT * FROM pg_stat_activity"), default=str)
        for token in issued:
            self.assertNotIn(token, shown)


class CloudCardLinkTest(VendorCase):

    def test_1_the_link_comes_from_with_links_after_the_upsert(self):
        since = last_seq()
        link = scalar(self.conn, LINK, ("K1", "k1@foo.edu"))
        self.assertTrue(link.startswith("https://app.cloudcard.test/#/login?access_token="), link)
        self.assertEqual(cc_requests(since), [
            ("POST", "/authentication-token", ""),
            ("PUT", "/person/K1", "findBy=identifier&updateRoles=false"),
            ("POST", "/person", "sendInvitation=false&renderResource=true"),
            ("GET", "/people/K1/with-links", "findBy=identifier")])

    def test_2_the_deprecated_call_only_where_with_links_is_missing(self):
        mock("config", cloudcard_with_links=False, cloudcard_deprecated_endpoints=True)
        mock("cloudcard_seed", {"identifier": "K2", "email": "k2@foo.edu"})
        since = last_seq()
        link = scalar(self.conn, LINK, ("K2", "k2@foo.edu"))
        self.assertTrue(link.startswith("https://app.cloudcard.test/#/login?access_token="), link)
        self.assertEqual(cc_requests(since), [
            ("POST", "/authentication-token", ""),
            ("PUT", "/person/K2", "findBy=identifier&updateRoles=false"),
            ("GET", "/people/K2/with-links", "findBy=identifier"),
            ("POST", "/api/people", "allowUpdate=true&getLoginLink=true&sendInvitation=false")])

    def test_3_neither_way_is_a_clear_error(self):
        mock("config", cloudcard_with_links=False)
        with self.assertRaises(Exception) as cm:
            scalar(self.conn, LINK, ("K3", "k3@foo.edu"))
        self.assertIn("CloudCard has no login link endpoint (GET /people/{key}/with-links answered 404) and "
                      "refused the deprecated POST /api/people?getLoginLink=true (HTTP 403): the organisation "
                      "has switched deprecated endpoints off", str(cm.exception))

    def test_4_a_people_api_server_refused_is_told_to_use_person(self):
        query(self.conn, "ALTER SERVER cloudcard OPTIONS (ADD api 'people')")
        for status in (403, 404):
            mock("config", cloudcard_deprecated_status=status)
            ok, http_status, remote_id, error = self.upsert("D1", "d1@foo.edu")
            self.assertEqual((ok, http_status), (False, status))
            self.assertEqual(error, f"CloudCard refused the deprecated people API for this organisation "
                                    f"(POST /api/people answered HTTP {status}); use api 'person', the default: "
                                    f"ALTER SERVER cloudcard OPTIONS (DROP api)")


class OpsComAnswersTest(VendorCase):

    def test_1_an_error_code_is_read_on_any_status(self):
        query(self.conn, "ALTER USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (SET api_token 'wrong-token-not-valid-42')")
        self.addCleanup(query, self.conn, "ALTER USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (SET api_token %s)",
                        (OPSCOM_TOKEN,))
        ok, status, remote_id, error = query(self.conn, PUSH, ("U1",))[0]
        self.assertEqual((ok, status), (False, 400))
        self.assertEqual(error, "OPS-COM error 9002 (HTTP 400): API token '[redacted]' has no permission")
        # a 503 with an ErrorCode is still temporary (queued: retried), and says the code
        mock("behave", method="POST", path_prefix=PUSH_PATH, status=503,
             body='{"ErrorCode": 1, "ErrorMessage": "maintenance"}')
        query(self.conn, "SELECT campus_sync.enqueue('opscom', p) FROM (SELECT 'U2'::text AS unique_id, "
                         "'Ada'::text AS first_name, 'Lee'::text AS last_name) p")
        query(self.conn, "SELECT * FROM campus_sync.deliver('opscom')")
        state, error = query(self.conn, "SELECT state, last_error FROM campus_sync.queue WHERE person_key = 'U2'")[0]
        self.assertEqual((state, error), ("retrying", "OPS-COM error 1 (HTTP 503): maintenance"))
        query(self.conn, "DELETE FROM campus_sync.queue_items")

    def test_2_reference_id_and_user_type_ids_may_be_strings(self):
        for strings in (True, False):
            mock("config", opscom_reference_id_string=strings, opscom_user_type_ids_string=strings)
            ok, status, remote_id, error = query(self.conn, PUSH, (f"R{int(strings)}",))[0]
            self.assertEqual((ok, status, error), (True, 200, None))
            self.assertRegex(remote_id, r"^[0-9]+$")
            self.assertEqual(query(self.conn, "SELECT id, type_name FROM campus_sync.opscom_user_types() ORDER BY id"),
                             [("6", "Student"), ("7", "Staff"), ("8", "Faculty")])

    def test_3_a_proxy_page_or_no_body_on_5xx_is_its_first_line(self):
        page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n</body>\n</html>\n"
        for i, (body, content_type, said) in enumerate(((page, "text/html", "502 Bad Gateway"),
                                                         ("", "text/plain", "(empty body)"),
                                                         ("\n \n", "text/plain", "(a page with no text)"))):
            mock("clear_behaviours")
            mock("behave", status=502, body_base64=base64.b64encode(body.encode()).decode(),
                 content_type=content_type)
            ok, status, remote_id, error = query(self.conn, PUSH, ("H1",))[0]
            self.assertEqual((ok, status, error), (False, 502, f"OPS-COM answered HTTP 502: {said}"))
            # CloudCard's token exchange, then (a session had) its update
            conn = self.new_connection()
            ok, status, remote_id, error = self.upsert("H1", "h1@foo.edu", conn)
            self.assertEqual((ok, status, error),
                             (False, 502, f"CloudCard answered HTTP 502 to the authentication-token exchange: {said}"))
            mock("clear_behaviours")
            self.assertEqual(self.upsert(f"C{i}", f"c{i}@foo.edu", conn)[:2], (True, 201))
            mock("behave", path_prefix="/person", status=502, body_base64=base64.b64encode(body.encode()).decode(),
                 content_type=content_type)
            ok, status, remote_id, error = self.upsert(f"C{i}", f"c{i}@foo.edu", conn)
            self.assertEqual((ok, status, error), (False, 502, f"CloudCard answered HTTP 502: {said}"))


class CheckServerTest(VendorCase):

    def check(self, server=None):
        return {r[0]: r[1:] for r in query(self.conn, "SELECT * FROM campus_sync.check_server(%s)", (server,))}

    def test_1_good_servers_and_nothing_changes_remotely(self):
        people, profiles = mock("cloudcard_people"), mock("opscom_profiles")
        rows = self.check()
        self.assertEqual(set(rows), {"opscom", "cloudcard"})
        ok, status, detail, hint = rows["opscom"]
        self.assertEqual((ok, status, hint), (True, 200, None))
        self.assertEqual(detail, f"apiToken accepted: 3 user types at {MOCK_API}{TYPES_PATH}")
        ok, status, detail, hint = rows["cloudcard"]
        self.assertEqual((ok, status, hint), (True, 404, None))
        self.assertRegex(detail, r"^PAT accepted, session valid until \d{4}-\d\d-\d\dT\S+; GET /person answered "
                                 r"HTTP 404; the check's session was logged out$")
        self.assertEqual(sessions(), {"exchanges": 1, "logouts": 1, "logout_all": 0, "live": 0})
        self.assertEqual((mock("cloudcard_people"), mock("opscom_profiles")), (people, profiles))
        self.assertEqual([(m, p) for m, p, _ in cc_requests()], [
            ("POST", "/authentication-token"), ("GET", "/person/campus-sync-check"),
            ("POST", "/person/me/logout")])

    def test_2_a_wrong_pat(self):
        query(self.conn, "ALTER USER MAPPING FOR PUBLIC SERVER cloudcard OPTIONS (SET persistent_access_token 'pat/Hostile\"Pat-5b2e8d')")
        self.addCleanup(query, self.conn, "ALTER USER MAPPING FOR PUBLIC SERVER cloudcard "
                                          "OPTIONS (SET persistent_access_token %s)", (CLOUDCARD_PAT,))
        ok, status, detail, hint = self.check("cloudcard")["cloudcard"]
        self.assertEqual((ok, status), (False, 401))
        self.assertTrue(detail.startswith("persistent access token refused; create a new one in CloudCard"), detail)
        self.assertEqual(hint, "Create a new persistent access token in CloudCard and set it: "
                               "ALTER USER MAPPING ... OPTIONS (SET persistent_access_token '...').")

    def test_3_a_wrong_url(self):
        for server, path in (("cloudcard", "/authentication-token"), ("opscom", TYPES_PATH)):
            query(self.conn, f"ALTER SERVER {server} OPTIONS (SET url %s)", (MOCK_API + "/wrong",))
            ok, status, detail, hint = self.check(server)[server]
            self.assertEqual((ok, status), (False, 404), server)
            self.assertEqual(detail, f"HTTP 404 at {MOCK_API}/wrong{path}: is the url right?")
            self.assertIn("campus_sync appends", hint)
        # nothing answers at all
        query(self.conn, "ALTER SERVER opscom OPTIONS (SET url 'http://127.0.0.1:9')")
        ok, status, detail, hint = self.check("opscom")["opscom"]
        self.assertEqual((ok, status), (False, None))
        self.assertIn("Check the server's url", hint)

    def test_4_a_wrong_opscom_token_and_no_user_mapping(self):
        query(self.conn, "ALTER USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (SET api_token 'wrong-token-not-valid-42')")
        self.addCleanup(query, self.conn, "ALTER USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (SET api_token %s)",
                        (OPSCOM_TOKEN,))
        ok, status, detail, hint = self.check("opscom")["opscom"]
        self.assertEqual((ok, status, detail), (False, 400, "OPS-COM error 9002 (HTTP 400): API token '[redacted]' has no permission"))
        self.assertIn("check the user mapping's api_token", hint)
        query(self.conn, "CREATE SERVER cs_unmapped FOREIGN DATA WRAPPER campus_sync OPTIONS (service 'opscom', url %s)",
              (MOCK_API,))
        self.addCleanup(query, self.conn, "DROP SERVER cs_unmapped")
        ok, status, detail, hint = self.check("cs_unmapped")["cs_unmapped"]
        self.assertEqual((ok, status), (False, None))
        self.assertRegex(detail, r'^no user mapping for role "[^"]+" or PUBLIC on server "cs_unmapped"$')
        self.assertRegex(hint, r"^CREATE USER MAPPING FOR \S+ SERVER cs_unmapped OPTIONS \(\.\.\.\);$")


class SharedSessionTest(unittest.TestCase):
    """Preloaded: one session per user mapping for every backend."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("vendor-shared", ["shared_preload_libraries = 'campus_sync'"])
        cls.addClassCleanup(cls.cluster.destroy)
        cls.cluster.init()
        cls.cluster.start()
        create_database(DB, **cls.cluster.conninfo).close()

    def setUp(self):
        mock("reset")
        mock("config", realistic=True, session_token_prefix=TOKEN_PREFIX, cloudcard_pat_max_uses=3)

    def upsert_from(self, n, results):
        conn = self.cluster.wait_connect(DB)
        try:
            results[n] = query(conn, UPSERT, (f"M{n}", f"m{n}@foo.edu"))[0]
        except Exception as e:            # reported by the assertion below
            results[n] = e
        finally:
            conn.close()

    def thirty_at_once(self):
        results = {}
        threads = [threading.Thread(target=self.upsert_from, args=(n, results)) for n in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return results

    def test_thirty_sessions_with_a_pat_of_three_uses_all_succeed(self):
        results = self.thirty_at_once()
        self.assertEqual(sorted(results), list(range(30)))
        for n, r in results.items():
            self.assertEqual(r[:2] if isinstance(r, tuple) else r, (True, 201), n)
        self.assertEqual(sessions()["exchanges"], 1)
        # revoked: the first backend to see the 403 renews it, the others use the new one
        mock("expire_tokens")
        results = self.thirty_at_once()
        for n, r in results.items():
            self.assertEqual(r[:2] if isinstance(r, tuple) else r, (True, 202), n)
        self.assertEqual(sessions()["exchanges"], 2)
        self.assertEqual(sessions()["logout_all"], 0)
        self.assertEqual(len([r for r in mock("requests") if r["path"] == "/authentication-token"]), 2)
