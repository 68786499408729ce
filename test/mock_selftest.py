#!/usr/bin/env python3
"""Self-test of test/mock_api.py (standard library only).

Starts the mock on free ports, plain HTTP and HTTPS (throwaway self-signed
certificate made with openssl), and checks its vendor and control APIs.
Prints one line per check; exits non-zero on the first failure.

    python3 test/mock_selftest.py [--rate-requests N]
"""

import argparse
import datetime
import hashlib
import hmac
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


def opscom_error(client, expected_code, http_status=200, **fields):
    status, _, _, answer = push(client, **fields)
    expect_eq(status, http_status, "OPS-COM error HTTP status")
    expect_eq(answer.get("ErrorCode"), expected_code, f"ErrorCode {fields}")
    return answer["ErrorMessage"]


def session_token(client, pat=PAT, path="/authentication-token"):
    status, _, _, answer = client.api("POST", path,
                                      {"persistentAccessToken": pat})
    # 201 as the pages say, 200 as CloudCard's clients see (the switch)
    expect_eq(status, client.ok("config")["cloudcard_exchange_status"],
              "token exchange status")
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
    hook(client, {"a": 1})
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
    expect_eq(client.ok("webhook_deliveries"), [], "deliveries cleared")
    config = client.ok("config")
    expect_eq(config["opscom_tokens"], [OPSCOM_TOKEN], "config restored")
    _, _, _, answer = push(client, **NEW_PERSON)
    expect_eq(answer, {"status": "success", "reference_id": 44},
              "rules cleared, API up, reference ids restart")


# --------------------------------------------------------------------------
# Realistic switches (/_mock/config), sessions and logout
# --------------------------------------------------------------------------

NOT_FOUND = {"message": "Not Found"}
LINK_RE = (r"https://app\.cloudcard\.test/#/login"
           r"\?access_token=[0-9a-f]{32}")
SERVLET_400 = ("<html><body><h1>HTTP Status 400 \u2013 Bad Request"
               "</h1></body></html>").encode("utf-8")
DEPRECATED_OFF = {"message": "Deprecated endpoints are disabled for this "
                             "organization"}
PAT_USED_UP = {"message": "Persistent access token has been used the "
                          "maximum number of times"}
# The (R) switches: default value, realistic value.
REALISTIC = {
    "cloudcard_api_prefix": (False, True),
    "cloudcard_create_empty_body": (False, True),
    "cloudcard_expired_status": (401, 403),
    "cloudcard_deprecated_endpoints": (True, False),
    "cloudcard_with_links": (False, True),
    "cloudcard_reject_encoded_slash": (False, True),
    "cloudcard_exchange_status": (201, 200),
    "opscom_error_status": (200, 400),
    "opscom_reference_id_string": (False, True),
    "opscom_user_type_ids_string": (False, True),
}
# The new switches outside the preset, with their defaults.
NOT_REALISTIC = {"cloudcard_pat_max_uses": None,
                 "cloudcard_deprecated_status": 403,
                 "webhook_signing_secret": None, "webhook_status": 200}


def sessions(client):
    return client.ok("cloudcard_sessions")


def expect_config_error(client, what, **params):
    status, answer = client.ctl("config", **params)
    expect_eq(status, 400, what)
    expect("error" in answer, "config error message", answer)


def check_api_prefix(client):
    client.ok("reset")
    expect_eq(client.ok("config")["cloudcard_api_prefix"], False, "default")
    expect_eq(client.ok("stats")["api_api_requests"], 0, "counter at reset")
    # default: no /api prefix (but /api/people, as ever)
    for method, path, body in (
            ("POST", "/api/authentication-token",
             {"persistentAccessToken": PAT}),
            ("GET", "/api/person/1001", None),
            ("POST", "/api/person", {"email": "p@example.edu"}),
            ("POST", "/api/person/me/logout", None)):
        status, _, _, answer = client.api(method, path, body, auth())
        expect_eq((status, answer), (404, NOT_FOUND), f"{method} {path}")
    status, _, _, _ = client.api("POST", "/api/people",
                                 {"email": "p@example.edu"}, auth())
    expect_eq(status, 201, "/api/people without the prefix switch")
    # /api/api/ is 404 and counted, in both modes, whatever answers it
    status, _, _, answer = client.api("GET", "/api/api/person/1001",
                                      headers=auth())
    expect_eq((status, answer), (404, NOT_FOUND), "/api/api/ (default)")
    status, _, _, answer = client.api("POST", "/api/api/OC_TOMA" + PUSH[12:],
                                      {"apiToken": OPSCOM_TOKEN,
                                       **NEW_PERSON})
    expect_eq((status, answer), (404, NOT_FOUND), "/api/api/ OPS-COM path")
    status, _, _, answer = client.api("POST", "/api/OC_TOMA/api/api/v1",
                                      {"apiToken": OPSCOM_TOKEN})
    expect_eq((status, answer), (404, NOT_FOUND),
              "/api/api/ inside the OPS-COM prefix: no ErrorCode 9000")
    expect_eq(client.ok("stats")["api_api_requests"], 3, "counter")
    client.ok("behave", status=503, path_prefix="/api/api/", count=1)
    status, _, _, _ = client.api("GET", "/api/api/person/1", headers=auth())
    expect_eq(status, 503, "rule answers the /api/api/ request")
    expect_eq(client.ok("stats")["api_api_requests"], 4, "counted anyway")
    status, _, _, _ = client.api("GET", "/person/api/api/", headers=auth())
    expect_eq(status, 404, "/api/api/ anywhere in the path")
    expect_eq(client.ok("stats")["api_api_requests"], 5, "counter, inside")
    status, _, _, _ = client.api("GET", "/api/api", headers=auth())
    expect_eq(client.ok("stats")["api_api_requests"], 5,
              "/api/api without a slash after it is not counted")

    # switched: every CloudCard endpoint under /api as well
    config = client.ok("config", cloudcard_api_prefix="true")
    expect_eq((config["cloudcard_api_prefix"], config["realistic"]),
              (True, None), "prefix on, preset mixed")
    token = session_token(client, path="/api/authentication-token")
    status, _, _, person = client.api("POST", "/api/person?sendInvitation="
                                      "false", {"email": "q@example.edu",
                                                "identifier": "Q1"},
                                      auth(token))
    expect_eq((status, person["identifier"]), (201, "Q1"), "POST /api/person")
    status, _, _, answer = client.api("GET", "/api/person/Q1?findBy="
                                      "identifier", headers=auth(token))
    expect_eq((status, answer), (200, person), "GET /api/person")
    status, _, _, answer = client.api("PUT", "/api/person/Q1?findBy="
                                      "identifier", {"Dept": "X"},
                                      auth(token))
    expect_eq((status, answer["customFields"]), (202, {"Dept": "X"}),
              "PUT /api/person")
    status, _, _, answer = client.api("GET", "/person/Q1?findBy=identifier",
                                      headers=auth(token))
    expect_eq(status, 200, "unprefixed paths still served")
    status, _, _, _ = client.api("POST", "/api/people",
                                 {"email": "r@example.edu"}, auth(token))
    expect_eq(status, 201, "/api/people with the prefix switch")
    status, _, _, answer = client.api("POST", "/people",
                                      {"email": "s@example.edu"}, auth(token))
    expect_eq((status, answer), (404, NOT_FOUND), "no /people without /api")
    status, _, raw, _ = client.api("POST", "/api/person/me/logout",
                                   headers=auth(token))
    expect_eq((status, raw), (204, b""), "POST /api/person/me/logout")
    for path in ("/api/api/person/Q1?findBy=identifier",
                 "/api/api/authentication-token"):
        status, _, _, answer = client.api(
            "POST" if "token" in path else "GET", path,
            {"persistentAccessToken": PAT} if "token" in path else None,
            auth())
        expect_eq((status, answer), (404, NOT_FOUND), path + " (prefix on)")
    expect_eq(client.ok("stats")["api_api_requests"], 7, "counter, prefix on")
    client.ok("reset")
    expect_eq(client.ok("stats")["api_api_requests"], 0, "counter reset")
    expect_eq(client.ok("config")["cloudcard_api_prefix"], False, "reset")


def check_create_empty_body(client):
    client.ok("reset")
    # default: the person JSON, renderResource ignored (even a bad one)
    for n, query in enumerate(("", "?renderResource=false",
                               "?renderResource=maybe")):
        status, headers, _, person = client.api(
            "POST", "/person" + query, {"email": f"e{n}@example.edu"},
            auth())
        expect_eq((status, person and person["email"]),
                  (201, f"e{n}@example.edu"), f"POST /person{query} default")
        expect(headers["content-type"].startswith("application/json"), "CT")
    client.ok("config", cloudcard_create_empty_body=True)
    for n, query in enumerate(("", "?sendInvitation=false",
                               "?renderResource=false")):
        status, headers, raw, _ = client.api(
            "POST", "/person" + query, {"email": f"f{n}@example.edu"},
            auth())
        expect_eq((status, raw, headers.get("content-length"),
                   headers.get("content-type")), (201, b"", "0", None),
                  f"POST /person{query}: empty body")
    status, headers, _, person = client.api(
        "POST", "/person?renderResource=true&sendInvitation=false",
        {"email": "g@example.edu", "identifier": "G1"}, auth())
    expect_eq((status, person["email"], person["identifier"]),
              (201, "g@example.edu", "G1"), "renderResource=true")
    expect(headers["content-type"].startswith("application/json"), "CT")
    status, _, _, answer = client.api("POST", "/person?renderResource=maybe",
                                      {"email": "h@example.edu"}, auth())
    expect_eq((status, answer),
              (400, {"message": "Invalid value for renderResource"}),
              "bad renderResource")
    emails = sorted(p["email"] for p in client.ok("cloudcard_people"))
    expect_eq(emails, ["e0@example.edu", "e1@example.edu", "e2@example.edu",
                       "f0@example.edu", "f1@example.edu", "f2@example.edu",
                       "g@example.edu"], "stored, nothing for the 400")
    status, _, _, answer = client.api("POST", "/person",
                                      {"email": "g@example.edu"}, auth())
    expect_eq((status, answer), (400, {"message": "Person already exists"}),
              "duplicate still a 400 with a body")
    status, _, _, person = client.api("PUT", "/person/G1?findBy=identifier",
                                      {"Dept": "X"}, auth())
    expect_eq((status, person["customFields"]), (202, {"Dept": "X"}),
              "PUT keeps its body")


def check_email_only_people(client):
    for realistic in (False, True):
        client.ok("reset")
        client.ok("config", realistic=realistic)
        base = "/api" if realistic else ""
        token = session_token(client, path=base + "/authentication-token")
        seeded = client.ok("cloudcard_seed", email="office@example.edu")
        expect_eq((seeded["identifier"], seeded["email"]),
                  (None, "office@example.edu"), "seeded by email only")
        mode = "realistic" if realistic else "default"
        status, _, _, answer = client.api(
            "PUT", base + "/person/E77?findBy=identifier&updateRoles=false",
            {"identifier": "E77", "Dept": "X"}, auth(token))
        expect_eq((status, answer), (404, NOT_FOUND),
                  f"PUT by identifier ({mode})")
        status, _, _, answer = client.api(
            "POST", base + "/person?sendInvitation=false",
            {"email": "OFFICE@example.edu", "identifier": "E77"},
            auth(token))
        expect_eq((status, answer),
                  (400, {"message": "Person already exists"}),
                  f"POST with its email ({mode})")
        email = urllib.parse.quote("office@example.edu", safe="")
        status, _, raw, person = client.api(
            "PUT", base + f"/person/{email}?findBy=email&updateRoles=false",
            {"identifier": "E77", "Dept": "X"}, auth(token))
        expect_eq((status, person["id"], person["identifier"]),
                  (202, seeded["id"], "E77"), f"PUT by email ({mode})")
        status, _, _, person = client.api(
            "GET", base + "/person/E77?findBy=identifier",
            headers=auth(token))
        expect_eq((status, person["email"], person["customFields"],
                   person["authorities"]),
                  (200, "office@example.edu", {"Dept": "X"},
                   seeded["authorities"]), f"found by identifier ({mode})")
        expect_eq(len(client.ok("cloudcard_people")), 1, "still one person")


def check_exchange_status(client):
    for mode, expected in ((False, 201), (True, 200)):
        client.ok("reset")
        client.ok("config", realistic=mode)
        status, _, _, answer = client.api("POST", "/authentication-token",
                                          {"persistentAccessToken": PAT})
        expect_eq(status, expected, f"exchange status, realistic={mode}")
        expect("tokenValue" in answer, "exchange answer", answer)
    client.ok("reset")
    expect_config_error(client, "exchange status out of range",
                        cloudcard_exchange_status=302)


def check_expired_status(client):
    client.ok("reset")
    expect_eq(client.ok("config")["cloudcard_expired_status"], 401,
              "default")
    for expired_status, message in ((401, "Unauthorized"), (403, "Forbidden"),
                                    (419, "Error")):
        client.ok("reset")
        client.ok("config", cloudcard_expired_status=expired_status)
        logged_out = session_token(client)
        client.api("POST", "/person/me/logout",
                   {"authenticationToken": logged_out}, auth())
        revoked = session_token(client)
        client.ok("expire_tokens")
        client.ok("config", session_ttl_s=0.2)
        past_ttl = session_token(client)
        time.sleep(0.3)
        for what, token in (("unknown", "no-such-token"),
                            ("logged out", logged_out),
                            ("revoked", revoked), ("past its ttl", past_ttl)):
            for method, path in (("GET", "/person/1"),
                                 ("POST", "/person/me/logout")):
                status, _, raw, answer = client.api(method, path,
                                                    headers=auth(token))
                expect_eq((status, answer),
                          (expired_status, {"message": message}),
                          f"{what} token, {method} {path}")
                expect(token.encode() not in raw, "token not echoed")
        status, _, _, answer = client.api("GET", "/person/1")
        expect_eq((status, answer), (401, {"message": "Unauthorized"}),
                  "no token at all: 401 whatever the switch")
        status, _, _, answer = client.api("POST", "/authentication-token",
                                          {"persistentAccessToken": "nope"})
        expect_eq((status, answer), (401, {"message": "Unauthorized"}),
                  "refused PAT: 401 whatever the switch")
        status, _, _, _ = client.api("GET", "/person/1", headers=auth())
        expect_eq(status, 404, "static token still valid")
    for bad in ("200", "302", "600", "abc"):
        expect_config_error(client, f"cloudcard_expired_status={bad}",
                            cloudcard_expired_status=bad)


def check_pat_max_uses(client):
    client.ok("reset")
    expect_eq(client.ok("config")["cloudcard_pat_max_uses"], None, "default")
    for _ in range(5):
        session_token(client)
    expect_eq(client.ok("stats")["token_exchanges"], 5, "unlimited")
    client.ok("config", cloudcard_pat_max_uses=5)
    status, _, _, answer = client.api("POST", "/authentication-token",
                                      {"persistentAccessToken": PAT})
    expect_eq((status, answer), (401, PAT_USED_UP),
              "uses counted since the reset, not since the switch")
    client.ok("reset")
    client.ok("config", {"cloudcard_pat_max_uses": 2,
                         "cloudcard_pats": [PAT, "pat-two"],
                         "cloudcard_expired_status": 403})
    first = session_token(client)
    session_token(client)
    for _ in range(2):
        status, _, _, answer = client.api("POST", "/authentication-token",
                                          {"persistentAccessToken": PAT})
        expect_eq((status, answer), (401, PAT_USED_UP), "third use refused")
    session_token(client, pat="pat-two")
    status, _, _, answer = client.api("POST", "/authentication-token",
                                      {"persistentAccessToken": "wrong"})
    expect_eq((status, answer), (401, {"message": "Unauthorized"}),
              "unknown PAT: plain 401")
    expect_eq(client.ok("stats")["token_exchanges"], 3, "refusals not counted")
    expect_eq(sessions(client)["exchanges"], 3, "sessions: exchanges")
    status, _, _, _ = client.api("GET", "/person/1", headers=auth(first))
    expect_eq(status, 404, "tokens already issued stay valid")
    client.ok("config", cloudcard_pat_max_uses="null")
    session_token(client)
    client.ok("config", cloudcard_pat_max_uses=0)
    status, _, _, answer = client.api("POST", "/authentication-token",
                                      {"persistentAccessToken": "pat-two"})
    expect_eq((status, answer), (401, PAT_USED_UP), "max 0")
    expect_config_error(client, "negative max uses",
                        cloudcard_pat_max_uses=-1)
    client.ok("reset")
    expect_eq(client.ok("config")["cloudcard_pat_max_uses"], None, "reset")
    session_token(client)


def check_sessions_logout(client):
    client.ok("reset")
    expect_eq(sessions(client), {"exchanges": 0, "logouts": 0,
                                 "logout_all": 0, "live": 0}, "at reset")
    t1, t2, t3 = (session_token(client) for _ in range(3))
    expect_eq(sessions(client), {"exchanges": 3, "logouts": 0,
                                 "logout_all": 0, "live": 3}, "3 sessions")

    def valid(token):
        status = client.api("GET", "/person/1", headers=auth(token))[0]
        expect(status in (404, 401), "unexpected status", status)
        return status == 404

    # one session, named in the body, ended with another session's token
    status, headers, raw, _ = client.api(
        "POST", "/person/me/logout", {"authenticationToken": t2}, auth(t1))
    expect_eq((status, raw, headers.get("content-type")), (204, b"", None),
              "logout t2")
    expect_eq([valid(t) for t in (t1, t2, t3)], [True, False, True],
              "only t2 ended")
    expect_eq(sessions(client), {"exchanges": 3, "logouts": 1,
                                 "logout_all": 0, "live": 2}, "after one")
    # its own session, then a token that is no session: still 204
    status, _, _, _ = client.api("POST", "/person/me/logout",
                                 {"authenticationToken": t3}, auth(t3))
    expect_eq(status, 204, "logout of the caller's own session")
    status, _, _, _ = client.api("POST", "/person/me/logout",
                                 {"authenticationToken": "nobody"}, auth(t1))
    expect_eq(status, 204, "logout of a token that is no session")
    expect_eq(sessions(client), {"exchanges": 3, "logouts": 3,
                                 "logout_all": 0, "live": 1}, "after three")
    # refused: no token, an ended token, bad bodies, other methods
    status, _, _, answer = client.api("POST", "/person/me/logout",
                                      {"authenticationToken": t1})
    expect_eq((status, answer), (401, {"message": "Unauthorized"}),
              "logout without X-Auth-Token")
    status, _, _, _ = client.api("POST", "/person/me/logout",
                                 {"authenticationToken": t1}, auth(t2))
    expect_eq(status, 401, "logout with an ended session token")
    for body, message in ((b"[1]", "Request body must be a JSON object"),
                          (b"{nope", "Request body must be a JSON object"),
                          (b'{"authenticationToken": 5}',
                           "authenticationToken must be a string")):
        status, _, _, answer = client.api("POST", "/person/me/logout", body,
                                          {**auth(t1), **JSON_CT})
        expect_eq((status, answer), (400, {"message": message}),
                  f"logout body {body!r}")
    for method in ("GET", "PUT", "DELETE"):
        status, _, _, _ = client.api(method, "/person/me/logout",
                                     headers=auth(t1))
        expect_eq(status, 404, f"{method} /person/me/logout")
    expect_eq(valid(t1), True, "t1 survived the refused logouts")
    expect_eq(sessions(client), {"exchanges": 3, "logouts": 3,
                                 "logout_all": 0, "live": 1}, "unchanged")
    # every kind of body without a token ends every live session
    all_forms = (
        ("empty body", None, {}),
        ("{}", {}, {}),
        ("other keys", {"token": "x"}, {}),
        ("null token", {"authenticationToken": None}, {}),
        ('"" token', {"authenticationToken": ""}, {}),
        ("not typed JSON", json.dumps({"authenticationToken": "t"}),
         {"Content-Type": "text/plain"}),
    )
    for n, (what, body, headers) in enumerate(all_forms, start=1):
        a, b = session_token(client), session_token(client)
        status, _, raw, _ = client.api("POST", "/person/me/logout", body,
                                       {**auth(a), **headers})
        expect_eq((status, raw), (204, b""), f"logout all: {what}")
        expect_eq([valid(t) for t in (a, b, t1)], [False] * 3,
                  f"every session ended: {what}")
        expect_eq(sessions(client), {"exchanges": 3 + 2 * n,
                                     "logouts": 3 + n, "logout_all": n,
                                     "live": 0}, f"counts: {what}")
    # with a static token: every session ends, the static one stays
    a = session_token(client)
    status, _, _, _ = client.api("POST", "/person/me/logout", headers=auth())
    expect_eq((status, valid(a), valid(STATIC_TOKEN)), (204, False, True),
              "logout all with a static token")
    # live leaves out sessions past their ttl and revoked ones
    client.ok("reset")
    client.ok("config", session_ttl_s=0.2)
    session_token(client)
    client.ok("config", session_ttl_s=60)
    session_token(client)
    time.sleep(0.3)
    expect_eq(sessions(client)["live"], 1, "expired session not live")
    client.ok("expire_tokens")
    expect_eq(sessions(client), {"exchanges": 2, "logouts": 0,
                                 "logout_all": 0, "live": 0},
              "expire_tokens ends every session")
    status, _ = client.ctl("cloudcard_sessions", since=1)
    expect_eq(status, 400, "cloudcard_sessions takes no argument")


def check_deprecated_endpoints(client):
    client.ok("reset")
    config = client.ok("config")
    expect_eq((config["cloudcard_deprecated_endpoints"],
               config["cloudcard_deprecated_status"]), (True, 403), "default")
    status, _, _, answer = client.api(
        "POST", "/api/people?getLoginLink=true", {"email": "d@example.edu"},
        auth())
    expect_eq((status, "links" in answer), (201, True), "default: served")
    client.ok("config", cloudcard_deprecated_endpoints="false")
    for dep_status in (403, 404):
        client.ok("config", cloudcard_deprecated_status=dep_status)
        for query in ("", "?getLoginLink=true",
                      "?allowUpdate=true&getLoginLink=true"):
            status, _, _, answer = client.api(
                "POST", "/api/people" + query, {"email": "d@example.edu"},
                auth())
            expect_eq((status, answer), (dep_status, DEPRECATED_OFF),
                      f"/api/people{query} disabled ({dep_status})")
        status, _, _, answer = client.api("POST", "/api/people",
                                          {"email": "x@example.edu"},
                                          auth("bad-token"))
        expect_eq((status, answer), (401, {"message": "Unauthorized"}),
                  "authentication first")
    expect_eq(len(client.ok("cloudcard_people")), 1, "nothing created")
    status, _, _, _ = client.api("POST", "/person",
                                 {"email": "e@example.edu"}, auth())
    expect_eq(status, 201, "POST /person not deprecated")
    for bad in ("200", "302", "600"):
        expect_config_error(client, f"cloudcard_deprecated_status={bad}",
                            cloudcard_deprecated_status=bad)
    client.ok("reset")
    status, _, _, _ = client.api("POST", "/api/people",
                                 {"email": "d@example.edu"}, auth())
    expect_eq(status, 201, "served again after reset")


def check_with_links(client):
    client.ok("reset")
    seeded = client.ok("cloudcard_seed", {"email": "w@example.edu",
                                          "identifier": "W 1"})
    paths = ("/people/W%201/with-links?findBy=identifier",
             "/people/w%40example.edu/with-links?findBy=email",
             f"/people/{seeded['id']}/with-links?findBy=id",
             f"/people/{seeded['id']}/with-links")
    for path in paths:       # default: the endpoint does not exist
        for headers in (auth(), {}):
            status, _, _, answer = client.api("GET", path, headers=headers)
            expect_eq((status, answer), (404, NOT_FOUND), "default " + path)
    client.ok("config", cloudcard_with_links=True)
    links = set()
    for path in paths:
        status, _, _, answer = client.api("GET", path, headers=auth())
        expect_eq(status, 200, path)
        link = answer.pop("links")
        expect_eq(list(link), ["login"], "links keys")
        expect(re.fullmatch(LINK_RE, link["login"]), "login link", link)
        links.add(link["login"])
        expect_eq(answer, seeded, "person JSON")
    expect_eq(len(links), len(paths), "a new link each time")
    for path, wanted in (("/people/nobody/with-links?findBy=identifier",
                          (404, NOT_FOUND)),
                         ("/people/9999/with-links?findBy=id",
                          (404, NOT_FOUND)),
                         ("/people/W%201/with-links?findBy=name",
                          (400, {"message": "Invalid findBy: name"}))):
        status, _, _, answer = client.api("GET", path, headers=auth())
        expect_eq((status, answer), wanted, path)
    status, _, _, answer = client.api("GET", paths[0])
    expect_eq((status, answer), (401, {"message": "Unauthorized"}), "no auth")
    status, _, _, _ = client.api("POST", paths[0], {}, auth())
    expect_eq(status, 404, "POST with-links")
    status, _, _, _ = client.api("GET", "/api" + paths[0], headers=auth())
    expect_eq(status, 404, "/api/people/.../with-links needs the prefix")
    client.ok("config", cloudcard_api_prefix=True)
    status, _, _, answer = client.api("GET", "/api" + paths[0],
                                      headers=auth())
    expect_eq((status, answer["identifier"]), (200, "W 1"),
              "/api/people/.../with-links")
    client.ok("reset")
    status, _, _, _ = client.api("GET", paths[0], headers=auth())
    expect_eq(status, 404, "gone after reset")


def check_encoded_slash(client):
    client.ok("reset")
    client.api("POST", "/person", {"identifier": "a/b"}, auth())
    for path in ("/person/a%2Fb?findBy=identifier",
                 "/person/a%2fb?findBy=identifier"):
        status, _, _, person = client.api("GET", path, headers=auth())
        expect_eq((status, person["identifier"]), (200, "a/b"),
                  "default: %2F served " + path)
    client.ok("config", cloudcard_reject_encoded_slash=True)
    for method, path, headers in (
            ("GET", "/person/a%2Fb?findBy=identifier", auth()),
            ("PUT", "/person/a%2fb?findBy=identifier", auth()),
            ("GET", "/person/a%2Fb?findBy=identifier", {}),
            ("GET", "/person/a%2Fb", auth("bad-token")),
            ("GET", "/nowhere/%2F", {}),
            ("GET", "/api/api/a%2Fb", auth())):
        status, resp_headers, raw, _ = client.api(
            method, path, {"Dept": "X"} if method == "PUT" else None,
            headers)
        expect_eq((status, resp_headers.get("content-type"), raw),
                  (400, "text/html;charset=utf-8", SERVLET_400),
                  f"{method} {path} refused")
    expect_eq(client.ok("stats")["api_api_requests"], 1,
              "refused /api/api/ still counted")
    status, _, _, person = client.api(
        "GET", "/person/a%252Fb?findBy=identifier", headers=auth())
    expect_eq(status, 404, "%252F is no %2F")
    status, _, _, answer = client.api(
        "GET", "/person/1001?findBy=id&x=a%2Fb", headers=auth())
    expect_eq(status, 200, "%2F in the query is fine")
    status, _, _, answer = client.api("POST", "/api/OC_TOMA/v1/x%2Fy",
                                      {"apiToken": OPSCOM_TOKEN})
    expect_eq((status, answer["ErrorCode"]), (404, 9000),
              "OPS-COM paths not affected")
    expect_eq(client.ok("cloudcard_people")[0]["customFields"], {},
              "the refused PUT changed nothing")


def check_opscom_switches(client):
    client.ok("reset")
    config = client.ok("config")
    expect_eq([config[k] for k in ("opscom_error_status",
                                   "opscom_reference_id_string",
                                   "opscom_user_type_ids_string")],
              [200, False, False], "defaults")
    for error_status in (200, 400, 422, 500):
        client.ok("reset")
        client.ok("config", opscom_error_status=error_status)
        opscom_error(client, 9013, error_status, login_source="BANNER")
        opscom_error(client, 9033, error_status,
                     **{**NEW_PERSON, "province": "XYZ"})
        for path in (PUSH, TYPES):
            status, _, _, answer = client.api("POST", path,
                                              {"apiToken": "bad"})
            expect_eq((status, answer["ErrorCode"]), (error_status, 9002),
                      f"bad token {path}")
        status, _, _, answer = client.api("POST", PUSH, b"{nope",
                                          headers=JSON_CT)
        expect_eq((status, answer["ErrorCode"]), (error_status, 9003),
                  "unparseable")
        status, _, _, answer = client.api("POST", "/api/OC_TOMA/v1/nope",
                                          {"apiToken": OPSCOM_TOKEN})
        expect_eq((status, answer["ErrorCode"]), (404, 9000),
                  "unknown endpoint stays 404")
        status, _, _, answer = push(client, **NEW_PERSON)
        expect_eq((status, answer), (200, {"status": "success",
                                           "reference_id": 44}),
                  "success stays 200")
    for bad in ("199", "600", "x"):
        expect_config_error(client, f"opscom_error_status={bad}",
                            opscom_error_status=bad)

    client.ok("reset")
    client.ok("config", opscom_reference_id_string=True)
    for unique_id, wanted in (("u1", "44"), ("u2", "45"), ("u1", "44")):
        status, _, raw, answer = push(client, **{**NEW_PERSON,
                                                 "unique_id": unique_id})
        expect_eq((status, answer), (200, {"status": "success",
                                           "reference_id": wanted}),
                  f"reference_id string {unique_id}")
        expect(f'"reference_id": "{wanted}"'.encode() in raw, "on the wire")
    profiles = client.ok("opscom_profiles")
    expect_eq((profiles["u1"]["reference_id"], profiles["u2"]["reference_id"]),
              (44, 45), "opscom_profiles keeps numbers")
    _, _, _, answer = client.api("POST", TYPES, {"apiToken": OPSCOM_TOKEN})
    expect_eq([t["id"] for t in answer["user_types"]], [6, 7, 8],
              "type ids untouched by the reference_id switch")

    client.ok("config", opscom_user_type_ids_string=True,
              opscom_reference_id_string=False)
    status, _, _, answer = client.api("POST", TYPES,
                                      {"apiToken": OPSCOM_TOKEN})
    expect_eq((status, answer), (200, {"status": "success", "user_types": [
        {"id": "6", "type_name": "Student", "ext_info": None},
        {"id": "7", "type_name": "Staff", "ext_info": "union"},
        {"id": "8", "type_name": "Faculty", "ext_info": None}]}),
        "type ids as strings")
    _, _, _, answer = push(client, **{**NEW_PERSON, "unique_id": "u3"})
    expect_eq(answer["reference_id"], 46, "reference_id a number again")
    client.ok("reset")
    _, _, _, answer = client.api("POST", TYPES, {"apiToken": OPSCOM_TOKEN})
    expect_eq([t["id"] for t in answer["user_types"]], [6, 7, 8],
              "numbers after reset")


def check_realistic_preset(client):
    client.ok("reset")
    config = client.ok("config")
    expect_eq({k: config[k] for k in REALISTIC},
              {k: v[0] for k, v in REALISTIC.items()}, "defaults")
    expect_eq({k: config[k] for k in NOT_REALISTIC}, NOT_REALISTIC,
              "non-preset defaults")
    expect_eq(config["realistic"], False, "realistic false at reset")
    before = dict(config)
    # the preset sets exactly the (R) switches
    client.ok("config", cloudcard_pat_max_uses=7,
              cloudcard_deprecated_status=404, session_ttl_s=99,
              webhook_status=202)
    config = client.ok("config", realistic="true")
    expect_eq({k: config[k] for k in REALISTIC},
              {k: v[1] for k, v in REALISTIC.items()}, "realistic values")
    expect_eq((config["realistic"], config["cloudcard_pat_max_uses"],
               config["cloudcard_deprecated_status"],
               config["session_ttl_s"], config["webhook_status"]),
              (True, 7, 404, 99, 202), "other keys untouched by the preset")
    # the preset first, then the other keys of the same call
    config = client.ok("config", {"realistic": True,
                                  "cloudcard_expired_status": 401})
    expect_eq((config["cloudcard_expired_status"], config["realistic"],
               config["cloudcard_api_prefix"]), (401, None, True),
              "preset, then a key of the same call: mixed")
    config = client.ok("config", realistic=False)
    expect_eq({k: config[k] for k in REALISTIC},
              {k: v[0] for k, v in REALISTIC.items()}, "realistic: false")
    expect_eq((config["realistic"], config["cloudcard_pat_max_uses"]),
              (False, 7), "back to defaults, pat_max_uses kept")
    config = client.ok("config", realistic=True)
    client.ok("reset")
    expect_eq(client.ok("config"), before, "reset restores every default")
    expect_config_error(client, "misspelt preset", realistc="true")
    expect_config_error(client, "preset not a bool", realistic="very")
    expect_eq(client.ok("config"), before, "errors change nothing")

    # a realistic session from end to end
    client.ok("config", realistic=True)
    status, _, _, answer = client.api("POST", "/api/authentication-token",
                                      {"persistentAccessToken": PAT})
    expect_eq(status, 200, "exchange under /api (200 in the realistic preset)")
    token = answer["tokenValue"]
    status, _, raw, _ = client.api("POST", "/api/person?sendInvitation=false",
                                   {"email": "z@example.edu",
                                    "identifier": "Z1"}, auth(token))
    expect_eq((status, raw), (201, b""), "create: empty body")
    status, _, _, answer = client.api(
        "GET", "/api/people/Z1/with-links?findBy=identifier",
        headers=auth(token))
    expect_eq((status, answer["email"]), (200, "z@example.edu"), "with-links")
    expect(re.fullmatch(LINK_RE, answer["links"]["login"]), "link", answer)
    status, _, _, answer = client.api("POST", "/api/people?getLoginLink=true",
                                      {"identifier": "Z1"}, auth(token))
    expect_eq((status, answer), (403, DEPRECATED_OFF), "deprecated off")
    status, _, raw, _ = client.api("GET",
                                   "/api/person/a%2Fb?findBy=identifier",
                                   headers=auth(token))
    expect_eq((status, raw), (400, SERVLET_400), "%2F refused")
    status, _, _, answer = client.api("GET", "/api/api/person/Z1?findBy="
                                      "identifier", headers=auth(token))
    expect_eq((status, answer), (404, NOT_FOUND), "/api/api/")
    status, _, _, _ = client.api("POST", "/api/person/me/logout",
                                 {"authenticationToken": token}, auth(token))
    expect_eq(status, 204, "logout under /api")
    status, _, _, answer = client.api("GET", "/api/person/Z1?findBy="
                                      "identifier", headers=auth(token))
    expect_eq((status, answer), (403, {"message": "Forbidden"}),
              "logged-out token: 403")
    status, _, _, answer = push(client, login_source="BANNER")
    expect_eq((status, answer["ErrorCode"]), (400, 9013), "OPS-COM 400")
    status, _, _, answer = push(client, **NEW_PERSON)
    expect_eq((status, answer), (200, {"status": "success",
                                       "reference_id": "44"}),
              "OPS-COM reference_id string")
    _, _, _, answer = client.api("POST", TYPES, {"apiToken": OPSCOM_TOKEN})
    expect_eq([t["id"] for t in answer["user_types"]], ["6", "7", "8"],
              "OPS-COM type ids strings")
    expect_eq(client.ok("stats")["api_api_requests"], 1, "api_api counter")
    expect_eq(sessions(client), {"exchanges": 1, "logouts": 1,
                                 "logout_all": 0, "live": 0}, "sessions")
    client.ok("reset")
    status, _, _, person = client.api("POST", "/person",
                                      {"email": "z@example.edu"}, auth())
    expect_eq((status, person["email"]), (201, "z@example.edu"),
              "after reset: today's behaviour")


def check_proxy_html_502(client):
    client.ok("reset")
    html = ("<html><head><title>502 Bad Gateway</title></head><body>"
            "<center><h1>502 Bad Gateway</h1></center></body></html>")
    client.ok("behave", {"status": 502, "body": html,
                         "content_type": "text/html", "count": 2})
    for method, path, body in (("POST", PUSH, {"apiToken": OPSCOM_TOKEN}),
                               ("GET", "/person/1", None)):
        status, headers, raw, _ = client.api(method, path, body, auth())
        expect_eq((status, headers.get("content-type"), raw),
                  (502, "text/html", html.encode()), f"proxy 502 {path}")
    status, _, _, _ = client.api("GET", "/person/1", headers=auth())
    expect_eq(status, 404, "normal after the 502s")


# --------------------------------------------------------------------------
# Webhook receiver
# --------------------------------------------------------------------------

HOOK = "/hooks/people"
WEBHOOK_SECRET = "It's a Secret to Everybody"
# GitHub's published example: WEBHOOK_SECRET over the body "Hello, World!".
GITHUB_SIGNATURE = ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c"
                    "46f4379c8b043e17")
BAD_SIGNATURE = {"message": "bad signature"}


def sign(raw, secret=WEBHOOK_SECRET):
    digest = hmac.new(secret.encode("utf-8"), raw, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def hook(client, body, path=HOOK, signature=None, content_type=JSON_CT):
    """POST a delivery: body a JSON-able value or raw bytes."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = dict(content_type)
    if signature is not None:
        headers["X-Signature"] = signature
    return client.api("POST", path, raw, headers)


def expect_hook_error(client, status, message, body, what, **kwargs):
    """A refused delivery: status, {"message"} and nothing kept."""
    before = client.ok("webhook_deliveries")
    got, _, _, answer = hook(client, body, **kwargs)
    expect_eq(got, status, what + ": status")
    expect(isinstance(answer, dict) and message in answer.get("message", ""),
           what + f": message with {message!r}", answer)
    expect_eq(client.ok("webhook_deliveries"), before, what + ": not kept")


def check_webhook(client):
    client.ok("reset")
    config = client.ok("config")
    expect_eq((config["webhook_signing_secret"], config["webhook_status"]),
              (None, 200), "defaults")
    # no secret: anything typed JSON object is kept, signed or not
    status, headers, _, answer = hook(client, {"name": "Ada", "n": 1})
    expect_eq((status, answer), (200, {"id": "wh-1"}), "unsigned delivery")
    expect_eq(headers.get("content-type"), "application/json", "answer type")
    status, _, _, answer = hook(
        client, {"b": [1]}, path="/hooks",
        content_type={"Content-Type": "Application/JSON; charset=utf-8"})
    expect_eq((status, answer), (200, {"id": "wh-2"}), "/hooks, charset")
    status, _, _, answer = hook(client, {}, path="/hooks/a/b?x=1",
                                signature="sha256=not-checked")
    expect_eq((status, answer), (200, {"id": "wh-3"}),
              "any signature without a secret")
    expect_eq(client.ok("webhook_deliveries"), [
        {"path": HOOK, "body": {"name": "Ada", "n": 1}, "signature": None},
        {"path": "/hooks", "body": {"b": [1]}, "signature": None},
        {"path": "/hooks/a/b", "body": {}, "signature": "sha256=not-checked"},
    ], "deliveries in order")
    record = client.ok("last", path_prefix="/hooks")
    expect_eq([record[k] for k in ("method", "path", "query", "body",
                                   "json", "status")],
              ["POST", "/hooks/a/b", "x=1", "{}", {}, 200], "recorded")
    expect_eq((record["headers"].get("content-type"),
               record["headers"].get("x-signature")),
              ("application/json", "sha256=not-checked"), "recorded headers")
    # what is refused, and never kept
    for raw, kind in ((b"[1, 2]", "array"), (b'"text"', "string"),
                      (b"null", "null"), (b"42", "number"),
                      (b"true", "boolean")):
        expect_hook_error(client, 400, "JSON object", raw, f"body {raw!r}")
        expect_hook_error(client, 400, kind, raw, f"body {raw!r} named")
    expect_hook_error(client, 400, "not JSON", b"{nope", "not JSON")
    expect_hook_error(client, 400, "not JSON", b'{"n": NaN}', "NaN")
    expect_hook_error(client, 400, "not JSON", b'{"a": "\xff"}', "not UTF-8")
    expect_hook_error(client, 400, "empty", b"", "empty body")
    for content_type in ({"Content-Type": "text/plain"},
                         {"Content-Type": "application/jsonx"},
                         {"Content-Type": "application/x-www-form-urlencoded"},
                         {}):
        expect_hook_error(client, 400, "Content-Type", {"a": 1},
                          f"content type {content_type}",
                          content_type=content_type)
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        for path in (HOOK, "/hooks"):
            status, headers, _, answer = client.api(method, path, {"a": 1})
            expect_eq((status, answer, headers.get("allow")),
                      (405, {"message": "Method Not Allowed"}, "POST"),
                      f"{method} {path}")
    status, _, _, answer = hook(client, {"a": 1}, path="/hooksx")
    expect_eq((status, answer), (404, NOT_FOUND), "/hooksx is not the hook")
    # fault rules apply to the hook like to the vendors
    client.ok("behave", path_prefix="/hooks", status=503, count=1)
    status, _, _, _ = hook(client, {"a": 1})
    expect_eq(status, 503, "behave on /hooks")
    expect_eq(len(client.ok("webhook_deliveries")), 3, "only the 3 kept")
    status, _, _, answer = hook(client, {"a": 1})
    expect_eq((status, answer), (200, {"id": "wh-4"}),
              "ids count kept deliveries only")
    client.ok("reset")
    expect_eq(client.ok("webhook_deliveries"), [], "reset forgets them")
    _, _, _, answer = hook(client, {"a": 1})
    expect_eq(answer, {"id": "wh-1"}, "ids restart after reset")


def check_webhook_switches(client):
    client.ok("reset")
    config = client.ok("config", {"webhook_signing_secret": WEBHOOK_SECRET})
    expect_eq(config["webhook_signing_secret"], WEBHOOK_SECRET, "secret set")
    # GitHub's example signature passes (then its body is refused: not JSON)
    expect_hook_error(client, 400, "not JSON", b"Hello, World!",
                      "GitHub's example", signature=GITHUB_SIGNATURE)
    expect_hook_error(client, 401, "bad signature", b"Hello, World!",
                      "GitHub's example unsigned")
    raw = b'{"name": "Ada",  "n": 1}'
    good = sign(raw)
    status, _, _, answer = hook(client, raw, signature=good)
    expect_eq((status, answer), (200, {"id": "wh-1"}), "signed delivery")
    status, _, _, answer = hook(client, raw, signature=good)
    expect_eq((status, answer), (200, {"id": "wh-2"}), "same body again")
    hexdigest = good[len("sha256="):]
    for what, signature, body in (
            ("missing", None, raw),
            ("empty", "", raw),
            ("of another body", sign(b'{"name": "Ada", "n": 1}'), raw),
            ("another secret", sign(raw, "other"), raw),
            ("upper-case hex", "sha256=" + hexdigest.upper(), raw),
            ("upper-case scheme", "SHA256=" + hexdigest, raw),
            ("no scheme", hexdigest, raw),
            ("sha1 scheme", "sha1=" + hexdigest, raw),
            ("truncated", good[:-1], raw),
            ("extra character", good + "0", raw),
            ("non-ASCII", "sha256=\u00e9", raw),
            ("twice", good + ", " + good, raw),
            ("empty body", sign(raw), b"")):
        status, _, _, answer = hook(client, body, signature=signature)
        expect_eq((status, answer), (401, BAD_SIGNATURE), f"signature {what}")
    # the signature is checked first: a bad one is 401 whatever the body
    expect_hook_error(client, 401, "bad signature", b"[1]", "401 before 400",
                      signature="sha256=00")
    expect_hook_error(client, 401, "bad signature", raw, "401 before type",
                      signature="sha256=00",
                      content_type={"Content-Type": "text/plain"})
    expect_hook_error(client, 400, "Content-Type", raw, "signed, bad type",
                      signature=good,
                      content_type={"Content-Type": "text/plain"})
    status, _, _, answer = client.api("GET", HOOK)
    expect_eq((status, answer), (405, {"message": "Method Not Allowed"}),
              "405 before the signature")
    expect_eq(client.ok("webhook_deliveries"), [
        {"path": HOOK, "body": {"name": "Ada", "n": 1}, "signature": good},
    ] * 2, "only the well-signed deliveries kept")
    expect_eq(client.ok("last", path_prefix="/hooks")["status"], 405,
              "refused deliveries recorded")
    # null turns the check off: JSON null, then "null" in a query
    config = client.ok("config", {"webhook_signing_secret": None})
    expect_eq(config["webhook_signing_secret"], None, "secret null (JSON)")
    status, _, _, answer = hook(client, {"a": 1})
    expect_eq((status, answer), (200, {"id": "wh-3"}), "unsigned again")
    client.ok("config", webhook_signing_secret="s")
    config = client.ok("config", webhook_signing_secret="null")
    expect_eq(config["webhook_signing_secret"], None, "secret null (query)")
    client.ok("config", webhook_signing_secret="caf\u00e9")
    status, _, _, answer = hook(client, raw, signature=sign(raw, "caf\u00e9"))
    expect_eq((status, answer), (200, {"id": "wh-4"}), "secret as UTF-8")
    client.ok("config", {"webhook_signing_secret": None})

    client.ok("reset")
    for webhook_status in (200, 201, 202, 299):
        client.ok("config", webhook_status=webhook_status)
        status, _, _, answer = hook(client, {"s": webhook_status})
        expect_eq(status, webhook_status, f"webhook_status {webhook_status}")
        expect_eq(set(answer), {"id"}, f"{webhook_status}: an id")
    client.ok("config", webhook_status=204)
    status, headers, raw, _ = hook(client, {"s": 204})
    expect_eq((status, raw, headers.get("content-type"),
               headers.get("content-length", "0")), (204, b"", None, "0"),
              "204: no body")
    client.ok("config", webhook_status=202)
    status, _, _, answer = hook(client, {"s": 202})
    expect_eq((status, answer), (202, {"id": "wh-6"}), "204 was counted")
    for webhook_status in (400, 404, 410, 500, 503, 599):
        client.ok("config", webhook_status=webhook_status)
        expect_hook_error(client, webhook_status,
                          f"webhook_status {webhook_status}",
                          {"s": webhook_status}, f"{webhook_status}")
        _, _, _, answer = hook(client, {"s": webhook_status})
        expect_eq(answer, {"message": f"webhook_status {webhook_status}"},
                  f"{webhook_status}: message")
    client.ok("config", webhook_status=500,
              webhook_signing_secret=WEBHOOK_SECRET)
    expect_hook_error(client, 401, "bad signature", {"a": 1},
                      "signature before webhook_status")
    client.ok("config", webhook_status=200)
    raw = b'{"last": true}'
    status, _, _, answer = hook(client, raw, signature=sign(raw))
    expect_eq((status, answer), (200, {"id": "wh-7"}),
              "non-2xx deliveries not counted")
    expect_eq([d["body"] for d in client.ok("webhook_deliveries")],
              [{"s": 200}, {"s": 201}, {"s": 202}, {"s": 299}, {"s": 204},
               {"s": 202}, {"last": True}], "kept: 2xx only, 204 too")
    for bad in ("199", "600", "x", "null"):
        expect_config_error(client, f"webhook_status={bad}",
                            webhook_status=bad)
    client.ok("reset")
    config = client.ok("config")
    expect_eq((config["webhook_signing_secret"], config["webhook_status"]),
              (None, 200), "reset restores the defaults")
    expect_eq(client.ok("webhook_deliveries"), [], "reset forgets them")
    status, _, _, answer = hook(client, {"a": 1})
    expect_eq((status, answer), (200, {"id": "wh-1"}),
              "after reset: unsigned, 200, ids from 1")


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
            ("CloudCard /api prefix, /api/api/ counter", check_api_prefix),
            ("CloudCard POST /person empty body, renderResource",
             check_create_empty_body),
            ("CloudCard person known only by email, both modes",
             check_email_only_people),
            ("CloudCard token exchange status (201; 200 as its clients see)",
             check_exchange_status),
            ("CloudCard expired session token status",
             check_expired_status),
            ("CloudCard PAT max uses", check_pat_max_uses),
            ("CloudCard sessions and logout", check_sessions_logout),
            ("CloudCard deprecated endpoints off",
             check_deprecated_endpoints),
            ("CloudCard GET /people/{key}/with-links", check_with_links),
            ("CloudCard %2F refused by the servlet container",
             check_encoded_slash),
            ("OPS-COM error status, string ids", check_opscom_switches),
            ("realistic preset, its reset, a realistic session",
             check_realistic_preset),
            ("behave: HTML 502 from a proxy", check_proxy_html_502),
            ("webhook: JSON object bodies, 400 / 405, deliveries, reset",
             check_webhook),
            ("webhook: signing secret, webhook_status, reset",
             check_webhook_switches),
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
