"""OPS-COM, as the mock plays it: the profile push API.

Part of the mock of the SaaS APIs campus_sync talks to; mock_api.py is the
entry point and documents what this service answers (paths, errors, the
opscom_* switches of /_mock/config).  Plays POST
/api/OC_TOMA/v1/profiles/push and POST /api/OC_TOMA/v1/profiles/types/list:
apiToken and field checks with the vendor's error codes, and the stored
profiles.  Standard library only.
"""

import json
import threading

from mock_common import (DIGITS_RE, TWO_LETTERS_RE, Response,
                         is_json_content_type, is_real_date,
                         looks_like_email)

# --------------------------------------------------------------------------
# Config switches (see "Realistic switches" in mock_api.py)
# --------------------------------------------------------------------------

# Defaults; (R) marks the `realistic` preset.
CONFIG_DEFAULTS = {
    "opscom_tokens": ["opscom-test-token-0123456789"],
    "login_sources": ["BANNER", "OPSCOM"],
    "opscom_require_names_on_create": True,
    "opscom_error_status": 200,               # (R) 400
    "opscom_reference_id_string": False,      # (R) True
    "opscom_user_type_ids_string": False,     # (R) True
}
# What `realistic: true` sets.
CONFIG_REALISTIC = {
    "opscom_error_status": 400,
    "opscom_reference_id_string": True,
    "opscom_user_type_ids_string": True,
}
# /_mock/config argument types and allowed ranges.
CONFIG_TYPES = {"opscom_tokens": "list", "login_sources": "list",
                "opscom_require_names_on_create": "bool",
                "opscom_error_status": "int",
                "opscom_reference_id_string": "bool",
                "opscom_user_type_ids_string": "bool"}
CONFIG_RANGES = {"opscom_error_status": (200, 599)}

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

OPSCOM_FIRST_REFERENCE_ID = 44   # the value shown in the vendor's example

OPSCOM_USER_TYPES = [
    {"id": 6, "type_name": "Student", "ext_info": None},
    {"id": 7, "type_name": "Staff", "ext_info": "union"},
    {"id": 8, "type_name": "Faculty", "ext_info": None},
]

OPSCOM_PREFIX = "/api/OC_TOMA"
OPSCOM_PUSH = "/api/OC_TOMA/v1/profiles/push"
OPSCOM_TYPES = "/api/OC_TOMA/v1/profiles/types/list"

# Length limits in characters, from the vendor page.  Checked in this order.
OPSCOM_MAX_LEN = {
    "apiToken": 50, "unique_id": 50, "login_source": 20,
    "first_name": 50, "last_name": 50, "user_name": 50, "email": 100,
    "city": 50, "city2": 50,
    "postal_code": 20, "zip": 20, "postal_code2": 20, "zip2": 20,
    "street2": 20, "phone_cell": 20,
    "employ_no": 50, "employee_phone": 50,
    "student_no": 50, "student_phone": 50,
    "driver_licence_num": 255, "driver_license_num": 255,
}
OPSCOM_TWO_LETTERS = ("province", "state", "province2", "state2",
                      "driver_licence_prov", "driver_license_state")
OPSCOM_DIGITS = ("user_type_id", "locker_user_type_id")
OPSCOM_KNOWN = (tuple(OPSCOM_MAX_LEN) + OPSCOM_TWO_LETTERS + OPSCOM_DIGITS
                + ("street", "date_of_birth"))
# Required on create only (public error codes 9016-9018).
OPSCOM_CREATE_REQUIRED = (("email", 9016, "Email is required"),
                          ("first_name", 9017, "First name is required"),
                          ("last_name", 9018, "Last name is required"))


class OpsComError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def opscom_field_error(name, value):
    """OpsComError for a bad (string) field value, or None."""
    limit = OPSCOM_MAX_LEN.get(name)
    if limit is not None and len(value) > limit:
        return OpsComError(9030, f"{name} exceeds maximum length of {limit}")
    if value == "":
        return None     # empty = no value; format checks do not apply
    bad = ((name in OPSCOM_TWO_LETTERS
            and TWO_LETTERS_RE.fullmatch(value) is None)
           or (name in OPSCOM_DIGITS and DIGITS_RE.fullmatch(value) is None)
           or (name == "date_of_birth" and not is_real_date(value))
           or (name == "email" and not looks_like_email(value)))
    return OpsComError(9033, f"Invalid value for {name}") if bad else None


class OpsCom:
    """OPS-COM push API.  Every error is an ErrorCode body, with HTTP
    status opscom_error_status (an unknown endpoint: 404)."""

    def __init__(self, config, recorder):
        self.config = config
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.profiles = {}
            self.next_reference_id = OPSCOM_FIRST_REFERENCE_ID

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.profiles))

    def front_door(self, req):
        """Nothing stands in front of OPS-COM: always None."""
        return None

    def handle(self, req):
        if req.method != "POST" or req.path not in (OPSCOM_PUSH, OPSCOM_TYPES):
            return Response(404, {"ErrorCode": 9000,
                                  "ErrorMessage": "Unknown endpoint"})
        try:
            body = self.authenticate(req)
            if req.path == OPSCOM_TYPES:
                return Response(200, {"status": "success",
                                      "user_types": self.user_types()})
            return Response(200, self.push(body))
        except OpsComError as err:
            return Response(self.config.get("opscom_error_status"),
                            {"ErrorCode": err.code,
                             "ErrorMessage": err.message})

    def user_types(self):
        if not self.config.get("opscom_user_type_ids_string"):
            return OPSCOM_USER_TYPES
        return [{**t, "id": str(t["id"])} for t in OPSCOM_USER_TYPES]

    def authenticate(self, req):
        """Parse the body and check apiToken; returns the body object."""
        if not is_json_content_type(req.header("content-type")) \
                or not isinstance(req.json, dict):
            raise OpsComError(9003, "Unable to parse request")
        body = req.json
        token = body.get("apiToken")
        if token is None or token == "":
            raise OpsComError(9001, "API token missing")
        if not isinstance(token, str):
            raise OpsComError(9033, "Invalid value for apiToken")
        error = opscom_field_error("apiToken", token)
        if error:
            raise error
        if token not in self.config.get("opscom_tokens"):
            # The real service echoes the token; the client must redact it.
            raise OpsComError(9002, f"API token '{token}' has no permission")
        return body

    def push(self, body):
        fields = {k: v for k, v in body.items() if k in OPSCOM_KNOWN}
        for name in OPSCOM_KNOWN:       # values are strings, numbers too
            if name in fields and not isinstance(fields[name], str):
                raise OpsComError(9033, f"Invalid value for {name}")
        if not fields.get("unique_id"):
            raise OpsComError(9013, "Unique ID is required")
        source = fields.get("login_source")
        if not source:
            raise OpsComError(9014, "Login source is required")
        if source not in self.config.get("login_sources"):
            raise OpsComError(9015, f"Login source '{source}' is invalid")
        for name in OPSCOM_KNOWN:
            error = name in fields and opscom_field_error(name, fields[name])
            if error:
                raise error
        del fields["apiToken"]
        pushed = {k: v for k, v in body.items() if k != "apiToken"}
        return self.store(fields, pushed)

    def store(self, known, pushed):
        """known: the validated attributes; pushed: the body sans token."""
        unique_id = known["unique_id"]
        with self.lock:
            profile = self.profiles.get(unique_id)
            if profile is None:
                if self.config.get("opscom_require_names_on_create"):
                    for name, code, message in OPSCOM_CREATE_REQUIRED:
                        if not known.get(name):
                            raise OpsComError(code, message)
                profile = {"reference_id": self.next_reference_id,
                           "fields": {}, "merged": {}, "pushes": 0}
                self.next_reference_id += 1
                self.profiles[unique_id] = profile
            # fields: exactly what the last push sent (unknown keys too),
            # for assertions on the client; merged: the profile as stored.
            profile["fields"] = pushed
            profile["merged"].update(known)
            profile["pushes"] += 1
            reference_id = profile["reference_id"]
        if self.config.get("opscom_reference_id_string"):
            reference_id = str(reference_id)
        return {"status": "success", "reference_id": reference_id}
