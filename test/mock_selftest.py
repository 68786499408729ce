#!/usr/bin/env python3
"""Self-test of test/mock_api.py (standard library only).

Starts the mock on free ports, plain HTTP and HTTPS (throwaway self-signed
certificate made with openssl), and checks its vendor and control APIs.
Prints one line per check; exits non-zero on the first failure.

    python3 test/mock_selftest.py [--rate-requests N]
"""

import argparse
import datetime
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "mock_api.py")

OPSCOM_TOKEN = "opscom-test-token-0123456789"
PAT = "pat-test-0123456789abcdef"
STATIC_TOKEN = "cc-static-token-0123456789"
PUSH = "/api/OC_TOMA/v1/profiles/push"
TYPES = "/api/OC_TOMA/v1/profiles/types/list"
JSON_CT = {"Content-Type": "application/json"}


class CheckFailed(Exception):
    pass


def expect(condition, message, *details):
    if not condition:
        raise CheckFailed(message + "".join(" | " + repr(d) for d in details))


def expect_eq(actual, wanted, what):
    expect(actual == wanted, f"{what}: expected {wanted!r}, got {actual!r}")


# --------------------------------------------------------------------------
# Mock process and clients
# --------------------------------------------------------------------------

def make_cert(directory):
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2",
                    "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return cert, key


def start_mock(directory, cert, key):
    ready = os.path.join(directory, "ready.json")
    proc = subprocess.Popen([sys.executable, MOCK, "--ready-file", ready,
                             "--tls-port", "0", "--cert", cert,
                             "--key", key])
    deadline = time.time() + 15
    while not os.path.exists(ready):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise CheckFailed("mock did not start")
        time.sleep(0.02)
    with open(ready) as handle:
        return proc, json.load(handle)


class Client:
    """Tiny helpers around http.client for the API and control ports."""

    def __init__(self, ports, cafile):
        self.api_port = ports["api"]
        self.control_port = ports["control"]
        self.tls_port = ports["tls"]
        self.tls_context = ssl.create_default_context(cafile=cafile)

    def connection(self, tls=False, timeout=10):
        if tls:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.tls_port, context=self.tls_context,
                timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.api_port,
                                          timeout=timeout)

    def api(self, method, path, body=None, headers=None, conn=None,
            tls=False):
        """(status, headers dict, raw body, parsed JSON or None)."""
        own = conn is None
        conn = conn or self.connection(tls)
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers = {**JSON_CT, **(headers or {})}
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            if own:
                conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return resp.status, resp_headers, raw, parsed

    def ctl(self, command, body=None, **params):
        """Control command; query params (GET) or JSON body (POST)."""
        path = "/_mock/" + command
        if params:
            path += "?" + urllib.parse.urlencode(params)
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port,
                                          timeout=10)
        try:
            if body is None:
                conn.request("GET", path)
            else:
                conn.request("POST", path, body=json.dumps(body),
                             headers=JSON_CT)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        expect(raw.endswith(b"\n") and raw.count(b"\n") == 1,
               "control answers are one line", raw)
        return resp.status, json.loads(raw)

    def ok(self, command, body=None, **params):
        status, answer = self.ctl(command, body, **params)
        expect_eq(status, 200, f"/_mock/{command} status")
        return answer


def push(client, conn=None, **fields):
    body = {"apiToken": OPSCOM_TOKEN, **fields}
    return client.api("POST", PUSH, body, conn=conn)


def opscom_error(client, expected_code, **fields):
    status, _, _, answer = push(client, **fields)
    expect_eq(status, 200, "OPS-COM error HTTP status")
    expect_eq(answer.get("ErrorCode"), expected_code, f"ErrorCode {fields}")
    return answer["ErrorMessage"]


def session_token(client):
    status, _, _, answer = client.api("POST", "/authentication-token",
                                      {"persistentAccessToken": PAT})
    expect_eq(status, 201, "token exchange status")
    return answer["tokenValue"]


def auth(token=STATIC_TOKEN):
    return {"X-Auth-Token": token}


NEW_PERSON = {"unique_id": "u1", "login_source": "BANNER",
              "email": "ada@example.edu", "first_name": "Ada",
              "last_name": "Lovelace"}


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------

def check_keep_alive(client):
    client.ok("reset")
    conn = client.connection()
    for _ in range(50):
        status, _, _, _ = client.api("POST", TYPES,
                                     {"apiToken": OPSCOM_TOKEN}, conn=conn)
        expect_eq(status, 200, "types/list status")
    conn.close()
    stats = client.ok("stats")
    expect_eq(stats["connections_total"], 1, "connections_total")
    expect_eq(stats["requests_total"], 50, "requests_total")
    conns = {r["conn"] for r in client.ok("requests")}
    expect_eq(len(conns), 1, "distinct conn ids")


def measure_rate(client, count):
    client.ok("reset")
    conn = client.connection()
    body = {"apiToken": OPSCOM_TOKEN}
    start = time.perf_counter()
    for _ in range(count):
        client.api("POST", TYPES, body, conn=conn)
    elapsed = time.perf_counter() - start
    conn.close()
    rate = count / elapsed
    expect_eq(client.ok("stats")["connections_total"], 1, "one connection")
    # measured and printed, not asserted: a timed test would fail on a busy machine
    return rate


def check_concurrency(client, threads=40, per_thread=25):
    client.ok("reset")
    errors = []
    # Every worker holds its connection open across the barrier, so the
    # mock really has `threads` connections open at the same time.
    all_open = threading.Barrier(threads + 1, timeout=20)
    counted = threading.Barrier(threads + 1, timeout=20)

    def requests(conn, count):
        for _ in range(count):
            status, _, _, _ = client.api("GET", "/person/1?findBy=id",
                                         headers=auth(), conn=conn)
            if status != 404:
                errors.append(status)

    def worker():
        conn = client.connection()
        try:
            requests(conn, 1)
            all_open.wait()
            counted.wait()
            requests(conn, per_thread - 1)
        except Exception as err:       # reported below
            errors.append(repr(err))
        finally:
            conn.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    all_open.wait()
    open_now = client.ok("stats")["connections_open"]
    counted.wait()
    for thread in workers:
        thread.join()
    expect(not errors, "concurrent requests failed", errors[:3])
    expect_eq(open_now, threads, "connections open at once")
    stats = client.ok("stats")
    expect_eq(stats["connections_total"], threads, "connections_total")
    expect_eq(stats["requests_total"], threads * per_thread, "requests")


def check_opscom_errors(client):
    client.ok("reset")
    status, _, _, answer = client.api("POST", PUSH, b'{"apiToken": "x"}',
                                      headers={"Content-Type": "text/plain"})
    expect_eq((status, answer["ErrorCode"]), (200, 9003), "wrong CT")
    status, _, _, answer = client.api("POST", PUSH, b"[1]", headers=JSON_CT)
    expect_eq(answer["ErrorCode"], 9003, "array body")
    _, _, _, answer = client.api("POST", PUSH, b"{nope", headers=JSON_CT)
    expect_eq(answer["ErrorCode"], 9003, "broken JSON")
    _, _, _, answer = client.api("POST", PUSH, {"unique_id": "u1"})
    expect_eq(answer["ErrorCode"], 9001, "missing apiToken")
    _, _, _, answer = client.api("POST", PUSH, {"apiToken": ""})
    expect_eq(answer["ErrorCode"], 9001, "empty apiToken")
    _, _, _, answer = client.api("POST", PUSH,
                                 {"apiToken": "secret-token-xyz"})
    expect_eq(answer, {"ErrorCode": 9002, "ErrorMessage":
                       "API token 'secret-token-xyz' has no permission"},
              "9002 echoes the token")
    _, _, _, answer = client.api("POST", TYPES, {"apiToken": "bad"})
    expect_eq(answer["ErrorCode"], 9002, "types/list bad token")

    opscom_error(client, 9033, **{**NEW_PERSON, "user_type_id": 6})
    opscom_error(client, 9013, login_source="BANNER")
    opscom_error(client, 9014, unique_id="u1")
    message = opscom_error(client, 9015, unique_id="u1", login_source="LDAP")
    expect_eq(message, "Login source 'LDAP' is invalid", "9015 message")
    message = opscom_error(client, 9030, **{**NEW_PERSON,
                                            "first_name": "x" * 51})
    expect_eq(message, "first_name exceeds maximum length of 50", "9030")
    opscom_error(client, 9030, **{**NEW_PERSON, "unique_id": "u" * 51})
    opscom_error(client, 9030, **{**NEW_PERSON, "street2": "s" * 21})
    opscom_error(client, 9030, **{**NEW_PERSON,
                                  "email": "a" * 95 + "@b.edu"})
    for field, value in (("province", "BCX"), ("state", "B1"),
                         ("driver_license_state", "C"),
                         ("date_of_birth", "2021-02-30"),
                         ("date_of_birth", "21-02-03"),
                         ("email", "not-an-email"),
                         ("user_type_id", "6a"),
                         ("locker_user_type_id", "-3")):
        message = opscom_error(client, 9033, **{**NEW_PERSON, field: value})
        expect_eq(message, f"Invalid value for {field}", "9033 message")
    for missing, code in (("email", 9016), ("first_name", 9017),
                          ("last_name", 9018)):
        fields = {k: v for k, v in NEW_PERSON.items() if k != missing}
        opscom_error(client, code, **fields)
    expect_eq(client.ok("opscom_profiles"), {}, "nothing stored on errors")


def check_opscom_success(client):
    client.ok("reset")
    # Characters, not bytes: 50 two-byte letters are within the limit.
    fields = {**NEW_PERSON, "first_name": "é" * 50, "province": "bc",
              "user_type_id": "6", "date_of_birth": "2000-02-29",
              "color": 12}   # unknown fields are ignored, whatever type
    status, headers, _, answer = push(client, **fields)
    expect_eq((status, answer), (200, {"status": "success",
                                       "reference_id": 44}), "create")
    expect(headers["content-type"].startswith("application/json"), "CT")
    # Update without names; charset parameter accepted.
    status, _, _, answer = client.api(
        "POST", PUSH, {"apiToken": OPSCOM_TOKEN, "unique_id": "u1",
                       "login_source": "OPSCOM", "city": "Ottawa"},
        headers={"Content-Type": "application/json; charset=utf-8"})
    expect_eq(answer, {"status": "success", "reference_id": 44}, "update")
    _, _, _, answer = push(client, **{**NEW_PERSON, "unique_id": "u2"})
    expect_eq(answer["reference_id"], 45, "second profile reference_id")
    profiles = client.ok("opscom_profiles")
    expect_eq(sorted(profiles), ["u1", "u2"], "stored profiles")
    last = profiles["u1"]["fields"]
    expect_eq(last, {"unique_id": "u1", "login_source": "OPSCOM",
                     "city": "Ottawa"}, "fields = last push without token")
    merged = profiles["u1"]["merged"]
    expect("apiToken" not in merged and "color" not in merged,
           "apiToken / unknown field merged", merged)
    expect_eq((merged["city"], merged["first_name"], merged["email"]),
              ("Ottawa", "é" * 50, "ada@example.edu"), "merged profile")
    expect_eq(profiles["u1"]["pushes"], 2, "push count")
    _, _, _, answer = client.api("POST", TYPES, {"apiToken": OPSCOM_TOKEN})
    expect_eq([t["id"] for t in answer["user_types"]], [6, 7, 8], "types")
    status, _, _, answer = client.api("POST", "/api/OC_TOMA/v1/nope",
                                      {"apiToken": OPSCOM_TOKEN})
    expect_eq((status, answer["ErrorCode"]), (404, 9000), "unknown path")
    client.ok("config", opscom_require_names_on_create="false")
    _, _, _, answer = push(client, unique_id="u3", login_source="BANNER")
    expect_eq(answer.get("status"), "success", "names not required")


def check_cloudcard_auth(client):
    client.ok("reset")
    before = time.time()
    status, _, _, answer = client.api("POST", "/authentication-token",
                                      {"persistentAccessToken": PAT})
    expect_eq(status, 201, "PAT exchange")
    token = answer["tokenValue"]
    expect(re.fullmatch(r"[0-9a-f]{40}", token), "tokenValue", token)
    expiry = datetime.datetime.strptime(answer["expirationDate"],
                                        "%Y-%m-%dT%H:%M:%SZ")
    expiry = expiry.replace(tzinfo=datetime.timezone.utc).timestamp()
    expect(abs(expiry - (before + 43200)) < 5, "expirationDate", answer)
    expect_eq(client.ok("stats")["token_exchanges"], 1, "token_exchanges")

    status, _, _, _ = client.api("POST", "/authentication-token",
                                 {"persistentAccessToken": "wrong"})
    expect_eq(status, 401, "bad PAT")
    status, _, _, _ = client.api("POST", "/authentication-token", {})
    expect_eq(status, 401, "missing PAT")
    status, _, _, _ = client.api("GET", "/person/1", headers=auth(token))
    expect_eq(status, 404, "session token accepted")
    status, _, raw, answer = client.api("GET", "/person/1",
                                        headers=auth("leaked-secret"))
    expect_eq((status, answer), (401, {"message": "Unauthorized"}),
              "bad token")
    expect(b"leaked-secret" not in raw, "401 must not echo the token")
    status, _, _, _ = client.api("GET", "/person/1")
    expect_eq(status, 401, "no token")
    client.ok("expire_tokens")
    status, _, _, _ = client.api("GET", "/person/1", headers=auth(token))
    expect_eq(status, 401, "expired session token")
    status, _, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq(status, 404, "static token still valid")
    client.ok("config", session_ttl_s=0.3)
    token = session_token(client)
    time.sleep(0.4)
    status, _, _, _ = client.api("GET", "/person/1", headers=auth(token))
    expect_eq(status, 401, "session token past its ttl")


def check_cloudcard_people(client):
    client.ok("reset")
    path = "/person/A123?findBy=identifier"
    status, _, _, _ = client.api("PUT", path, {"Dept": "X"}, auth())
    expect_eq(status, 404, "PUT unknown person")
    body = {"email": "ada@example.edu", "identifier": "A123",
            "customFields": {"Dept": "X"}}
    status, _, _, person = client.api("POST", "/person?sendInvitation=false",
                                      body, auth())
    expect_eq(status, 201, "POST /person")
    expect_eq(person["id"], 1001, "first id")
    expect_eq(person["username"], "ada@example.edu", "username")
    expect_eq(person["authorities"], [{"authority": "ROLE_CARDHOLDER"}],
              "default role")
    status, _, _, person = client.api(
        "PUT", path, {"Dept": "Y", "Campus": "Main", "enabled": False,
                      "ROLE_CARDHOLDER": True, "ROLE_OFFICE": True}, auth())
    expect_eq(status, 202, "PUT existing person")
    expect_eq(person["customFields"], {"Dept": "Y", "Campus": "Main"},
              "flat custom fields")
    expect_eq(person["enabled"], False, "enabled")
    expect_eq([a["authority"] for a in person["authorities"]],
              ["ROLE_CARDHOLDER", "ROLE_OFFICE"], "roles granted")
    _, _, _, person = client.api("PUT", path + "&updateRoles=false",
                                 {"ROLE_OFFICE": False}, auth())
    expect_eq(person["authorities"], [{"authority": "ROLE_CARDHOLDER"}],
              "updateRoles=false revokes only what is named")
    _, _, _, person = client.api("PUT", path, {"Dept": "Z"}, auth())
    expect_eq(person["authorities"], [], "updateRoles default drops roles")
    status, _, _, person = client.api(
        "GET", "/person/ADA@example.edu?findBy=email", headers=auth())
    expect_eq((status, person["id"]), (200, 1001), "GET by email")
    status, _, _, _ = client.api("GET", "/person/1001", headers=auth())
    expect_eq(status, 200, "GET by id (findBy absent)")

    for bad in ({"enabled": "true"}, {"ROLE_OFFICE": 1},
                {"additionalPhotoRequired": None}, {"email": "nope"}):
        status, _, _, answer = client.api("PUT", path, bad, auth())
        expect_eq(status, 400, f"PUT {bad}")
        expect(list(bad)[0] in answer["message"], "message names field",
               answer)
    status, _, _, _ = client.api("PUT", path, b'{"Dept": "Q"}',
                                 {**auth(), "Content-Type": "text/plain"})
    expect_eq(status, 415, "PUT without JSON content type")
    status, _, _, _ = client.api("PUT", path, b"[]",
                                 {**auth(), **JSON_CT})
    expect_eq(status, 400, "PUT array body")

    client.ok("config", cloudcard_put_body=False)
    status, headers, raw, _ = client.api("PUT", path, {"Dept": "W"}, auth())
    expect_eq((status, raw, headers["content-length"]), (202, b"", "0"),
              "PUT without answer body")

    status, _, _, answer = client.api("POST", "/person", body, auth())
    expect_eq((status, answer), (400, {"message": "Person already exists"}),
              "duplicate POST /person")
    status, _, _, _ = client.api("POST", "/person", {"customFields": {}},
                                 auth())
    expect_eq(status, 400, "POST /person without email or identifier")
    people = client.ok("cloudcard_people")
    expect_eq(len(people), 1, "one person stored")
    expect_eq(people[0]["customFields"]["Dept"], "W", "stored custom field")


def check_encoded_identifier(client):
    client.ok("reset")
    ident = "a/b?c#d%e+f g"
    status, _, _, _ = client.api("POST", "/person", {"identifier": ident},
                                 auth())
    expect_eq(status, 201, "create odd identifier")
    encoded = urllib.parse.quote(ident, safe="")
    status, _, _, person = client.api(
        "GET", f"/person/{encoded}?findBy=identifier", headers=auth())
    expect_eq((status, person and person["identifier"]), (200, ident),
              "GET percent-encoded identifier")
    record = client.ok("last", method="GET")
    expect_eq(record["path"], "/person/" + encoded, "raw path recorded")
    expect_eq(record["params"], {"findBy": "identifier"}, "params")
    client.api("POST", "/person", {"identifier": "x+y"}, auth())
    _, _, _, person = client.api("GET", "/person/x+y?findBy=identifier",
                                 headers=auth())
    expect_eq(person["identifier"], "x+y", "+ is not a space in a path")
    status, _, _, _ = client.api("GET", "/person/a/b?findBy=identifier",
                                 headers=auth())
    expect_eq(status, 404, "unencoded / is another path")


def check_api_people(client):
    client.ok("reset")
    body = {"email": "jack@example.edu", "identifier": "180214-01",
            "customFields": {"Batch": "1"}}
    status, _, _, person = client.api("POST", "/api/people", body, auth())
    expect_eq(status, 201, "/api/people create")
    status, _, _, _ = client.api("POST", "/api/people",
                                 {"identifier": "180214-01"}, auth())
    expect_eq(status, 400, "/api/people existing without allowUpdate")
    status, _, _, answer = client.api(
        "POST", "/api/people?allowUpdate=true&getLoginLink=true",
        {"identifier": "180214-01", "customFields": {"Upload": "x"}}, auth())
    expect_eq(status, 200, "/api/people update")
    expect_eq(answer["id"], person["id"], "same person")
    expect_eq(answer["customFields"], {"Batch": "1", "Upload": "x"},
              "nested custom fields merged")
    link = answer.get("links", {}).get("login", "")
    expect(re.fullmatch(r"https://app\.cloudcard\.test/#/login"
                        r"\?access_token=[0-9a-f]{32}", link), "login link",
           answer)
    status, _, _, answer = client.api("POST", "/api/people",
                                      {"email": "new@example.edu"}, auth())
    expect("links" not in answer, "no link unless asked")
    seeded = client.ok("cloudcard_seed", {
        "email": "seed@example.edu", "identifier": "S1",
        "customFields": {"Dept": "Math"}, "roles": ["ROLE_OFFICE"]})
    expect_eq(seeded["authorities"], [{"authority": "ROLE_OFFICE"}],
              "seeded roles")
    _, _, _, person = client.api("GET", "/person/S1?findBy=identifier",
                                 headers=auth())
    expect_eq(person, seeded, "seeded person served")


def check_behave_status(client):
    client.ok("reset")
    answer = client.ok("behave", status=503, retry_after=2, count=1,
                       path_prefix="/person")
    expect_eq(answer, {"ok": True, "rules": 1}, "behave answer")
    status, headers, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq((status, headers.get("retry-after")), (503, "2"),
              "status + Retry-After")
    status, _, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq(status, 404, "count=1 used up")
    # JSON-body form, method filter, raw body, count=2.
    client.ok("behave", {"method": "POST", "status": 429,
                         "body": "slow down", "count": 2})
    status, _, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq(status, 404, "method filter")
    for _ in range(2):
        status, headers, raw, _ = push(client, **NEW_PERSON)
        expect_eq((status, raw), (429, b"slow down"), "count=2 rule")
        expect(headers["content-type"].startswith("text/plain"), "raw CT")
    _, _, _, answer = push(client, **NEW_PERSON)
    expect_eq(answer.get("status"), "success", "third request normal")
    client.ok("behave", status=302, location="https://elsewhere.test/x",
              count=1)
    status, headers, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq((status, headers.get("location")),
              (302, "https://elsewhere.test/x"), "redirect")
    records = client.ok("requests", since=4)
    expect_eq([(r["seq"], r["status"]) for r in records],
              [(5, 429), (6, 200), (7, 302)], "requests since=4")
    status, answer = client.ctl("behave", status="abc")
    expect_eq(status, 400, "malformed behave")
    expect("error" in answer, "error message")
    status, _ = client.ctl("behave", colour="red")
    expect_eq(status, 400, "unknown behave field")
    client.ok("clear_behaviours")


def check_behave_delay(client):
    client.ok("reset")
    client.ok("behave", delay_ms=300, count=1)
    start = time.perf_counter()
    status, _, _, _ = client.api("GET", "/person/1", headers=auth())
    elapsed = time.perf_counter() - start
    expect_eq(status, 404, "delay then normal answer")
    expect(elapsed >= 0.3, f"delay measured {elapsed:.3f}s")
    client.api("GET", "/person/1", headers=auth())
    # the mock's own timestamps, not the client's clock: a busy machine
    # must not make this fail
    first, second = client.ok("requests")[:2]
    expect(first["t_done"] - first["t"] >= 0.3, "t / t_done", first)
    expect(second["t_done"] - second["t"] < 0.3, "delay count honoured", second)


def check_hostile_echo(client):
    client.ok("reset")
    token = OPSCOM_TOKEN
    client.ok("behave", {"echo": True, "count": 1, "status": 200, "body":
                         '{"a": "${token}", "b": "${token:upper}", '
                         '"c": "${token:u1}", "d": "${token:url}"}'})
    status, headers, raw, answer = push(client, **NEW_PERSON)
    expect_eq(status, 200, "echo status")
    expect_eq(answer, {"a": token, "b": token.upper(), "c": token,
                       "d": token}, "echo encodings, decoded")
    expect(b'"c": "\\u006f' in raw, "u1 escapes the first character", raw)
    client.ok("config", session_token_prefix='s/"')
    session = session_token(client)
    expect(session.startswith('s/"'), "session_token_prefix", session)
    expect_eq(client.ok("session_tokens"), [session], "session_tokens")
    client.ok("behave", {"echo": True, "count": 1, "status": 401,
                         "location": "http://x.test/?t=${token:url}",
                         "body": '{"message": "${token:slash} ${token:u}"}'})
    status, headers, raw, answer = client.api("GET", "/person/1",
                                              headers=auth(session))
    expect_eq(status, 401, "echo rule status")
    expect_eq(answer, {"message": session + " " + session}, "decoded echo")
    expect(b"s\\/\\\"" in raw and b"\\u0073\\u002f" in raw,
           "slash and u forms on the wire", raw)
    expect_eq(headers.get("location"), "http://x.test/?t=" +
              urllib.parse.quote(session, safe=""), "echo in Location")
    client.ok("reset")
    expect_eq(client.ok("session_tokens"), [], "session_tokens after reset")
    expect_eq(client.ok("config")["session_token_prefix"], "",
              "prefix after reset")


def check_hostile_bodies(client):
    client.ok("reset")
    client.ok("behave", body_base64="/w==", count=1)          # b"\xff"
    status, headers, raw, _ = push(client, **NEW_PERSON)
    expect_eq((status, raw, headers["content-type"]),
              (200, b"\xff", "application/json"), "body_base64")
    client.ok("behave", {"body": '{"pad": "${pad}"}', "pad_to": 5000,
                         "count": 1})
    status, _, raw, answer = push(client, **NEW_PERSON)
    expect_eq((status, len(raw), len(answer["pad"])), (200, 5000, 4989),
              "pad_to")
    client.ok("behave", gzip_bomb_mb=8, count=1)
    status, headers, raw, _ = push(client, **NEW_PERSON)
    expect_eq((status, headers.get("content-encoding")), (200, "gzip"),
              "gzip bomb headers")
    inflated = zlib.decompressobj(31).decompress(raw, 64)
    expect_eq(inflated[:31], b'{"status": "success", "pad": "a', "gzip bomb")
    expect(len(raw) < 64 * 1024, "gzip bomb is small", len(raw))
    # endless: read 1 MiB of it, then hang up
    client.ok("behave", {"status": 503, "body": "{", "endless": True,
                         "count": 1})
    conn = client.connection()
    conn.request("POST", PUSH, body=json.dumps({"apiToken": OPSCOM_TOKEN}),
                 headers=JSON_CT)
    resp = conn.getresponse()
    expect_eq((resp.status, resp.getheader("transfer-encoding")),
              (503, "chunked"), "endless headers")
    got = resp.read(1024 * 1024)
    expect_eq((len(got), got[:3]), (1024 * 1024, b"{xx"), "endless body")
    conn.close()
    _, _, _, answer = push(client, **NEW_PERSON)
    expect_eq(answer.get("status"), "success", "normal after endless")


def check_hostile_trickle(client):
    client.ok("reset")
    # lower bounds only: the mock sleeps between bytes, whatever the load
    client.ok("behave", {"status": 200, "body": "0123456789",
                         "trickle_ms": 50, "trickle_body_only": True,
                         "count": 1})
    start = time.perf_counter()
    status, headers, raw, _ = push(client, **NEW_PERSON)
    elapsed = time.perf_counter() - start
    expect_eq((status, raw), (200, b"0123456789"), "trickled body")
    expect(elapsed >= 0.5, f"10 bytes 50 ms apart took {elapsed:.3f}s")
    client.ok("behave", status=204, trickle_ms=5, count=1)
    start = time.perf_counter()
    status, _, raw, _ = push(client, **NEW_PERSON)
    elapsed = time.perf_counter() - start
    expect_eq((status, raw), (204, b""), "trickled headers")
    expect(elapsed >= 0.3, f"headers 5 ms a byte took {elapsed:.3f}s")


def check_behave_drop(client):
    client.ok("reset")
    client.ok("behave", drop="true", count=1)
    sock = socket.create_connection(("127.0.0.1", client.api_port), 5)
    sock.sendall(b"GET /person/1 HTTP/1.1\r\nHost: x\r\n"
                 b"X-Auth-Token: " + STATIC_TOKEN.encode() + b"\r\n\r\n")
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    except (TimeoutError, socket.timeout):
        raise CheckFailed("dropped connection not closed", data) from None
    finally:
        sock.close()
    expect_eq(data, b"", "dropped: no response bytes")
    records = client.ok("requests")
    expect_eq(records[-1]["status"], None, "dropped request status")
    status, _, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq(status, 404, "after the drop")


def connection_refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), 2).close()
    except ConnectionRefusedError:
        return True
    return False


def check_down_up(client):
    client.ok("reset")
    idle = [client.connection(), client.connection(tls=True)]
    for conn in idle:
        client.api("GET", "/person/1", headers=auth(), conn=conn)
        conn.sock.settimeout(3)
    expect_eq(client.ok("down"), {"ok": True}, "down")
    expect(connection_refused(client.api_port), "refused while down")
    expect(connection_refused(client.tls_port), "TLS refused while down")
    for conn in idle:
        try:
            closed = conn.sock.recv(1) == b""
        except (TimeoutError, socket.timeout):
            closed = False
        except (ConnectionResetError, ssl.SSLError):
            closed = True
        expect(closed, "open connection closed by down")
        conn.close()
    expect_eq(client.ok("stats")["connections_open"], 0, "none open")
    client.ok("up")
    status, _, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq(status, 404, "serving after up")
    client.ok("down", seconds=1)
    expect(connection_refused(client.api_port), "refused after down?1")
    time.sleep(1.4)
    status, _, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq(status, 404, "came back by itself")


def check_in_flight(client):
    client.ok("reset")
    client.ok("behave", delay_ms=500)
    statuses = []

    def one():
        statuses.append(client.api("GET", "/person/1", headers=auth())[0])

    workers = [threading.Thread(target=one) for _ in range(8)]
    for thread in workers:
        thread.start()
    time.sleep(0.25)
    expect_eq(client.ok("stats")["in_flight"], 8, "in_flight mid-way")
    for thread in workers:
        thread.join()
    stats = client.ok("stats")
    expect_eq(stats["max_in_flight"], 8, "max_in_flight")
    expect_eq(stats["in_flight"], 0, "in_flight after")
    expect_eq(statuses, [404] * 8, "delayed answers")


def check_tls(client):
    client.ok("reset")
    conn = client.connection(tls=True)
    for _ in range(3):
        status, _, _, _ = client.api("GET", "/person/1", headers=auth(),
                                     conn=conn)
        expect_eq(status, 404, "HTTPS request")
    conn.close()
    records = client.ok("requests")
    expect(all(r["tls"] for r in records), "tls flag recorded")
    expect_eq(client.ok("stats")["connections_total"], 1, "TLS keep-alive")
    _, _, _, answer = push(client, **NEW_PERSON)
    expect_eq(client.ok("last")["tls"], False, "plain request tls flag")


def check_control_forms(client):
    client.ok("reset")
    status, _ = client.ctl("nonsense")
    expect_eq(status, 404, "unknown command")
    config = client.ok("config", {"login_sources": ["LDAP"],
                                  "opscom_tokens": ["t1", "t2"]})
    expect_eq(config["login_sources"], ["LDAP"], "config via JSON")
    config = client.ok("config", cloudcard_pats="p1,p2", session_ttl_s=60)
    expect_eq(config["cloudcard_pats"], ["p1", "p2"], "config via query")
    status, _ = client.ctl("config", session_ttl_s="soon")
    expect_eq(status, 400, "malformed config")
    expect_eq(client.ok("last"), None, "last with nothing recorded")


def check_reset(client):
    client.ok("config", opscom_tokens="other")
    push(client, **NEW_PERSON)
    client.api("POST", "/person", {"email": "a@b.edu"}, auth())
    client.ok("behave", status=500)
    client.ok("down", seconds=30)
    expect_eq(client.ok("reset"), {"ok": True}, "reset")
    expect_eq(client.ok("requests"), [], "requests cleared")
    stats = client.ok("stats")
    expect_eq([stats[k] for k in ("connections_total", "requests_total",
                                  "max_in_flight", "token_exchanges")],
              [0, 0, 0, 0], "stats cleared")
    expect_eq(client.ok("opscom_profiles"), {}, "profiles cleared")
    expect_eq(client.ok("cloudcard_people"), [], "people cleared")
    config = client.ok("config")
    expect_eq(config["opscom_tokens"], [OPSCOM_TOKEN], "config restored")
    _, _, _, answer = push(client, **NEW_PERSON)
    expect_eq(answer, {"status": "success", "reference_id": 44},
              "rules cleared, API up, reference ids restart")


def check_sigterm(proc):
    start = time.time()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=5)
    expect_eq(code, 0, "exit status after SIGTERM")
    expect(time.time() - start < 2.5, "prompt exit")


# --------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate-requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        cert, key = make_cert(directory)
        proc, ports = start_mock(directory, cert, key)
        client = Client(ports, cert)
        checks = [
            ("keep-alive: 50 requests, one connection", check_keep_alive),
            ("32+ concurrent keep-alive connections", check_concurrency),
            ("OPS-COM error codes", check_opscom_errors),
            ("OPS-COM success, reference_id, types", check_opscom_success),
            ("CloudCard PAT exchange, 401, expire_tokens",
             check_cloudcard_auth),
            ("CloudCard PUT 404 / POST 201 / PUT 202", check_cloudcard_people),
            ("percent-encoded identifier round trip",
             check_encoded_identifier),
            ("/api/people with getLoginLink, seed", check_api_people),
            ("behave: status, retry_after, count, location",
             check_behave_status),
            ("behave: delay_ms", check_behave_delay),
            ("behave: drop", check_behave_drop),
            ("hostile: echo encodings, session tokens", check_hostile_echo),
            ("hostile: raw bytes, pad_to, gzip bomb, endless",
             check_hostile_bodies),
            ("hostile: trickle", check_hostile_trickle),
            ("down / up / down?seconds", check_down_up),
            ("max_in_flight with 8 delayed requests", check_in_flight),
            ("TLS listener", check_tls),
            ("control argument forms and errors", check_control_forms),
            ("reset", check_reset),
        ]
        rate = []
        checks += [
            ("keep-alive requests answered, one client thread",
             lambda c: rate.append(measure_rate(c, args.rate_requests))),
            ("SIGTERM -> exit 0", lambda c: check_sigterm(proc)),
        ]
        try:
            for name, check in checks:
                check(client)
                print(f"ok   {name}", flush=True)
            print(f"     measured: {rate[0]:.0f} req/s over "
                  f"{args.rate_requests} requests", flush=True)
        except Exception as err:      # any failure ends the run, reported
            print(f"FAIL {name}: {type(err).__name__}: {err}", flush=True)
            return 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
