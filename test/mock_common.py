"""Helpers shared by the mock's vendor services and its server.

Part of the mock of the SaaS APIs campus_sync talks to (see mock_api.py,
the entry point and its documentation): JSON in and out, the checks both
vendors make on values, and Response / Request, what the service handlers
(mock_opscom.py, mock_cloudcard.py, mock_webhook.py) receive and answer.  Standard library
only.
"""

import datetime
import http
import json
import re
import urllib.parse

def dumps(obj, ascii_only=False):
    """Single-line JSON as UTF-8 bytes."""
    if not ascii_only:
        try:
            return json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:   # lone surrogate from a \ud800 escape
            pass
    return json.dumps(obj).encode("ascii")


def _reject_constant(name):
    raise ValueError("non-standard JSON constant " + name)


def parse_json(raw):
    """Parse strict JSON from bytes; raise ValueError when it is not."""
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


def is_json_content_type(value):
    """True for application/json, parameters such as charset allowed."""
    return (value or "").split(";")[0].strip().lower() == "application/json"


def status_phrase(status):
    """"Unauthorized" for 401, "Forbidden" for 403, ..."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def utc_iso(epoch):
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DIGITS_RE = re.compile(r"[0-9]+")
TWO_LETTERS_RE = re.compile(r"[A-Za-z]{2}")


def looks_like_email(value):
    return isinstance(value, str) and EMAIL_RE.fullmatch(value) is not None


def is_real_date(value):
    if DATE_RE.fullmatch(value) is None:
        return False
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def parse_bool_param(value, default):
    """Query flag as the vendors read it: absent -> default."""
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(value)


class Response:
    """What a handler answers: status, JSON-able payload or raw bytes."""

    def __init__(self, status, payload=None, raw=None, headers=None,
                 content_type="application/json", writer=None):
        self.status = status
        self.writer = writer      # writes the answer itself (hostile modes)
        self.headers = dict(headers or {})
        if raw is not None:
            self.body = raw
        elif payload is not None:
            self.body = dumps(payload, ascii_only=True)
        else:
            self.body = b""
        self.content_type = content_type if self.body else None


class Request:
    """One received API request, as the vendor handlers see it."""

    def __init__(self, method, target, headers, body, tls):
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.params = dict(urllib.parse.parse_qsl(self.query,
                                                  keep_blank_values=True))
        self.headers = headers          # lower-case name -> value
        self.body = body                # bytes
        self.tls = tls
        try:
            self.json = parse_json(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        return self.headers.get(name.lower())
