"""A hostile remote: answers that echo every secret in every encoding, redirects
that carry a token, slow-loris answers, endless and oversized bodies, a gzip
bomb, bytes that are not UTF-8, JSON nested too deep.

Every answer must end in a clean per-row outcome (push: ok = false and an
error; deliver(): the item retried or failed), never an ERROR or a crash, and
no secret -- compared without regard to case, in each encoding the mock used
-- may appear in a push_result, campus_sync.queue, campus_sync.target_health,
a notice or the server log.  Tests assert exact outcomes.
"""
import base64
import json
import os
import re
import unittest
import urllib.parse

from helpers import (SANITIZED, CLOUDCARD_PAT, MOCK_API, OPSCOM_TOKEN, connect, create_database, mock,
                     query, scalar)

DB = "cs_it_hostile"
CC_STATIC_TOKEN = "cc-static-token-0123456789"
# Secrets with characters that JSON and URLs escape, in mixed case (so that an
# upper-cased echo differs); also in test/secrets.txt, for the runner's log check.
H_OPS = 'ops/Hostile"Token-7f3a9c'
H_PAT = 'pat/Hostile"Pat-5b2e8d'
H_STATIC = 'cc/Hostile"Static-9d4c1e'
LEAKY = 'Leaky/Token"1x'                # a tokenValue in a failed exchange's answer
SESSION_PREFIX = 'Sess/"'               # the mock's session tokens start with it
STATIC_SECRETS = [OPSCOM_TOKEN, CLOUDCARD_PAT, CC_STATIC_TOKEN, H_OPS, H_PAT, H_STATIC, LEAKY]

CAP = 4194304                           # HTTP_MAX_RESPONSE
R = "[redacted]"
PLACEHOLDER = re.compile(r"\$\{(\w+)(?::(\w+))?\}")
NOT_FOLLOWED = ", which is not followed; set the server's url to the final address"
NOT_UTF8 = "(the response is not valid UTF-8)"


def encode(secret, how):
    """A secret written in a JSON string (or a URL) the way the mock echoes it."""
    escaped = json.dumps(secret)[1:-1]
    if how is None:
        return escaped
    if how == "upper":
        return json.dumps(secret.upper())[1:-1]
    if how == "slash":
        return escaped.replace("/", "\\/")
    if how == "u":
        return "".join("\\u%04x" % ord(c) for c in secret)
    if how == "u1":
        return "\\u%04x" % ord(secret[0]) + json.dumps(secret[1:])[1:-1]
    if how == "url":
        return urllib.parse.quote(secret, safe="")
    if how == "text":
        return secret
    raise ValueError(how)


def forms(secret):
    """Every way a leaked secret could be written, lower-cased."""
    return {encode(secret, how).lower() for how in (None, "slash", "u", "u1", "url", "text")}


def strings_in(value):
    """Every text in a value: JSON keys and strings, and the value as text."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)
    elif value is not None:
        yield str(value)
    if isinstance(value, (dict, list)):
        yield json.dumps(value)


def redacted(template):
    """What a template becomes once every secret in it is redacted."""
    return PLACEHOLDER.sub(R, template)


def compact(template):
    """The rebuilt JSON text campus_sync shows in excerpts."""
    return json.dumps(json.loads(redacted(template)), separators=(",", ":"))


def vm_hwm_kb(pid):
    """Peak resident memory of a process (its high-water mark), in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/%d/status" % pid)


class HostileRemoteTest(unittest.TestCase):
    session_tokens = set()              # every one the mock issued in this suite

    @classmethod
    def setUpClass(cls):
        conn = create_database(DB, """
            CREATE TABLE people (unique_id text, first_name text, last_name text, email text);
            INSERT INTO people VALUES ('H1', 'Hal', 'Hostile', 'h1@campus.edu'),
                                      ('H2', 'Hedy', 'Hostile', 'h2@campus.edu');
            CREATE TABLE cardholders (identifier text, email text);
            INSERT INTO cardholders VALUES ('C1', 'c1@campus.edu'), ('C2', 'c2@campus.edu');
        """)
        servers = [("opscom_h", "opscom", ", login_source 'BANNER'", "api_token", H_OPS),
                   ("opscom_slow", "opscom", ", login_source 'BANNER', timeout_ms '1500'",
                    "api_token", H_OPS),
                   ("cloudcard_h", "cloudcard", "", "persistent_access_token", H_PAT),
                   ("cloudcard_s", "cloudcard", "", "auth_token", H_STATIC)]
        for name, service, extra, option, secret in servers:
            query(conn, f"CREATE SERVER {name} FOREIGN DATA WRAPPER campus_sync "
                        f"OPTIONS (service '{service}', url %s{extra}, skip_unchanged 'false')", (MOCK_API,))
            query(conn, f"CREATE USER MAPPING FOR PUBLIC SERVER {name} "
                        f"OPTIONS ({option} %s)", (secret,))
        conn.close()

    @classmethod
    def tearDownClass(cls):
        run_dir = os.environ.get("RUN_DIR")
        if run_dir:                     # the server log, read as root
            with open(os.path.join(run_dir, "postgres.log"), errors="replace") as f:
                log = f.read().lower()
            for secret in STATIC_SECRETS + sorted(cls.session_tokens):
                for form in forms(secret):
                    assert form not in log, f"a secret ({secret!r}) is in the server log"

    def setUp(self):
        mock("reset")
        mock("config", opscom_tokens=f"{OPSCOM_TOKEN},{H_OPS}",
             cloudcard_pats=f"{CLOUDCARD_PAT},{H_PAT}",
             cloudcard_auth_tokens=f"{CC_STATIC_TOKEN},{H_STATIC}",
             session_token_prefix=SESSION_PREFIX)
        self.old_token = None
        # a backend of its own: no session token cached by another test
        self.conn = connect(DB)
        self.conn.notices = []
        query(self.conn, "DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox; "
                         "DELETE FROM campus_sync.target_health")

    def tearDown(self):
        tokens = mock("session_tokens")
        HostileRemoteTest.session_tokens.update(tokens)
        self.assert_clean(query(self.conn, "SELECT q::text FROM campus_sync.queue q"),
                          query(self.conn, "SELECT h::text FROM campus_sync.target_health h"),
                          self.conn.notices)
        self.conn.close()
        for token in tokens:
            self.assertTrue(token.startswith(SESSION_PREFIX))

    # -- helpers -----------------------------------------------------------

    def secrets(self):
        return STATIC_SECRETS + sorted(self.session_tokens | set(mock("session_tokens")))

    def assert_clean(self, *values):
        secrets = self.secrets()
        for text in strings_in(list(values)):
            low = text.lower()
            for secret in secrets:
                for form in forms(secret):
                    self.assertNotIn(form, low, f"a secret ({secret!r}) leaked")

    def render(self, template):
        """Fills the secrets the test knows (${ops}, ${pat}, ${static}, ${old});
        ${token...} is left to the mock (the request's own credential)."""
        known = {"ops": H_OPS, "pat": H_PAT, "static": H_STATIC, "old": self.old_token}

        def fill(m):
            if m.group(1) not in known:
                return m.group(0)       # ${token...} and ${pad}: the mock's
            return encode(known[m.group(1)], m.group(2))
        return PLACEHOLDER.sub(fill, template)

    def behave(self, **rule):
        if "body" in rule:
            rule["body"] = self.render(rule["body"])
        rule.setdefault("echo", True)
        mock("behave", _json=rule)

    def result(self, sql, args, conn=None):
        conn = conn or self.conn
        with conn.cursor() as cur:
            cur.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row)) for row in cur.fetchall()]
        self.assert_clean(rows, getattr(conn, "notices", []))
        return rows

    def push(self, server="opscom_h", unique_id="H1", conn=None):
        """opscom_push of one person: (ok, http_status, remote_id, error, response)."""
        row, = self.result("SELECT r.*, r.response::text AS response_text FROM people p, "
                           "LATERAL campus_sync.opscom_push(p, server => %s) r "
                           "WHERE p.unique_id = %s", (server, unique_id), conn)
        return row["ok"], row["http_status"], row["remote_id"], row["error"], row["response"]

    def upsert(self, server="cloudcard_h", identifier="C1"):
        row, = self.result("SELECT r.*, r.response::text AS response_text FROM cardholders c, "
                           "LATERAL campus_sync.cloudcard_upsert(c, server => %s) r "
                           "WHERE c.identifier = %s", (server, identifier))
        return row["ok"], row["http_status"], row["remote_id"], row["error"], row["response"]

    def deliver(self, server, person):
        """Queues one person, runs deliver(), returns the item and the target's health."""
        table, key = ("people", "unique_id") if server.startswith("opscom") \
            else ("cardholders", "identifier")
        query(self.conn, "DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.target_health")
        query(self.conn, f"SELECT campus_sync.enqueue(%s, t) FROM {table} t WHERE {key} = %s",
              (server, person))
        self.result("SELECT * FROM campus_sync.deliver(server => %s, max_seconds => 20)", (server,))
        item, = self.result("SELECT state, attempts, last_http_status, last_error, remote_id "
                            "FROM campus_sync.queue WHERE server = %s", (server,))
        health, = self.result("SELECT up, failures, last_error FROM campus_sync.target_health "
                              "WHERE server = %s", (server,))
        return item, health

    # -- echoes of every secret --------------------------------------------

    OPSCOM_ECHOES = [
        # (status, body, ok, remote_id, error)
        *[(200, '{"ErrorCode": 9002, "ErrorMessage": "API token \'${token%s}\' has no permission"}' % how,
           False, None, "OPS-COM error 9002: API token '[redacted]' has no permission")
          for how in ("", ":upper", ":slash", ":u", ":u1")],
        (200, '{"status": "success", "reference_id": "${token:u}"}', True, R, None),
        (200, '{"status": "failure", "${token:slash}": {"nested": ["${token:upper}", {"deep": "x${token:u1}y"}]}}',
         False, None, 'OPS-COM did not answer "status": "success": '
         '{"status":"failure","[redacted]":{"nested":["[redacted]",{"deep":"x[redacted]y"}]}}'),
        (400, '{"message": "bad apiToken ${token:u}", "ErrorMessage": "${token:upper}"}',
         False, None, "OPS-COM answered HTTP 400: bad apiToken [redacted]"),
        (503, '{"message": "maintenance for ${token:slash}", "id": "${token}"}',
         False, None, "OPS-COM answered HTTP 503: maintenance for [redacted]"),
        (404, '{"message": "the token: ${ops:u1}"}',
         False, None, "OPS-COM answered HTTP 404: the token: [redacted]"),
    ]

    def test_opscom_echoes_of_the_api_token_are_redacted(self):
        for status, body, ok, remote_id, error in self.OPSCOM_ECHOES:
            with self.subTest(status=status, body=body):
                mock("clear_behaviours")
                self.behave(path_prefix="/api/OC_TOMA", status=status, body=body)
                self.assertEqual(self.push(), (ok, status, remote_id, error, json.loads(redacted(body))))

    def test_every_secret_this_backend_used_is_redacted_from_every_remote(self):
        # this backend has used the CloudCard secrets (and a session token):
        # the OPS-COM remote echoing them back is redacted too
        self.assertEqual(self.upsert("cloudcard_s")[:2], (True, 201))
        self.assertEqual(self.upsert("cloudcard_h", "C2")[:2], (True, 201))
        self.old_token, = mock("session_tokens")
        body = '{"message": "${pat:upper} ${static:u} ${old:slash} ${ops:u1}", "id": "${old:upper}"}'
        self.behave(path_prefix="/api/OC_TOMA", status=400, body=body)
        self.assertEqual(self.push(), (False, 400, None, "OPS-COM answered HTTP 400: " + " ".join([R] * 4),
                                       json.loads(redacted(body))))

    def test_a_body_that_is_not_json_is_redacted_as_text(self):
        # not JSON: every encoding is found in the raw text
        body = ("Internal error: token=${token:text} json=${token} upper=${token:upper} "
                "u=${token:u} u1=${token:u1} url=${token:url} slash=${token:slash}")
        self.behave(path_prefix="/api/OC_TOMA", status=500, body=body)
        text = redacted(body)
        self.assertEqual(self.push(), (False, 500, None, "OPS-COM answered HTTP 500: " + text, text))
        # JSON that PostgreSQL refuses (\u0000) is text too, escapes and all
        mock("clear_behaviours")
        body = '{"message": "bad \\u0000 ${token:u} ${token:slash}"}'
        self.behave(path_prefix="/api/OC_TOMA", status=400, body=body)
        text = redacted(body)
        self.assertEqual(self.push(), (False, 400, None, "OPS-COM answered HTTP 400: " + text, text))

    CLOUDCARD_ECHOES = [
        # (status, body, ok, remote_id, error); ${secret}: the mapping's own secret
        (400, '{"message": "bad X-Auth-Token ${token:u1}", "detail": {"secret": "${secret:upper}"}}',
         False, None, "CloudCard answered HTTP 400: bad X-Auth-Token [redacted]"),
        (202, '{"id": "${token:slash}", "${token:u}": ["${secret:u}", {"k": "${secret:slash}"}]}',
         True, R, None),
        (500, '{"error": "${token:upper} / ${secret}"}', False, None,
         "CloudCard answered HTTP 500: [redacted] / [redacted]"),
        (401, '{"message": "bad X-Auth-Token ${token}", "reference_id": "${token:u}"}', False, None,
         "CloudCard answered HTTP 401: bad X-Auth-Token [redacted]"),
        (403, "Forbidden: ${token:text} (${secret:url}, ${secret:u})", False, None,
         "CloudCard answered HTTP 403: Forbidden: [redacted] ([redacted], [redacted])"),
    ]

    def check_cloudcard_echoes(self, server, secret_name):
        for status, body, ok, remote_id, error in self.CLOUDCARD_ECHOES:
            body = body.replace("${secret", "${" + secret_name)
            with self.subTest(status=status, body=body):
                mock("clear_behaviours")
                self.behave(method="PUT", path_prefix="/person/", status=status, body=body)
                response = json.loads(redacted(body)) if body.startswith("{") else redacted(body)
                self.assertEqual(self.upsert(server), (ok, status, remote_id, error, response))

    def test_cloudcard_echoes_of_the_session_token_and_the_pat_are_redacted(self):
        self.check_cloudcard_echoes("cloudcard_h", "pat")
        # the 401 and the 403 renewed the session token (once per call); each was redacted
        self.assertEqual(len(mock("session_tokens")), 3)

    def test_cloudcard_echoes_of_the_auth_token_are_redacted(self):
        self.check_cloudcard_echoes("cloudcard_s", "static")
        self.assertEqual(mock("session_tokens"), [])

    # -- the session token, shape by shape -----------------------------------

    def test_a_session_token_cached_by_an_earlier_call(self):
        self.assertEqual(self.upsert()[:2], (True, 201))
        self.behave(method="PUT", path_prefix="/person/", status=400,
                    body='{"message": "bad X-Auth-Token ${token}"}')
        self.assertEqual(self.upsert(identifier="C2")[:4],
                         (False, 400, None, "CloudCard answered HTTP 400: bad X-Auth-Token [redacted]"))
        self.assertEqual(mock("stats")["token_exchanges"], 1)

    def test_a_renewed_session_token_and_the_old_one(self):
        self.assertEqual(self.upsert()[:2], (True, 201))
        self.old_token, = mock("session_tokens")
        self.behave(method="PUT", path_prefix="/person/", status=401, count=1,
                    body='{"message": "expired: ${token}"}')
        self.behave(method="PUT", path_prefix="/person/", status=500,
                    body='{"message": "old ${old:u} ${old:upper} new ${token:slash}"}')
        self.assertEqual(self.upsert()[:4],
                         (False, 500, None, "CloudCard answered HTTP 500: old [redacted] [redacted] new [redacted]"))
        self.assertEqual(len(mock("session_tokens")), 2)

    def test_the_put_then_post_path(self):
        self.behave(method="PUT", path_prefix="/person/", status=404, count=1,
                    body='{"message": "no person for ${token}"}')
        self.behave(method="POST", path_prefix="/person", status=400,
                    body='{"message": "bad X-Auth-Token ${token:upper}", "id": "${token:u}"}')
        # the row has an email: after the create's 400 it is updated by email (not found here)
        self.assertEqual(self.upsert(), (False, 404, None,
                                         "CloudCard answered HTTP 400 to the create (POST /person): "
                                         "bad X-Auth-Token [redacted]; then CloudCard answered HTTP 404 to "
                                         "the update by email (PUT /person/{email}?findBy=email): Not Found",
                                         {"message": "Not Found"}))

    def test_a_401_renews_the_token_while_other_items_are_in_flight(self):
        # two items share the session token; one's 401 renews it while the
        # other's answer, echoing the old token, is still on its way
        for identifier in ("C1", "C2"):
            query(self.conn, "SELECT campus_sync.enqueue('cloudcard_h', c) FROM cardholders c "
                             "WHERE identifier = %s", (identifier,))
        self.behave(method="PUT", path_prefix="/person/", status=401, count=1,
                    body='{"message": "revoked ${token}"}')
        self.behave(method="PUT", path_prefix="/person/", status=503, delay_ms=300,
                    body='{"message": "bad X-Auth-Token ${token}"}')
        self.result("SELECT * FROM campus_sync.deliver(server => 'cloudcard_h', max_seconds => 20)", ())
        error = "CloudCard answered HTTP 503: bad X-Auth-Token [redacted]"
        self.assertEqual(self.result("SELECT person_key, state, attempts, last_http_status, last_error "
                                     "FROM campus_sync.queue ORDER BY person_key", ()),
                         [{"person_key": k, "state": "retrying", "attempts": 1, "last_http_status": 503,
                           "last_error": error} for k in ("C1", "C2")])
        self.assertEqual(self.result("SELECT up, failures, last_error FROM campus_sync.target_health", ()),
                         [{"up": True, "failures": 2, "last_error": error}])
        self.assertEqual(len(mock("session_tokens")), 2)

    def test_the_token_exchange_answer_itself(self):
        cases = [
            (500, '{"message": "cannot exchange ${token:u}", "pat": "${token:slash}"}',
             "CloudCard answered HTTP 500 to the authentication-token exchange: cannot exchange [redacted]"),
            (400, '{"tokenValue": "%s", "message": "%s is not for you"}' % (encode(LEAKY, None), encode(LEAKY, "u")),
             "CloudCard answered HTTP 400 to the authentication-token exchange: [redacted] is not for you"),
            (200, '{"expirationDate": "2099-01-01T00:00:00Z", "echo": "${token:upper}"}',
             'CloudCard\'s authentication-token answer (HTTP 200) has no tokenValue: '
             '{"expirationDate":"2099-01-01T00:00:00Z","echo":"[redacted]"}'),
            # a header of the remote's choosing must not reach the next request
            (201, '{"tokenValue": "abc\\r\\nX-Injected: 1"}',
             "CloudCard's authentication-token answer (HTTP 201) has a tokenValue that cannot be sent "
             "in a header (1 to 4096 visible ASCII characters)"),
            (401, '{"message": "${token}"}',
             "persistent access token refused; create a new one in CloudCard and set it as the user "
             "mapping's persistent_access_token (CloudCard answered HTTP 401 to the token exchange)"),
        ]
        for status, body, error in cases:
            with self.subTest(status=status, body=body):
                mock("clear_behaviours")
                self.behave(method="POST", path_prefix="/authentication-token", status=status, body=body)
                self.assertEqual(self.upsert(), (False, status, None, error, None))
        # (a backend of an earlier test logs its session out when it exits, and
        # under the sanitizers that logout can arrive after this test's reset)
        self.assertEqual([r["path"] for r in mock("requests") if r["path"] != "/person/me/logout"],
                         ["/authentication-token"] * len(cases))
        # deliver(): the failed exchange is the item's error
        item, health = self.deliver("cloudcard_h", "C1")
        self.assertEqual(item, {"state": "failed", "attempts": 1, "last_http_status": 401,
                                "last_error": cases[-1][2], "remote_id": None})
        self.assertEqual(health["last_error"], cases[-1][2])

    # -- deliver(): the queue and target_health ---------------------------------

    def test_deliver_redacts_the_queue_and_target_health(self):
        cases = [
            # server, person, rule, state, last_http_status, last_error, remote_id
            ("opscom_h", "H1", dict(path_prefix="/api/OC_TOMA", status=200,
                                    body='{"ErrorCode": 9002, "ErrorMessage": "API token \'${token}\' has no permission"}'),
             "failed", 200, "OPS-COM error 9002: API token '[redacted]' has no permission", None),
            ("opscom_h", "H1", dict(path_prefix="/api/OC_TOMA", status=503,
                                    body='{"message": "maintenance for ${token:u}"}'),
             "retrying", 503, "OPS-COM answered HTTP 503: maintenance for [redacted]", None),
            ("opscom_h", "H1", dict(path_prefix="/api/OC_TOMA", status=200,
                                    body='{"status": "success", "reference_id": "${token:slash}"}'),
             "delivered", 200, None, R),
            ("cloudcard_h", "C1", dict(method="PUT", path_prefix="/person/", status=400,
                                       body='{"message": "bad X-Auth-Token ${token}", "pat": "${pat:u1}"}'),
             "failed", 400, "CloudCard answered HTTP 400: bad X-Auth-Token [redacted]", None),
            ("cloudcard_s", "C1", dict(method="PUT", path_prefix="/person/", status=500,
                                       body='{"message": "${token:upper}"}'),
             "retrying", 500, "CloudCard answered HTTP 500: [redacted]", None),
            ("cloudcard_h", "C2", dict(method="PUT", path_prefix="/person/", status=202,
                                       body='{"id": "${token:u}"}'),
             "delivered", 202, None, R),
        ]
        for server, person, rule, state, http_status, error, remote_id in cases:
            with self.subTest(server=server, rule=rule):
                mock("clear_behaviours")
                self.behave(**rule)
                item, health = self.deliver(server, person)
                self.assertEqual(item, {"state": state, "attempts": 1, "last_http_status": http_status,
                                        "last_error": error, "remote_id": remote_id})
                self.assertEqual(health["last_error"], error)

    # -- redirects -------------------------------------------------------------

    def test_a_redirect_is_reported_without_userinfo_query_and_fragment(self):
        cases = [
            ("opscom_h", dict(path_prefix="/api/OC_TOMA", status=302,
                              location="http://user:${token:url}@evil.test:8080/cb/${token:url}"
                                       "?token=${token:url}&x=1#frag-${token:url}"),
             "OPS-COM answered HTTP 302 with a redirect to http://evil.test:8080/cb/[redacted]"),
            ("cloudcard_h", dict(method="PUT", path_prefix="/person/", status=307,
                                 location="/login/${token:url}?session=${token:url}"),
             f"CloudCard answered HTTP 307 with a redirect to {MOCK_API}/login/[redacted]"),
            # bytes that are not ASCII (here Latin-1) are percent-encoded
            ("opscom_h", dict(path_prefix="/api/OC_TOMA", status=301,
                              location="http://evil.test/caf\u00e9/${token:url}#${token:text}"),
             "OPS-COM answered HTTP 301 with a redirect to http://evil.test/caf%E9/[redacted]"),
        ]
        for server, rule, error in cases:
            with self.subTest(rule=rule):
                mock("clear_behaviours")
                self.behave(**rule)
                run = self.push if server.startswith("opscom") else self.upsert
                self.assertEqual(run(server)[:4], (False, rule["status"], None, error + NOT_FOLLOWED))
        item, health = self.deliver("opscom_h", "H1")
        self.assertEqual(item, {"state": "failed", "attempts": 1, "last_http_status": 301,
                                "last_error": cases[-1][2] + NOT_FOLLOWED, "remote_id": None})

    # -- slow loris ------------------------------------------------------------

    TIMED_OUT = re.compile(r"^no complete answer within timeout_ms \(1500 ms\): Operation timed out after "
                           r"\d+ milliseconds with (\d+|\d+ out of \d+) bytes received$")

    def test_a_slow_loris_answer_is_cut_by_timeout_ms(self):
        # a byte a second, headers and all: two rows, each its own clean error
        self.behave(path_prefix="/api/OC_TOMA", status=200, body='{"status": "success"}', trickle_ms=1000)
        rows = self.result("SELECT p.unique_id, r.* FROM people p, "
                           "LATERAL campus_sync.opscom_push(p, server => 'opscom_slow') r "
                           "ORDER BY p.unique_id", ())
        self.assertEqual([(r["unique_id"], r["ok"], r["http_status"], r["response"]) for r in rows],
                         [("H1", False, None, None), ("H2", False, None, None)])
        for r in rows:
            self.assertRegex(r["error"], self.TIMED_OUT.pattern)
            # cut at about 1.5 s (timer granularity aside); the whole answer
            # would take more than 100 s
            self.assertGreaterEqual(r["elapsed_ms"], 1400)
            self.assertLess(r["elapsed_ms"], 10000)
        # headers at once, then the body a byte a second: cut all the same
        mock("clear_behaviours")
        self.behave(path_prefix="/api/OC_TOMA", status=200, body='{"status": "success"}', trickle_ms=1000,
                    trickle_body_only=True)
        ok, http_status, _, error, _ = self.push("opscom_slow")
        self.assertEqual((ok, http_status), (False, None))
        self.assertRegex(error, r"with \d+ out of 21 bytes received$")
        self.assertRegex(error, self.TIMED_OUT.pattern)
        # deliver(): a temporary failure, retried
        item, health = self.deliver("opscom_slow", "H1")
        self.assertEqual((item["state"], item["attempts"], item["last_http_status"]), ("retrying", 1, None))
        self.assertRegex(item["last_error"], self.TIMED_OUT.pattern)
        self.assertEqual((health["up"], health["failures"], health["last_error"]),
                         (True, 1, item["last_error"]))

    # -- oversized and endless bodies ---------------------------------------------

    def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_cut(self):
        body = '{"status": "success", "reference_id": "77", "pad": "${pad}"}'
        self.behave(path_prefix="/api/OC_TOMA", status=200, body=body, pad_to=CAP, count=1)
        ok, http_status, remote_id, error, response = self.push()
        self.assertEqual((ok, http_status, remote_id, error, len(response["pad"])),
                         (True, 200, "77", None, CAP - len(body) + len("${pad}")))
        self.behave(path_prefix="/api/OC_TOMA", status=200, body=body, pad_to=CAP + 1, count=1)
        excerpt = body.replace("${pad}", "x" * 300)[:300] + "..."
        self.assertEqual(self.push(), (False, 200, None,
                                       f"the answer (HTTP 200) was larger than {CAP} bytes and was cut, "
                                       f"so OPS-COM's \"status\": \"success\" could not be read; not retried: "
                                       + excerpt, excerpt))

    def test_an_endless_body_is_cut_at_the_cap_and_memory_stays_bounded(self):
        prefix = '{"status": "success", "reference_id": "1", "pad": "'
        excerpt = (prefix + "x" * 300)[:300] + "..."
        cut = f"the answer (HTTP 200) was larger than {CAP} bytes and was cut"
        conn = connect(DB)
        pid = scalar(conn, "SELECT pg_backend_pid()")
        self.assertTrue(self.push(conn=conn)[0])          # warm: libcurl, caches
        before = vm_hwm_kb(pid)
        self.behave(path_prefix="/api/OC_TOMA", status=200, body=prefix, endless=True, echo=False)
        self.assertEqual(self.push(conn=conn), (False, 200, None,
                                                cut + ", so OPS-COM's \"status\": \"success\" could not be "
                                                "read; not retried: " + excerpt, excerpt))
        grown_kb = vm_hwm_kb(pid) - before
        conn.close()
        print(f"\n    endless body: the backend's peak memory grew {grown_kb} kB", end=" ")
        if not SANITIZED:
            self.assertLess(grown_kb, (CAP + 4 * 1024 * 1024) // 1024)
        # CloudCard: a 2xx is success whatever its body, even a cut one
        self.behave(method="PUT", path_prefix="/person/", status=202, body=prefix, endless=True, echo=False)
        self.assertEqual(self.upsert(), (True, 202, None, None, excerpt))
        # deliver(): OPS-COM's cut 2xx fails, not retried; a cut 503 is retried
        item, health = self.deliver("opscom_h", "H1")
        self.assertEqual(item, {"state": "failed", "attempts": 1, "last_http_status": 200,
                                "last_error": cut + ", so OPS-COM's \"status\": \"success\" could not be "
                                                    "read; not retried: " + excerpt, "remote_id": None})
        self.assertEqual((health["up"], health["failures"]), (True, 0))
        item, _ = self.deliver("cloudcard_h", "C1")
        self.assertEqual((item["state"], item["last_http_status"], item["last_error"]), ("delivered", 202, None))
        mock("clear_behaviours")
        self.behave(path_prefix="/api/OC_TOMA", status=503, body="<html>busy", endless=True, echo=False)
        item, _ = self.deliver("opscom_h", "H1")
        html = ("<html>busy" + "x" * 300)[:300] + "..."
        self.assertEqual(item, {"state": "retrying", "attempts": 1, "last_http_status": 503,
                                "last_error": f"OPS-COM answered HTTP 503: the answer was larger than {CAP} "
                                              f"bytes and was cut: {html}", "remote_id": None})

    def test_a_gzip_bomb_is_not_inflated(self):
        conn = connect(DB)
        pid = scalar(conn, "SELECT pg_backend_pid()")
        self.assertTrue(self.push(conn=conn)[0])
        before = vm_hwm_kb(pid)
        self.behave(path_prefix="/api/OC_TOMA", gzip_bomb_mb=64)
        self.assertEqual(self.push(conn=conn),
                         (False, 200, None, f'OPS-COM did not answer "status": "success": {NOT_UTF8}', NOT_UTF8))
        grown_kb = vm_hwm_kb(pid) - before
        conn.close()
        if not SANITIZED:
            self.assertLess(grown_kb, 2048)
        # campus_sync never asks for a compressed answer
        self.assertNotIn("accept-encoding", mock("last", path_prefix="/api/OC_TOMA")["headers"])
        self.assertNotIn("te", mock("last", path_prefix="/api/OC_TOMA")["headers"])

    # -- bytes that are not UTF-8, JSON nested too deep ---------------------------

    def test_an_answer_that_is_not_utf8(self):
        raw = base64.b64encode(b'{"message": "caf\xe9 ' + H_OPS.encode().replace(b'"', b'\\"') + b'"}').decode()
        cases = [(200, f'OPS-COM did not answer "status": "success": {NOT_UTF8}'),
                 (400, f"OPS-COM answered HTTP 400: {NOT_UTF8}")]
        for status, error in cases:
            with self.subTest(status=status):
                mock("clear_behaviours")
                self.behave(path_prefix="/api/OC_TOMA", status=status, body_base64=raw)
                self.assertEqual(self.push(), (False, status, None, error, NOT_UTF8))
        self.behave(method="PUT", path_prefix="/person/", status=202, body_base64=raw)
        self.assertEqual(self.upsert(), (True, 202, None, None, NOT_UTF8))
        mock("clear_behaviours")
        self.behave(path_prefix="/api/OC_TOMA", status=503, body_base64=raw)
        item, _ = self.deliver("opscom_h", "H1")
        self.assertEqual(item, {"state": "retrying", "attempts": 1, "last_http_status": 503,
                                "last_error": f"OPS-COM answered HTTP 503: {NOT_UTF8}", "remote_id": None})

    def test_json_nested_too_deep_is_text_not_an_error(self):
        body = "[" * 100000 + "]" * 100000
        excerpt = "[" * 300 + "..."
        self.behave(path_prefix="/api/OC_TOMA", status=200, body=body, echo=False)
        self.assertEqual(self.push(),
                         (False, 200, None, f'OPS-COM did not answer "status": "success": {excerpt}', excerpt))
        self.behave(method="GET", path_prefix="/person/", status=200, body=body, echo=False)
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.cloudcard_person('C1', 'cloudcard_h')"), excerpt)
        item, _ = self.deliver("opscom_h", "H1")
        self.assertEqual((item["state"], item["last_error"]),
                         ("failed", f'OPS-COM did not answer "status": "success": {excerpt}'))


if __name__ == "__main__":
    unittest.main()
