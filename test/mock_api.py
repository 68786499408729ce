#!/usr/bin/env python3
"""Mock of the two SaaS APIs campus_sync talks to: OPS-COM and CloudCard.

Python 3 standard library only.  One process serves both vendor APIs and
a webhook receiver (their paths do not collide) plus a separate control
listener that tests use to inspect what the client sent and to inject
faults.  This file is the entry point (command line, HTTP server, control
API, recorder, fault rules and config); the vendors are played by
mock_opscom.py and mock_cloudcard.py, the receiver by mock_webhook.py,
with helpers they share in mock_common.py (all next to this file).

Command line
------------
    python3 test/mock_api.py --ready-file PATH [--host 127.0.0.1]
        [--api-port 0] [--control-port 0]
        [--tls-port 0 --cert CERT.pem --key KEY.pem] [--quiet | --verbose]

Port 0 picks a free port.  Once every listener is bound, PATH is written
atomically (temporary file + rename) with
    {"api": P1, "control": P2, "tls": P3 or null, "pid": PID}
The process runs until SIGTERM or SIGINT and then exits with status 0.
Logging is off by default; --verbose logs each request to stderr.

Vendor APIs (API listener, plain HTTP and optionally HTTPS)
------------------------------------------------------------
OPS-COM   POST /api/OC_TOMA/v1/profiles/push
          POST /api/OC_TOMA/v1/profiles/types/list
          Errors are {"ErrorCode": N, "ErrorMessage": "..."} with HTTP
          status opscom_error_status (default 200; an unknown endpoint is
          404 with ErrorCode 9000 whatever the switch).
CloudCard POST /authentication-token          (PAT -> session token)
          GET  /person/{key}?findBy=id|email|identifier
          PUT  /person/{key}?findBy=...&updateRoles=true|false
          POST /person?sendInvitation=...[&renderResource=true]
          POST /person/me/logout              ({"authenticationToken": t}
                                               or no token: see below)
          POST /api/people?allowUpdate=&sendInvitation=&getLoginLink=
          GET  /people/{key}/with-links?findBy=...  (cloudcard_with_links)
          With cloudcard_api_prefix each of them but /api/people is also
          served under /api (/api/person/..., /api/authentication-token,
          ...); /api/people has its /api in both modes.  Always: a path
          containing /api/api/ is 404 {"message": "Not Found"} (a base
          URL ending in /api plus paths that start with /api again), and
          counted in /_mock/stats as api_api_requests.
          Auth: X-Auth-Token, a session token or one of
          cloudcard_auth_tokens (static, never expire, never logged out).
          No token: 401 {"message": "Unauthorized"}; an unknown, expired,
          revoked (expire_tokens) or logged-out token: status
          cloudcard_expired_status with its reason phrase as message
          (401 "Unauthorized", 403 "Forbidden").  A refused PAT at the
          exchange is always 401.
Webhook   POST /hooks and /hooks/{anything}: a delivery, a JSON object with
          Content-Type application/json (parameters such as charset
          allowed), else 400 {"message": "..."} saying what is wrong;
          another method: 405 {"message": "Method Not Allowed"}, Allow:
          POST.  webhook_signing_secret (default null: no check; a string
          is the HMAC key, as UTF-8): X-Signature must be exactly sha256=
          and the lowercase hex HMAC-SHA256 of the raw body bytes, as
          GitHub signs (upper-case hex is refused), else 401 {"message":
          "bad signature"}, checked before the content type and body.
          webhook_status (default 200; 200-599): the answer to a delivery
          that passed: a 2xx is {"id": "wh-N"} (N counts the kept
          deliveries from 1 since the reset), 204 has no body; any other
          status is {"message": "webhook_status S"} and the delivery is not
          kept.  Neither switch is in the `realistic` preset.

Control API (control listener; GET or POST; arguments as a JSON object body
and/or URL query parameters; every answer is one line of JSON + newline)
------------------------------------------------------------------------
/_mock/reset             forget requests, stats, rules, data, tokens and
                         sessions (and their counts, PAT uses included),
                         config (every default, realistic switches too);
                         also brings the API listeners back up
/_mock/requests?since=N  recorded API requests with seq > N
/_mock/last?path_prefix=&method=   last matching request or null
/_mock/stats             connection / request counters: connections_total,
                         connections_open, requests_total, in_flight,
                         max_in_flight, token_exchanges, api_api_requests
                         (requests whose raw path contains /api/api/,
                         counted on arrival whatever answers them)
/_mock/behave            add a fault rule: method, path_prefix, status, body,
                         retry_after, location, delay_ms, drop, count; and the
                         hostile ones: echo, body_base64, content_type,
                         pad_to, endless, trickle_ms, trickle_body_only,
                         gzip_bomb_mb (see "Hostile answers" below)
/_mock/clear_behaviours  remove every fault rule
/_mock/down[?seconds=S]  refuse new API connections, close open ones
                         (and come back by itself after S seconds)
/_mock/up                serve again on the same ports
/_mock/expire_tokens     revoke every CloudCard session token issued so far
/_mock/session_tokens    every CloudCard session token issued since the reset
/_mock/cloudcard_sessions  {"exchanges": N, "logouts": N, "logout_all": N,
                         "live": N}: PAT exchanges that issued a token,
                         logouts answered 204 (both kinds), those of them
                         that ended every session, and sessions neither
                         expired, revoked nor ended now; since the reset
/_mock/config            set opscom_tokens, login_sources, cloudcard_pats,
                         cloudcard_auth_tokens, session_ttl_s,
                         opscom_require_names_on_create, cloudcard_put_body,
                         session_token_prefix (put before each new session
                         token, to issue tokens with characters JSON or
                         URLs escape), the realistic switches and the
                         `realistic` preset (see "Realistic switches"),
                         webhook_signing_secret (null: JSON null or "null"
                         in a query) and webhook_status (see "Webhook");
                         answers every value
/_mock/opscom_profiles   unique_id -> {"reference_id", "fields" (the last
                         push minus apiToken), "merged", "pushes"}
/_mock/cloudcard_people  stored people, as GET /person would return them
/_mock/cloudcard_seed    store a person (JSON body); returns it with its id
/_mock/webhook_deliveries  the kept webhook deliveries, in order, each
                         {"path" (raw, no query), "body" (the JSON object),
                         "signature" (X-Signature as sent, or null)}
/_mock/ping              {"ok": true}

Example from a shell or from COPY ... FROM PROGRAM:
    curl -s 'http://127.0.0.1:C/_mock/behave?status=503&retry_after=2&count=1'
Query values are converted to the argument's type ("503" -> 503,
"true" -> true, lists as "a,b"); unknown arguments are a 400 error, so a
typo in a test fails loudly instead of being ignored.

Fault rules (/_mock/behave).  The first rule that matches (method, raw
path prefix) and has uses left (count; absent = forever) is consumed.  Its
delay_ms is slept first; then drop closes the connection with no answer;
otherwise, if the rule has status, body, retry_after or location, that
answer replaces normal processing (status defaults to 302 with location,
else 503; body defaults to a small JSON error, and a body that is not JSON
goes out as text/plain); a rule with only delay_ms then answers normally.

Hostile answers (/_mock/behave, for the client's defences; status
defaults to 200 in a rule with any of these but echo).  echo: in
body and location, ${token} stands for the credential of the request (its
X-Auth-Token header, else the apiToken or persistentAccessToken of its JSON
body), JSON-string-escaped; ${token:upper} upper-cased; ${token:slash} with
"/" written "\\/"; ${token:u} every character as \\uXXXX; ${token:u1} only
the first; ${token:url} percent-encoded; ${token:text} as it is.
body_base64: the body as raw bytes (not UTF-8, say); content_type: its
Content-Type (default application/json for it).  pad_to: the body padded
to that many bytes (${pad} in it is replaced by the padding, else spaces
are appended).  endless: a chunked body that never ends (the body, then
64 KiB chunks of "x", until the client hangs up; 256 MiB at most).
trickle_ms: the answer is written one byte at a time, that many ms apart
(trickle_body_only: the status line and headers at once).  gzip_bomb_mb:
200 with Content-Encoding: gzip, whatever the request asked for: a JSON
body of that many MiB, gzip-compressed (about 1/1000 of the size).

Realistic switches (/_mock/config).  Each default keeps the mock as it
was before them; (R) marks the switches that `realistic: true` sets to
the value after "R:" at once, and `realistic: false` puts back to their
default (the preset is applied before the other keys of the same call, so
realistic=true&cloudcard_expired_status=401 works).  The config answer's
`realistic` is true when every (R) switch has its realistic value, false
when every one has its default, null when mixed.  /_mock/reset restores
every default.
  cloudcard_api_prefix (R)   false; R: true.  Also serve every CloudCard
        endpoint under /api (see above), as CloudCard's own clients call it.
  cloudcard_create_empty_body (R)  false; R: true.  POST /person answers
        201 with an empty body (no Content-Type, Content-Length 0) unless
        renderResource=true (then the person JSON, as with false).  Only
        then is renderResource read: an invalid value is a 400.
  cloudcard_expired_status (R)  401; R: 403 (400-599).  See "Auth" above.
  cloudcard_pat_max_uses     null (unlimited; else >= 0); not in the
        preset.  Each PAT may be exchanged that many times in all since the
        reset; then 401 {"message": "Persistent access token has been used
        the maximum number of times"}.  Counted per PAT; only exchanges that
        issued a token count; changing the switch keeps the counts.
  cloudcard_deprecated_endpoints (R)  true; R: false.  When false, POST
        /api/people (authenticated first) answers cloudcard_deprecated_status
        {"message": "Deprecated endpoints are disabled for this
        organization"}, whatever its query.
  cloudcard_deprecated_status  403 (400-599, e.g. 404); not in the preset.
  cloudcard_with_links (R)   false (the endpoint does not exist: 404
        {"message": "Not Found"}, no auth); R: true: GET
        /people/{key}/with-links?findBy=id|email|identifier (authenticated)
        -> 200 the person JSON plus "links": {"login": LOGIN_LINK + 32 hex
        digits}, 404 when unknown.
  cloudcard_exchange_status (R)  201; R: 200 (200-299): the status of a
        successful token exchange (the pages say 201; CloudCard's own clients
        see 200).
  cloudcard_reject_encoded_slash (R)  false; R: true: a raw path (not the
        query) holding %2F or %2f, on any CloudCard path, is answered 400
        text/html;charset=utf-8 "<html><body><h1>HTTP Status 400 \\u2013
        Bad Request</h1></body></html>" (\\u2013: an en dash, UTF-8) as
        the servlet container in front of CloudCard does, before the
        /api/api/ check, routing and auth.  OPS-COM paths are not affected.
  opscom_error_status (R)    200; R: 400 (200-599).  See OPS-COM above.
  opscom_reference_id_string (R)  false; R: true: the push answer's
        reference_id is a JSON string ("44"); /_mock/opscom_profiles keeps
        the number.
  opscom_user_type_ids_string (R)  false; R: true: each profiles/types/list
        id is a JSON string ("6").

Sessions and logout (always on).  Every PAT exchange starts a session
(session_ttl_s).  POST /person/me/logout (also /api/person/me/logout with
cloudcard_api_prefix) needs a valid X-Auth-Token (see "Auth"); with a JSON
body {"authenticationToken": "<t>"} (Content-Type application/json) it
ends session t, else (an empty body, a body that is not typed JSON, a
JSON object without authenticationToken, or with null or "") it ends EVERY
live session, as CloudCard ends every session of the account; either way
204 with no body, also when t is not a live session.  Typed JSON that is
not an object, or a non-string authenticationToken: 400.

Recorded requests (/_mock/requests) have seq, conn, method, path (raw, no
query), query, params, headers (lower-case names), body, json, status (null
when dropped or not answered yet), tls, t and t_done.  A request's record
and the counters are completed just before its answer is written, so a
client that has its answer always finds them up to date.  Connection ids
are never reused, not even across a reset.

Choices where the vendor pages are silent or disagree (see the README of
/work/shared/api): OPS-COM treats "" as "no value" (format checks skipped,
but still "required" on create); CloudCard matches emails without regard to
case, rejects unknown ROLE_* keys, ignores the read-only keys id, username
and authorities in a PUT body, refuses an email/identifier already used by
another person, and leaves roles alone in the deprecated /api/people.  The
person JSON also carries managerEmail and managerIdentifier.  A person
known only by email (as an office user creates one; /_mock/cloudcard_seed
with an email and no identifier): PUT /person/{identifier}?findBy=identifier
is 404, POST /person with its email 400 "Person already exists", and PUT
/person/{email}?findBy=email with an identifier in the body sets it.
"""

import argparse
import base64
import http.server
import json
import math
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import zlib

import mock_cloudcard
import mock_opscom
import mock_webhook
from mock_cloudcard import SEED_TYPES, CloudCardError
from mock_common import Response, Request, dumps, parse_bool_param, parse_json

# --------------------------------------------------------------------------
# The vendor services
# --------------------------------------------------------------------------

# Every vendor service the API listener serves, registered here only: its
# name (the Mock attribute: mock.cloudcard, mock.opscom), its module, its
# service class (built as cls(config, recorder), with reset(),
# front_door(req) and handle(req): see Mock.dispatch) and the raw path
# prefixes it serves (a prefix matches the path itself and every path
# under it; None: every path no other service serves).  Each module also
# has the dicts CONFIG_DEFAULTS, CONFIG_REALISTIC, CONFIG_TYPES and
# CONFIG_RANGES of its /_mock/config switches, merged in this order (so
# the ranges of CloudCard's switches are checked before OPS-COM's).
SERVICES = (
    ("cloudcard", mock_cloudcard, mock_cloudcard.CloudCard, None),
    ("opscom", mock_opscom, mock_opscom.OpsCom,
     (mock_opscom.OPSCOM_PREFIX,)),
    ("webhook", mock_webhook, mock_webhook.Webhook, ("/hooks",)),
)


def merged(attribute):
    """One dict from the attribute of every service module, in order."""
    answer = {}
    for _, module, _, _ in SERVICES:
        answer.update(getattr(module, attribute))
    return answer


# --------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------

# The order of the keys in the /_mock/config answer (a switch missing here
# goes at the end).
CONFIG_ORDER = (
    "opscom_tokens", "login_sources", "cloudcard_pats",
    "cloudcard_auth_tokens", "session_ttl_s",
    "opscom_require_names_on_create", "cloudcard_put_body",
    "session_token_prefix", "cloudcard_api_prefix",
    "cloudcard_create_empty_body", "cloudcard_expired_status",
    "cloudcard_pat_max_uses", "cloudcard_deprecated_endpoints",
    "cloudcard_deprecated_status", "cloudcard_with_links",
    "cloudcard_reject_encoded_slash", "cloudcard_exchange_status",
    "opscom_error_status",
    "opscom_reference_id_string", "opscom_user_type_ids_string",
)

# Every switch with its default (see "Realistic switches" above for the
# `realistic` preset).
_DEFAULTS = merged("CONFIG_DEFAULTS")
DEFAULT_CONFIG = {name: _DEFAULTS[name] for name in CONFIG_ORDER
                  if name in _DEFAULTS}
DEFAULT_CONFIG.update(_DEFAULTS)    # switches missing from CONFIG_ORDER

# What `realistic: true` sets (and `realistic: false` puts back to the
# DEFAULT_CONFIG values).
REALISTIC_CONFIG = merged("CONFIG_REALISTIC")

# A base URL ending in /api plus paths that start with /api again.
API_API = "/api/api/"

SERVE_POLL_S = 0.05   # serve_forever poll: keeps shutdown()/down fast


# --------------------------------------------------------------------------
# Shared state: recording, statistics, fault rules, config
# --------------------------------------------------------------------------

class Connection:
    """One accepted API connection, so that `down` can close it."""

    def __init__(self, conn_id, sock):
        self.id = conn_id
        self.sock = sock            # replaced by the SSLSocket once wrapped
        self.lock = threading.Lock()

    def abort(self):
        # socket.socket.shutdown on the raw descriptor even for an SSLSocket:
        # SSLSocket.shutdown would also drop its SSL object under a thread
        # that may be using it.  The handler thread then sees EOF and ends.
        with self.lock:
            try:
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
            except OSError:
                pass


class Recorder:
    """Request log, statistics and fault rules.  Thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_conn_id = 1      # never reset: ids stay unique per process
        self.open_conns = {}       # id -> Connection
        self.in_flight = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.records = []
            self.rules = []
            self.connections_total = 0
            self.requests_total = 0
            self.max_in_flight = self.in_flight
            self.token_exchanges = 0
            self.api_api_requests = 0

    # -- connections -------------------------------------------------------
    def open_connection(self, sock):
        with self.lock:
            conn = Connection(self.next_conn_id, sock)
            self.next_conn_id += 1
            self.open_conns[conn.id] = conn
            self.connections_total += 1
            return conn

    def close_connection(self, conn):
        with self.lock:
            self.open_conns.pop(conn.id, None)

    def abort_connection(self, conn):
        # No longer counted as open from now on, so stats read right after
        # a drop or `down` are exact (the handler thread ends a bit later).
        self.close_connection(conn)
        conn.abort()

    def abort_all_connections(self):
        with self.lock:
            conns = list(self.open_conns.values())
        for conn in conns:
            self.abort_connection(conn)

    # -- requests ----------------------------------------------------------
    def begin(self, conn_id, req, arrival):
        """Record an arriving request; returns its (mutable) record."""
        record = {
            "seq": 0, "conn": conn_id, "method": req.method,
            "path": req.path, "query": req.query, "params": req.params,
            "headers": req.headers,
            "body": req.body.decode("utf-8", errors="replace"),
            "json": req.json, "status": None, "tls": req.tls,
            "t": arrival, "t_done": None,
        }
        with self.lock:
            record["seq"] = len(self.records) + 1
            self.records.append(record)
            self.requests_total += 1
            if API_API in req.path:
                self.api_api_requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return record

    def end(self, record, status):
        """status is None when the request got no answer."""
        with self.lock:
            record["status"] = status
            record["t_done"] = time.time()
            self.in_flight -= 1

    def count_token_exchange(self):
        with self.lock:
            self.token_exchanges += 1

    def since(self, seq):
        with self.lock:
            return [dict(r) for r in self.records if r["seq"] > seq]

    def last(self, path_prefix, method):
        with self.lock:
            for record in reversed(self.records):
                if path_prefix and not record["path"].startswith(path_prefix):
                    continue
                if method and record["method"] != method.upper():
                    continue
                return dict(record)
        return None

    def stats(self):
        with self.lock:
            return {
                "connections_total": self.connections_total,
                "connections_open": len(self.open_conns),
                "requests_total": self.requests_total,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "token_exchanges": self.token_exchanges,
                "api_api_requests": self.api_api_requests,
            }

    # -- fault rules -------------------------------------------------------
    def add_rule(self, rule):
        with self.lock:
            self.rules.append(rule)
            return len(self.rules)

    def clear_rules(self):
        with self.lock:
            self.rules = []

    def take_rule(self, method, path):
        """First matching rule with uses left; consumes one use."""
        with self.lock:
            for rule in self.rules:
                if rule.get("method") and rule["method"].upper() != method:
                    continue
                if rule.get("path_prefix") and \
                        not path.startswith(rule["path_prefix"]):
                    continue
                if rule.get("count") is not None:
                    if rule["count"] <= 0:
                        continue
                    rule["count"] -= 1
                return dict(rule)
        return None


class Config:
    """Mutable mock configuration (see DEFAULT_CONFIG)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.values = json.loads(json.dumps(DEFAULT_CONFIG))

    def get(self, name):
        with self.lock:
            return self.values[name]

    def update(self, changes):
        """Apply changes; a `realistic` preset first, then the other keys."""
        changes = dict(changes)
        preset = changes.pop("realistic", None)
        with self.lock:
            if preset is not None:
                self.values.update(REALISTIC_CONFIG if preset else
                                   {name: DEFAULT_CONFIG[name]
                                    for name in REALISTIC_CONFIG})
            self.values.update(changes)
            return self._answer()

    def snapshot(self):
        with self.lock:
            return self._answer()

    def _answer(self):
        """The values, plus `realistic`: true when every (R) switch has its
        realistic value, false when every one has its default, else null."""
        answer = dict(self.values)
        current = {name: self.values[name] for name in REALISTIC_CONFIG}
        if current == REALISTIC_CONFIG:
            answer["realistic"] = True
        elif all(value == DEFAULT_CONFIG[name]
                 for name, value in current.items()):
            answer["realistic"] = False
        else:
            answer["realistic"] = None
        return answer



# --------------------------------------------------------------------------
# Control commands
# --------------------------------------------------------------------------

class BadCommand(Exception):
    """A malformed control command -> HTTP 400."""


class UnknownCommand(Exception):
    """No such control command -> HTTP 404."""


def coerce(name, value, kind):
    """Convert a control argument (JSON value or query string) to kind."""
    try:
        if kind in ("str", "str?"):
            if kind == "str?" and value in (None, "null"):
                return None
            if isinstance(value, str):
                return value
            # A JSON body may give e.g. "body": {...} or "retry_after": 2.
            return json.dumps(value) if isinstance(value, (dict, list)) \
                else str(value)
        if kind in ("int", "int?", "num"):
            if value is None or value == "null" or value == "":
                if kind == "int?":
                    return None
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            if kind == "num":
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError
                return int(number) if number.is_integer() else number
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return parse_bool_param(str(value), None)
        if kind == "list":
            if isinstance(value, str):
                return [v for v in value.split(",") if v]
            if isinstance(value, list) and all(isinstance(v, str)
                                               for v in value):
                return value
            raise ValueError
    except (TypeError, ValueError):
        pass
    raise BadCommand(f"invalid value for {name}: {value!r}")


def typed_args(args, schema):
    """Validate args against {name: kind}; unknown names are errors."""
    unknown = sorted(set(args) - set(schema))
    if unknown:
        raise BadCommand("unknown argument(s): " + ", ".join(unknown))
    return {name: coerce(name, value, schema[name])
            for name, value in args.items()}


BEHAVE_SCHEMA = {"method": "str", "path_prefix": "str", "status": "int",
                 "body": "str", "retry_after": "str", "location": "str",
                 "delay_ms": "int", "drop": "bool", "count": "int?",
                 # hostile answers
                 "echo": "bool", "body_base64": "str", "content_type": "str",
                 "pad_to": "int", "endless": "bool", "trickle_ms": "int",
                 "trickle_body_only": "bool", "gzip_bomb_mb": "int"}
HOSTILE_KEYS = ("body_base64", "pad_to", "endless", "trickle_ms",
                "gzip_bomb_mb")
CONFIG_SCHEMA = {"realistic": "bool", **merged("CONFIG_TYPES")}
# Allowed ranges of the numeric config switches.
CONFIG_RANGES = merged("CONFIG_RANGES")


class Control:
    """The /_mock/... commands.  Each returns a JSON-able value."""

    def __init__(self, mock):
        self.mock = mock

    def run(self, name, args):
        command = getattr(self, "cmd_" + name, None)
        if command is None:
            raise UnknownCommand(name)
        return command(args)

    def cmd_ping(self, args):
        typed_args(args, {})
        return {"ok": True}

    def cmd_reset(self, args):
        typed_args(args, {})
        self.mock.reset()
        return {"ok": True}

    def cmd_requests(self, args):
        since = typed_args(args, {"since": "int"}).get("since", 0)
        return self.mock.recorder.since(since)

    def cmd_last(self, args):
        args = typed_args(args, {"path_prefix": "str", "method": "str"})
        return self.mock.recorder.last(args.get("path_prefix"),
                                       args.get("method"))

    def cmd_stats(self, args):
        typed_args(args, {})
        return self.mock.recorder.stats()

    def cmd_behave(self, args):
        rule = typed_args(args, BEHAVE_SCHEMA)
        if "status" in rule and not 200 <= rule["status"] <= 599:
            raise BadCommand("status must be between 200 and 599")
        if rule.get("delay_ms", 0) < 0:
            raise BadCommand("delay_ms must be >= 0")
        for name in ("pad_to", "trickle_ms", "gzip_bomb_mb"):
            if rule.get(name, 0) < 0:
                raise BadCommand(f"{name} must be >= 0")
        if "body_base64" in rule:
            try:
                base64.b64decode(rule["body_base64"], validate=True)
            except ValueError:
                raise BadCommand("body_base64 is not base64") from None
        return {"ok": True, "rules": self.mock.recorder.add_rule(rule)}

    def cmd_clear_behaviours(self, args):
        typed_args(args, {})
        self.mock.recorder.clear_rules()
        return {"ok": True}

    def cmd_down(self, args):
        seconds = typed_args(args, {"seconds": "num"}).get("seconds")
        self.mock.listeners.down(seconds)
        return {"ok": True}

    def cmd_up(self, args):
        typed_args(args, {})
        self.mock.listeners.up()
        return {"ok": True}

    def cmd_expire_tokens(self, args):
        typed_args(args, {})
        self.mock.cloudcard.expire_tokens()
        return {"ok": True}

    def cmd_session_tokens(self, args):
        typed_args(args, {})
        return self.mock.cloudcard.issued_tokens()

    def cmd_cloudcard_sessions(self, args):
        typed_args(args, {})
        return self.mock.cloudcard.session_counts()

    def cmd_config(self, args):
        changes = typed_args(args, CONFIG_SCHEMA)
        for name, (low, high) in CONFIG_RANGES.items():
            value = changes.get(name)
            if value is not None and (value < low or
                                      (high is not None and value > high)):
                raise BadCommand(f"{name} must be between {low} and "
                                 f"{high}" if high is not None else
                                 f"{name} must be >= {low}")
        return self.mock.config.update(changes)

    def cmd_opscom_profiles(self, args):
        typed_args(args, {})
        return self.mock.opscom.snapshot()

    def cmd_webhook_deliveries(self, args):
        typed_args(args, {})
        return self.mock.webhook.snapshot()

    def cmd_cloudcard_people(self, args):
        typed_args(args, {})
        return self.mock.cloudcard.snapshot()

    def cmd_cloudcard_seed(self, args):
        for name, kind in SEED_TYPES.items():
            if name in args:
                args[name] = coerce(name, args[name], kind)
        try:
            return self.mock.cloudcard.seed(args)
        except (ValueError, TypeError, CloudCardError) as err:
            raise BadCommand(str(err)) from None


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------

class BadBody(Exception):
    """The request framing is broken: answer 400 and close."""


class BaseHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive by default
    # Responses are buffered and flushed once: one segment per answer, and
    # TCP_NODELAY so that segment is not held back by Nagle/delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True

    def version_string(self):
        return "campus-sync-mock/1"

    def log_message(self, fmt, *args):
        if self.server.mock.verbose:
            super().log_message(fmt, *args)

    def handle_expect_100(self):
        super().handle_expect_100()
        self.wfile.flush()      # wfile is buffered: send "100 Continue" now
        return True

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            raise BadBody("invalid Content-Length")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise BadBody("truncated body")
        return body

    def read_chunked(self):
        parts = []
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadBody("invalid chunk size") from None
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass            # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after each chunk

    def lower_headers(self):
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = headers[name] + ", " + value if name in headers \
                else value
        return headers

    def send(self, response):
        if response.writer is not None:
            self.close_connection = True
            try:
                response.writer(self.wfile)
            except OSError:         # the client hung up: what hostile tests do
                pass
            return
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)
        self.wfile.flush()

    def reject_framing(self, err):
        self.close_connection = True
        self.send(Response(400, {"message": str(err)},
                           headers={"Connection": "close"}))


class ApiHandler(BaseHandler):
    """Serves OPS-COM and CloudCard on the API listener(s)."""

    def setup(self):
        self.conn = self.server.connection_for(self.request)
        context = self.server.tls_context
        if context is not None:
            with self.conn.lock:   # `down` must see the socket it can close
                self.request = context.wrap_socket(
                    self.request, server_side=True,
                    do_handshake_on_connect=False)
                self.conn.sock = self.request
            self.request.do_handshake()
        super().setup()

    def handle_any(self):
        arrival = time.time()
        try:
            body = self.read_body()
        except BadBody as err:
            return self.reject_framing(err)
        mock = self.server.mock
        req = Request(self.command, self.path, self.lower_headers(), body,
                      tls=self.server.tls_context is not None)
        record = mock.recorder.begin(self.conn.id, req, arrival)
        response = None
        try:
            response = self.apply_rule(req)
        finally:
            # Completed in the record BEFORE any byte goes out: a client
            # that has its answer (or EOF) then always finds the request
            # finished in /_mock/requests and /_mock/stats.
            mock.recorder.end(record, response and response.status)
        if response is None:                     # a `drop` rule
            self.close_connection = True
            mock.recorder.abort_connection(self.conn)
        else:
            self.send(response)

    def apply_rule(self, req):
        """Response to send, or None to drop the connection unanswered."""
        rule = self.server.mock.recorder.take_rule(req.method, req.path)
        if rule is None:
            return self.server.mock.dispatch(req)
        if rule.get("delay_ms"):
            time.sleep(rule["delay_ms"] / 1000.0)
        if rule.get("drop"):
            return None
        if any(k in rule for k in ("status", "body", "retry_after",
                                   "location") + HOSTILE_KEYS):
            return rule_response(rule, req)
        return self.server.mock.dispatch(req)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


def rule_response(rule, req):
    """The answer a fault rule imposes instead of normal processing."""
    status = rule.get("status") or (302 if "location" in rule else
                                    200 if any(k in rule for k in HOSTILE_KEYS)
                                    else 503)
    headers = {}
    if "retry_after" in rule:
        headers["Retry-After"] = rule["retry_after"]
    if "location" in rule:
        headers["Location"] = echo(rule["location"], req) \
            if rule.get("echo") else rule["location"]
    if "gzip_bomb_mb" in rule:
        headers["Content-Encoding"] = "gzip"
        return Response(status, raw=gzip_bomb(rule["gzip_bomb_mb"]),
                        headers=headers)
    if "body_base64" in rule:
        raw = base64.b64decode(rule["body_base64"])
        content_type = rule.get("content_type", "application/json")
    elif "body" not in rule and not any(k in rule for k in HOSTILE_KEYS):
        return Response(status, {"message": f"mock: injected {status}"},
                        headers=headers)
    else:
        text = rule.get("body", "")
        if rule.get("echo"):
            text = echo(text, req)
        if "pad_to" in rule:
            text = pad(text, rule["pad_to"])
        raw = text.encode("utf-8")
        try:
            parse_json(raw)
            content_type = "application/json"
        except (ValueError, RecursionError):   # RecursionError: nested deep
            content_type = "text/plain; charset=utf-8"
        content_type = rule.get("content_type", content_type)
    if rule.get("endless"):
        return Response(status, raw=raw, headers=headers,
                        content_type=content_type,
                        writer=endless_writer(status, headers, content_type,
                                              raw))
    if rule.get("trickle_ms"):
        return Response(status, raw=raw, headers=headers,
                        content_type=content_type,
                        writer=trickle_writer(status, headers, content_type,
                                              raw, rule["trickle_ms"],
                                              rule.get("trickle_body_only")))
    return Response(status, raw=raw, headers=headers,
                    content_type=content_type)


# -- hostile answers --------------------------------------------------------

ECHO_RE = re.compile(r"\$\{token(?::(\w+))?\}")
ENDLESS_CHUNK = b"x" * 65536
ENDLESS_LIMIT = 256 * 1024 * 1024
_gzip_bombs = {}
_gzip_lock = threading.Lock()


def request_secret(req):
    """The credential a request carried: X-Auth-Token, apiToken or PAT."""
    token = req.header("x-auth-token")
    if token:
        return token
    if isinstance(req.json, dict):
        for key in ("apiToken", "persistentAccessToken"):
            if isinstance(req.json.get(key), str):
                return req.json[key]
    return ""


def json_escaped(text):
    return json.dumps(text)[1:-1]


def encode_token(token, how):
    if how is None:
        return json_escaped(token)
    if how == "upper":
        return json_escaped(token.upper())
    if how == "slash":
        return json_escaped(token).replace("/", "\\/")
    if how == "u":
        return "".join("\\u%04x" % ord(c) for c in token)
    if how == "u1":
        return ("\\u%04x" % ord(token[0]) + json_escaped(token[1:])) \
            if token else ""
    if how == "url":
        return urllib.parse.quote(token, safe="")
    if how == "text":
        return token
    raise ValueError("unknown token encoding " + how)


def echo(template, req):
    token = request_secret(req)
    return ECHO_RE.sub(lambda m: encode_token(token, m.group(1)), template)


def pad(text, size):
    """text grown to size bytes: ${pad} filled with x, else spaces added."""
    if "${pad}" in text:
        missing = size - len(text.replace("${pad}", "").encode("utf-8"))
        return text.replace("${pad}", "x" * max(0, missing), 1)
    return text + " " * max(0, size - len(text.encode("utf-8")))


def gzip_bomb(megabytes):
    """gzip of a JSON body of that many MiB; made once per size."""
    with _gzip_lock:
        if megabytes not in _gzip_bombs:
            out = zlib.compressobj(9, zlib.DEFLATED, 31)   # 31: gzip format
            parts = [out.compress(b'{"status": "success", "pad": "')]
            block = b"a" * (1024 * 1024)
            for _ in range(megabytes):
                parts.append(out.compress(block))
            parts.append(out.compress(b'"}'))
            parts.append(out.flush())
            _gzip_bombs[megabytes] = b"".join(parts)
        return _gzip_bombs[megabytes]


def head_bytes(status, headers):
    """Status line and headers, as http.server would write them."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {status} {phrase}", "Server: campus-sync-mock/1",
             "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def endless_writer(status, headers, content_type, first):
    def write(out):
        def chunk(data):
            out.write(b"%x\r\n%s\r\n" % (len(data), data))
            out.flush()

        out.write(head_bytes(status, {**headers, "Content-Type": content_type,
                                      "Transfer-Encoding": "chunked"}))
        if first:
            chunk(first)
        sent = 0
        while sent < ENDLESS_LIMIT:
            chunk(ENDLESS_CHUNK)
            sent += len(ENDLESS_CHUNK)
        out.write(b"0\r\n\r\n")
        out.flush()
    return write


def trickle_writer(status, headers, content_type, body, interval_ms,
                   body_only):
    def write(out):
        head = head_bytes(status, {**headers, "Content-Type": content_type,
                                   "Content-Length": str(len(body))})
        if body_only:
            out.write(head)
            out.flush()
            data = body
        else:
            data = head + body
        for i in range(len(data)):
            if i or body_only:
                time.sleep(interval_ms / 1000.0)
            out.write(data[i:i + 1])
            out.flush()
    return write


class ControlHandler(BaseHandler):
    """Serves /_mock/<command> on the control listener."""

    def handle_any(self):
        try:
            body = self.read_body()
        except BadBody as err:
            return self.reject_framing(err)
        path, _, query = self.path.partition("?")
        if not path.startswith("/_mock/"):
            return self.answer(404, {"error": "not a control command"})
        try:
            args = self.parse_args(body, query)
            result = self.server.mock.control.run(path[len("/_mock/"):],
                                                  args)
        except BadCommand as err:
            return self.answer(400, {"error": str(err)})
        except UnknownCommand:
            return self.answer(404, {"error": "unknown command " + path})
        except OSError as err:       # e.g. `up` could not rebind a port
            return self.answer(500, {"error": str(err)})
        self.answer(200, result)

    @staticmethod
    def parse_args(body, query):
        """JSON object body, then query parameters (which win)."""
        args = {}
        if body.strip():
            try:
                args = parse_json(body)
            except ValueError:
                raise BadCommand("body is not JSON") from None
            if not isinstance(args, dict):
                raise BadCommand("body must be a JSON object")
        args.update(urllib.parse.parse_qsl(query, keep_blank_values=True))
        return args

    def answer(self, status, payload):
        # Trailing newline: friendlier for curl / COPY FROM PROGRAM.
        self.send(Response(status, raw=dumps(payload) + b"\n"))

    do_GET = do_POST = handle_any


class MockServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, mock, tls_context=None):
        self.mock = mock
        self.tls_context = tls_context
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        # Resets, broken pipes, failed TLS handshakes: normal in fault tests.
        if self.mock.verbose:
            super().handle_error(request, client_address)


class ApiServer(MockServer):
    """API listener: tracks connections for stats and for `down`."""

    def __init__(self, *args, **kwargs):
        self.connections = {}       # accepted socket -> Connection
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        # Registered here, in the accept loop, so that once `down` has
        # stopped the loop no accepted connection can escape abort_all.
        self.connections[request] = self.mock.recorder.open_connection(
            request)
        super().process_request(request, client_address)

    def connection_for(self, request):
        return self.connections[request]

    def shutdown_request(self, request):
        # Runs when the connection's thread ends, whatever happened.
        conn = self.connections.pop(request)
        super().shutdown_request(request)
        if conn.sock is not request:      # the SSLSocket wrapping it
            try:
                conn.sock.close()
            except OSError:
                pass
        self.mock.recorder.close_connection(conn)


def serve_in_thread(server, name):
    thread = threading.Thread(target=server.serve_forever,
                              kwargs={"poll_interval": SERVE_POLL_S},
                              name=name, daemon=True)
    thread.start()
    return thread


class ApiListeners:
    """The plain and TLS API listeners, which `down`/`up` close/rebind."""

    def __init__(self, mock, host, port, tls_port=None, tls_context=None):
        self.mock = mock
        self.host = host
        self.specs = [(port, None)]
        if tls_context is not None:
            self.specs.append((tls_port, tls_context))
        self.servers = []
        self.lock = threading.Lock()
        self.timer = None
        self.up()
        # Rebinding after `down` must reuse the ports picked for port 0.
        self.specs = [(srv.server_address[1], spec[1])
                      for srv, spec in zip(self.servers, self.specs)]

    @property
    def ports(self):
        return [port for port, _ in self.specs]

    def up(self):
        with self.lock:
            self._cancel_timer()
            if self.servers:
                return
            servers = []
            try:
                for port, context in self.specs:
                    servers.append(ApiServer((self.host, port), ApiHandler,
                                             self.mock, context))
            except OSError:
                for server in servers:
                    server.server_close()
                raise
            for server in servers:
                serve_in_thread(server, "api-%d" % server.server_address[1])
            self.servers = servers

    def down(self, seconds=None):
        with self.lock:
            self._cancel_timer()
            for server in self.servers:
                server.shutdown()       # stop accepting, then
                server.server_close()   # close: new connections refused
            self.servers = []
            self.mock.recorder.abort_all_connections()
            if seconds is not None:
                self.timer = threading.Timer(seconds, self._auto_up)
                self.timer.daemon = True
                self.timer.start()

    def _auto_up(self):
        try:
            self.up()
        except OSError as err:
            print(f"mock_api: automatic up failed: {err}", file=sys.stderr)

    def _cancel_timer(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self):
        with self.lock:
            self._cancel_timer()
            for server in self.servers:
                server.shutdown()
                server.server_close()
            self.servers = []


class Mock:
    """Everything the handlers share."""

    def __init__(self, verbose=False):
        self.verbose = verbose
        self.config = Config()
        self.recorder = Recorder()
        self.services = []        # (prefixes, service), as in SERVICES
        for name, _, cls, prefixes in SERVICES:
            service = cls(self.config, self.recorder)
            setattr(self, name, service)      # self.opscom, self.cloudcard
            self.services.append((prefixes, service))
        self.control = Control(self)
        self.listeners = None

    def service_for(self, path):
        """The service whose prefix matches path, else the catch-all."""
        fallback = None
        for prefixes, service in self.services:
            if prefixes is None:
                fallback = service
            elif any(path == prefix or path.startswith(prefix + "/")
                     for prefix in prefixes):
                return service
        return fallback

    def dispatch(self, req):
        service = self.service_for(req.path)
        # What stands in front of the service (CloudCard's servlet
        # container) answers first, then the /api/api/ check.
        response = service.front_door(req)
        if response is not None:
            return response
        if API_API in req.path:
            return Response(404, {"message": "Not Found"})
        return service.handle(req)

    def reset(self):
        self.recorder.reset()
        self.config.reset()
        for _, service in self.services:
            service.reset()
        self.listeners.up()       # a test that left the API down is undone


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_cli(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--tls-port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--quiet", action="store_true",
                        help="no request logging (the default)")
    parser.add_argument("--verbose", action="store_true",
                        help="log every request and connection error")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        parser.error("the mock only binds the loopback address 127.0.0.1")
    args.host = "127.0.0.1"
    tls_args = (args.tls_port is not None, bool(args.cert), bool(args.key))
    if any(tls_args) and not all(tls_args):
        parser.error("--tls-port, --cert and --key go together")
    return args


def tls_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def write_ready_file(path, info):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as out:
        out.write(json.dumps(info) + "\n")
    os.replace(tmp, path)


def main(argv=None):
    args = parse_cli(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    mock = Mock(verbose=args.verbose and not args.quiet)
    context = tls_context(args.cert, args.key) if args.cert else None
    mock.listeners = ApiListeners(mock, args.host, args.api_port,
                                  args.tls_port, context)
    control = MockServer((args.host, args.control_port), ControlHandler, mock)
    serve_in_thread(control, "control")

    ports = mock.listeners.ports
    write_ready_file(args.ready_file, {
        "api": ports[0], "control": control.server_address[1],
        "tls": ports[1] if context else None, "pid": os.getpid()})
    while not stop.wait(0.1):   # signals may land on another thread
        pass
    mock.listeners.close()
    control.shutdown()
    control.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

