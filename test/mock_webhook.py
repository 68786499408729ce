"""The webhook receiver, as the mock plays it: signed JSON deliveries.

Part of the mock of the APIs campus_sync talks to; mock_api.py is the
entry point and documents what this service answers (paths, errors, the
webhook_* switches of /_mock/config).  Plays POST /hooks[/...]: a JSON
object body, its X-Signature (sha256= and the lowercase hex HMAC-SHA256 of
the raw body, keyed by webhook_signing_secret, as GitHub signs), the
status of an accepted delivery, and the stored deliveries.  Standard
library only.
"""

import hashlib
import hmac
import json
import threading

from mock_common import Response, is_json_content_type, parse_json

# --------------------------------------------------------------------------
# Config switches (see "Realistic switches" in mock_api.py)
# --------------------------------------------------------------------------

# Defaults; none is in the `realistic` preset.
CONFIG_DEFAULTS = {
    "webhook_signing_secret": None,     # null: no signature check
    "webhook_status": 200,
}
# What `realistic: true` sets.
CONFIG_REALISTIC = {}
# /_mock/config argument types and allowed ranges.
CONFIG_TYPES = {"webhook_signing_secret": "str?", "webhook_status": "int"}
CONFIG_RANGES = {"webhook_status": (200, 599)}

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

SIGNATURE_HEADER = "x-signature"
SIGNATURE_SCHEME = "sha256="

# What a JSON value that is not an object is called in a 400 message.
JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean",
              int: "a number", float: "a number", type(None): "null"}


class WebhookError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def webhook_signature(secret, body):
    """The X-Signature value for body (bytes) under secret (a string)."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256)
    return SIGNATURE_SCHEME + digest.hexdigest()    # hexdigest: lowercase


class Webhook:
    """Webhook receiver.  Every error is {"message": "..."}: 405 (another
    method), 401 (signature), 400 (content type or body); an accepted
    delivery answers webhook_status."""

    def __init__(self, config, recorder):
        self.config = config
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.deliveries = []

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.deliveries))

    def front_door(self, req):
        """Nothing stands in front of the receiver: always None."""
        return None

    def handle(self, req):
        try:
            body = self.receive(req)
        except WebhookError as err:
            return Response(err.status, {"message": err.message},
                            headers=err.headers)
        status = self.config.get("webhook_status")
        if not 200 <= status <= 299:
            return Response(status, {"message": f"webhook_status {status}"})
        number = self.store(req, body)
        if status == 204:
            return Response(204)
        return Response(status, {"id": f"wh-{number}"})

    def receive(self, req):
        """Check method, signature and body; returns the body object."""
        if req.method != "POST":
            raise WebhookError(405, "Method Not Allowed", {"Allow": "POST"})
        self.check_signature(req)
        if not is_json_content_type(req.header("content-type")):
            raise WebhookError(400, "Content-Type must be application/json")
        if not req.body:
            raise WebhookError(400, "body is empty")
        try:
            body = parse_json(req.body)
        except (ValueError, RecursionError):   # RecursionError: nested deep
            raise WebhookError(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise WebhookError(400, "body must be a JSON object, not "
                               + JSON_KINDS.get(type(body), "that"))
        return body

    def check_signature(self, req):
        """With webhook_signing_secret set, X-Signature must be exactly
        sha256= and the lowercase hex HMAC-SHA256 of the raw body bytes."""
        secret = self.config.get("webhook_signing_secret")
        if secret is None:
            return
        given = req.header(SIGNATURE_HEADER)
        wanted = webhook_signature(secret, req.body)
        # Bytes: compare_digest refuses str with non-ASCII characters.
        if given is None or not hmac.compare_digest(
                given.encode("utf-8", errors="replace"),
                wanted.encode("ascii")):
            raise WebhookError(401, "bad signature")

    def store(self, req, body):
        """Keep an accepted delivery; returns its number since the reset."""
        with self.lock:
            self.deliveries.append({"path": req.path, "body": body,
                                    "signature": req.header(SIGNATURE_HEADER)})
            return len(self.deliveries)
