"""CloudCard, as the mock plays it: the person API and its sessions.

Part of the mock of the SaaS APIs campus_sync talks to; mock_api.py is the
entry point and documents what this service answers (paths, auth, the
cloudcard_* switches of /_mock/config, sessions and logout).  Plays the
PAT exchange (POST /authentication-token), session tokens and logout,
GET/PUT/POST /person, the deprecated POST /api/people and GET
/people/{key}/with-links, the person JSON with its ROLE_* roles, and the
servlet container in front of it (an encoded slash).  Standard library
only.
"""

import re
import secrets
import threading
import time
import urllib.parse

from mock_common import (DIGITS_RE, Response, is_json_content_type,
                         looks_like_email, parse_bool_param, status_phrase,
                         utc_iso)

# --------------------------------------------------------------------------
# Config switches (see "Realistic switches" in mock_api.py)
# --------------------------------------------------------------------------

# Defaults; (R) marks the `realistic` preset.
CONFIG_DEFAULTS = {
    "cloudcard_pats": ["pat-test-0123456789abcdef"],
    "cloudcard_auth_tokens": ["cc-static-token-0123456789"],
    "session_ttl_s": 43200,  # CloudCard session tokens live 12 hours
    "cloudcard_put_body": True,
    "session_token_prefix": "",
    "cloudcard_api_prefix": False,            # (R) True
    "cloudcard_create_empty_body": False,     # (R) True
    "cloudcard_expired_status": 401,          # (R) 403
    "cloudcard_pat_max_uses": None,           # unlimited
    "cloudcard_deprecated_endpoints": True,   # (R) False
    "cloudcard_deprecated_status": 403,
    "cloudcard_with_links": False,            # (R) True
    "cloudcard_reject_encoded_slash": False,  # (R) True
    "cloudcard_exchange_status": 201,         # (R) 200
}
# What `realistic: true` sets.
CONFIG_REALISTIC = {
    "cloudcard_api_prefix": True,
    "cloudcard_create_empty_body": True,
    "cloudcard_expired_status": 403,
    "cloudcard_deprecated_endpoints": False,
    "cloudcard_with_links": True,
    "cloudcard_reject_encoded_slash": True,
    "cloudcard_exchange_status": 200,
}
# /_mock/config argument types and allowed ranges.
CONFIG_TYPES = {"cloudcard_pats": "list", "cloudcard_auth_tokens": "list",
                "session_ttl_s": "num",
                "cloudcard_put_body": "bool", "session_token_prefix": "str",
                "cloudcard_api_prefix": "bool",
                "cloudcard_create_empty_body": "bool",
                "cloudcard_expired_status": "int",
                "cloudcard_pat_max_uses": "int?",
                "cloudcard_deprecated_endpoints": "bool",
                "cloudcard_deprecated_status": "int",
                "cloudcard_with_links": "bool",
                "cloudcard_reject_encoded_slash": "bool",
                "cloudcard_exchange_status": "int"}
CONFIG_RANGES = {"cloudcard_expired_status": (400, 599),
                 "cloudcard_deprecated_status": (400, 599),
                 "cloudcard_pat_max_uses": (0, None),
                 "cloudcard_exchange_status": (200, 299)}

# /_mock/cloudcard_seed: bodies are free-form; these get the query-string
# conversions.
SEED_TYPES = {"id": "int?", "email": "str", "identifier": "str",
              "enabled": "bool", "additionalPhotoRequired": "bool",
              "roles": "list", "ROLE_CARDHOLDER": "bool",
              "ROLE_OFFICE": "bool", "ROLE_DIRECTOR": "bool"}

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

CLOUDCARD_FIRST_PERSON_ID = 1001
LOGIN_LINK = "https://app.cloudcard.test/#/login?access_token="
# What the servlet container in front of CloudCard answers for a %2F.
SERVLET_400_HTML = ("<html><body><h1>HTTP Status 400 \u2013 Bad Request"
                    "</h1></body></html>")

CC_BOOL_FIELDS = ("enabled", "additionalPhotoRequired")
CC_STRING_FIELDS = ("email", "identifier", "cardholderGroupName",
                    "managerEmail", "managerIdentifier")
CC_PERSON_FIELDS = CC_BOOL_FIELDS + CC_STRING_FIELDS
CC_ROLES = ("ROLE_CARDHOLDER", "ROLE_OFFICE", "ROLE_DIRECTOR")
# Read-only attributes of the person JSON: a client echoing a GET answer
# back in a PUT must not turn them into custom fields.
CC_READ_ONLY = ("id", "username", "authorities")
WITH_LINKS_RE = re.compile(r"/people/([^/]+)/with-links")


class CloudCardError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def cc_validate_body(req, nested_custom_fields):
    """Content-Type / JSON object / field type checks; returns the body."""
    if not is_json_content_type(req.header("content-type")):
        raise CloudCardError(415, "Unsupported Media Type: use "
                                  "application/json")
    body = req.json
    if not isinstance(body, dict):
        raise CloudCardError(400, "Request body must be a JSON object")
    for name, value in body.items():
        if name in CC_BOOL_FIELDS or name.startswith("ROLE_"):
            if name.startswith("ROLE_") and name not in CC_ROLES:
                raise CloudCardError(400, f"Unknown role {name}")
            if not isinstance(value, bool):
                raise CloudCardError(400, f"{name} must be a boolean")
        elif name in CC_STRING_FIELDS and value is not None \
                and not isinstance(value, str):
            raise CloudCardError(400, f"{name} must be a string")
    if "email" in body and not looks_like_email(body["email"]):
        raise CloudCardError(400, "email is not a valid email address")
    if nested_custom_fields and body.get("customFields") is not None \
            and not isinstance(body["customFields"], dict):
        raise CloudCardError(400, "customFields must be an object")
    return body


def cc_person_json(person):
    return {
        "id": person["id"],
        "email": person["email"],
        "username": person["email"],
        "identifier": person["identifier"],
        "enabled": person["enabled"],
        "cardholderGroupName": person["cardholderGroupName"],
        "additionalPhotoRequired": person["additionalPhotoRequired"],
        "managerEmail": person["managerEmail"],
        "managerIdentifier": person["managerIdentifier"],
        "customFields": dict(person["customFields"]),
        "authorities": [{"authority": r} for r in sorted(person["roles"])],
    }


def cc_apply_roles(person, body, replace):
    """ROLE_* booleans grant/revoke; replace drops roles not granted."""
    granted = {k for k, v in body.items() if k in CC_ROLES and v is True}
    revoked = {k for k, v in body.items() if k in CC_ROLES and v is False}
    if replace:
        person["roles"] = granted
    else:
        person["roles"] = (person["roles"] | granted) - revoked


class CloudCard:
    """CloudCard person API with X-Auth-Token authentication."""

    def __init__(self, config, recorder):
        self.config = config
        self.recorder = recorder
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        with self.lock:
            self.people = {}              # id -> internal person dict
            self.next_id = CLOUDCARD_FIRST_PERSON_ID
            self.sessions = {}            # live token -> expiry epoch
            self.issued = []              # every token, in order
            self.pat_uses = {}            # PAT -> successful exchanges
            self.exchanges = 0
            self.logouts = 0              # every logout answered 204
            self.logout_all = 0           # ... of which ended all sessions

    def expire_tokens(self):
        with self.lock:
            self.sessions = {}

    def session_counts(self):
        now = time.time()
        with self.lock:
            return {"exchanges": self.exchanges, "logouts": self.logouts,
                    "logout_all": self.logout_all,
                    "live": sum(1 for expiry in self.sessions.values()
                                if expiry > now)}

    def snapshot(self):
        with self.lock:
            return [cc_person_json(p) for p in self.people.values()]

    def issued_tokens(self):
        with self.lock:
            return list(self.issued)

    # -- routing -----------------------------------------------------------
    def front_door(self, req):
        """What CloudCard's servlet container answers before CloudCard (and
        before the mock's /api/api/ check) sees the request, or None."""
        if "%2f" in req.path.lower() and \
                self.config.get("cloudcard_reject_encoded_slash"):
            return Response(400, raw=SERVLET_400_HTML.encode("utf-8"),
                            content_type="text/html;charset=utf-8")
        return None

    def handle(self, req):
        try:
            return self.route(req)
        except CloudCardError as err:
            return Response(err.status, {"message": err.message})

    def route(self, req):
        path, method = req.path, req.method
        # The deprecated endpoint has its /api in both modes.
        if path == "/api/people" and method == "POST":
            self.authenticate(req)
            if not self.config.get("cloudcard_deprecated_endpoints"):
                raise CloudCardError(
                    self.config.get("cloudcard_deprecated_status"),
                    "Deprecated endpoints are disabled for this organization")
            return self.create_or_update(req)
        if self.config.get("cloudcard_api_prefix") and \
                path.startswith("/api/"):
            path = path[len("/api"):]
        if path == "/authentication-token" and method == "POST":
            return self.exchange_token(req)
        if path == "/person/me/logout" and method == "POST":
            return self.logout(req)
        match = WITH_LINKS_RE.fullmatch(path)
        if match and method == "GET" and \
                self.config.get("cloudcard_with_links"):
            self.authenticate(req)
            return self.with_links(
                req, urllib.parse.unquote(match.group(1), errors="replace"))
        key = None
        if path.startswith("/person/"):
            key = path[len("/person/"):]
            # A literal "/" would be a different resource: the client must
            # percent-encode identifiers and emails in the path.
            if not key or "/" in key:
                key = None
        if key is not None and method in ("GET", "PUT"):
            self.authenticate(req)
            person_key = urllib.parse.unquote(key, errors="replace")
            if method == "GET":
                return self.get_person(req, person_key)
            return self.update_person(req, person_key)
        if path == "/person" and method == "POST":
            self.authenticate(req)
            return self.create_person(req)
        raise CloudCardError(404, "Not Found")

    # -- authentication ----------------------------------------------------
    def exchange_token(self, req):
        if not is_json_content_type(req.header("content-type")):
            raise CloudCardError(415, "Unsupported Media Type: use "
                                      "application/json")
        if not isinstance(req.json, dict):
            raise CloudCardError(400, "Request body must be a JSON object")
        pat = req.json.get("persistentAccessToken")
        if not isinstance(pat, str) or pat not in \
                self.config.get("cloudcard_pats"):
            raise CloudCardError(401, "Unauthorized")
        max_uses = self.config.get("cloudcard_pat_max_uses")
        token = self.config.get("session_token_prefix") + secrets.token_hex(20)
        expiry = time.time() + self.config.get("session_ttl_s")
        with self.lock:
            if max_uses is not None and \
                    self.pat_uses.get(pat, 0) >= max_uses:
                raise CloudCardError(401, "Persistent access token has been "
                                          "used the maximum number of times")
            self.pat_uses[pat] = self.pat_uses.get(pat, 0) + 1
            self.exchanges += 1
            self.sessions[token] = expiry
            self.issued.append(token)
        self.recorder.count_token_exchange()
        return Response(self.config.get("cloudcard_exchange_status"),
                        {"tokenValue": token,
                              "expirationDate": utc_iso(expiry)})

    def authenticate(self, req):
        token = req.header("x-auth-token")
        if not token:
            raise CloudCardError(401, "Unauthorized")
        if token in self.config.get("cloudcard_auth_tokens"):
            return
        with self.lock:
            expiry = self.sessions.get(token)
        if expiry is None or time.time() >= expiry:
            # unknown, expired, revoked or logged out; never echo tokens
            status = self.config.get("cloudcard_expired_status")
            raise CloudCardError(status, status_phrase(status))

    def logout(self, req):
        """POST /person/me/logout: {"authenticationToken": t} ends session
        t; no token in the body (empty, not JSON-typed, key absent, null or
        "") ends every live session, as CloudCard does for the account."""
        self.authenticate(req)
        target = None
        if req.body.strip() and is_json_content_type(
                req.header("content-type")):
            if not isinstance(req.json, dict):
                raise CloudCardError(400, "Request body must be a JSON "
                                          "object")
            target = req.json.get("authenticationToken")
            if target is not None and not isinstance(target, str):
                raise CloudCardError(400, "authenticationToken must be a "
                                          "string")
        with self.lock:
            self.logouts += 1
            if target:
                self.sessions.pop(target, None)
            else:
                self.logout_all += 1
                self.sessions = {}
        return Response(204)

    # -- lookups -----------------------------------------------------------
    def find(self, key, find_by):
        """Person for key under findBy (id|email|identifier), or None."""
        with self.lock:
            if find_by == "id":
                return self.people.get(int(key)) if DIGITS_RE.fullmatch(key) \
                    else None
            for person in self.people.values():
                if find_by == "email" and person["email"] is not None \
                        and person["email"].lower() == key.lower():
                    return person
                if find_by == "identifier" and person["identifier"] == key:
                    return person
        return None

    def find_any(self, body, exclude=None):
        """Another person sharing body's email or identifier, or None."""
        for field in ("email", "identifier"):
            value = body.get(field)
            if value:
                person = self.find(value, field)
                if person is not None and person is not exclude:
                    return person
        return None

    @staticmethod
    def find_by_param(req):
        find_by = req.params.get("findBy", "id")
        if find_by not in ("id", "email", "identifier"):
            raise CloudCardError(400, f"Invalid findBy: {find_by}")
        return find_by

    @staticmethod
    def flag(req, name, default):
        try:
            return parse_bool_param(req.params.get(name), default)
        except ValueError:
            raise CloudCardError(400, f"Invalid value for {name}") from None

    # -- endpoints ---------------------------------------------------------
    def get_person(self, req, key):
        person = self.find(key, self.find_by_param(req))
        if person is None:
            raise CloudCardError(404, "Not Found")
        return Response(200, cc_person_json(person))

    def with_links(self, req, key):
        """GET /people/{key}/with-links: the person and a login link."""
        with self.lock:
            person = self.find(key, self.find_by_param(req))
            if person is None:
                raise CloudCardError(404, "Not Found")
            answer = cc_person_json(person)
        answer["links"] = {"login": LOGIN_LINK + secrets.token_hex(16)}
        return Response(200, answer)

    def update_person(self, req, key):
        body = cc_validate_body(req, nested_custom_fields=False)
        find_by = self.find_by_param(req)
        replace_roles = self.flag(req, "updateRoles", True)
        with self.lock:
            person = self.find(key, find_by)
            if person is None:
                raise CloudCardError(404, "Not Found")
            if self.find_any(body, exclude=person) is not None:
                raise CloudCardError(400, "Email or identifier already used "
                                          "by another person")
            for name, value in body.items():
                if name in CC_PERSON_FIELDS:
                    person[name] = value
                elif not name.startswith("ROLE_") and name not in CC_READ_ONLY:
                    # Current API: custom fields are top-level keys.
                    person["customFields"][name] = value
            cc_apply_roles(person, body, replace_roles)
            answer = cc_person_json(person)
        if not self.config.get("cloudcard_put_body"):
            return Response(202)
        return Response(202, answer)

    def create_person(self, req):
        body = cc_validate_body(req, nested_custom_fields=True)
        self.flag(req, "sendInvitation", True)
        # renderResource is only read (and checked) in the realistic mode.
        empty = self.config.get("cloudcard_create_empty_body") and \
            not self.flag(req, "renderResource", False)
        with self.lock:
            if self.find_any(body) is not None:
                raise CloudCardError(400, "Person already exists")
            person = self.new_person(body)
            cc_apply_roles(person, body, replace=False)
            answer = cc_person_json(person)
        return Response(201) if empty else Response(201, answer)

    def create_or_update(self, req):
        """Deprecated POST /api/people; roles are not changed here."""
        body = cc_validate_body(req, nested_custom_fields=True)
        allow_update = self.flag(req, "allowUpdate", False)
        login_link = self.flag(req, "getLoginLink", False)
        self.flag(req, "sendInvitation", True)
        with self.lock:
            person = self.find_any(body)
            if person is None:
                person, status = self.new_person(body), 201
            elif not allow_update:
                raise CloudCardError(400, "Person already exists")
            else:
                self.set_fields(person, body)
                status = 200
            answer = cc_person_json(person)
        if login_link:
            answer["links"] = {"login": LOGIN_LINK + secrets.token_hex(16)}
        return Response(status, answer)

    # -- storage -----------------------------------------------------------
    @staticmethod
    def set_fields(person, body):
        """Known fields + nested customFields (create-style bodies)."""
        for name in CC_PERSON_FIELDS:
            if name in body:
                person[name] = body[name]
        person["customFields"].update(body.get("customFields") or {})

    def new_person(self, body, person_id=None):
        if not body.get("email") and not body.get("identifier"):
            raise CloudCardError(400, "email or identifier is required")
        with self.lock:
            if person_id is None:
                person_id = self.next_id
            self.next_id = max(self.next_id, person_id + 1)
            person = {"id": person_id, "email": None, "identifier": None,
                      "cardholderGroupName": None,
                      "additionalPhotoRequired": False, "enabled": True,
                      "managerEmail": None, "managerIdentifier": None,
                      "customFields": {}, "roles": {"ROLE_CARDHOLDER"}}
            self.set_fields(person, body)
            self.people[person_id] = person
            return person

    def seed(self, body):
        """Control API: store an existing person (no auth, no HTTP checks)."""
        with self.lock:
            if self.find_any(body) is not None:
                raise ValueError("Person already exists")
            person_id = body.get("id")
            if person_id is not None and (not isinstance(person_id, int)
                                          or person_id in self.people):
                raise ValueError("id must be a free integer")
            person = self.new_person(body, person_id)
            roles = body.get("roles")
            if roles is not None:
                person["roles"] = set(roles)
            cc_apply_roles(person, body, replace=False)
            return cc_person_json(person)
