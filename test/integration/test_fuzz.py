"""Fuzz suite of the row -> request body builders, and the keys that must
never reach the wire.

FuzzTest generates 100,000 rows (seeded: the same rows on every run) into
tables of random shapes -- random column types, NULLs, unicode with
combining marks, emoji, right-to-left text, control characters, quotes and
backslashes, over-long values, odd column names, mappings -- and sends them

  * all through opscom_payload() and cloudcard_payload(),
  * a share through enqueue() and deliver() to the mock API,
  * a few thousand through opscom_push() and cloudcard_upsert().

An oracle written here from the documented rules (README "From a row to a
request body") says, for every row, either the exact body or the SQLSTATEs
the row may fail with.  The suite asserts that the backend never crashes,
that every invalid row gets a clean error with one of those SQLSTATEs and
sends nothing, that every body the mock received decodes (strict JSON, no
duplicate key) to what the row held, field by field, and that the mock never
refuses a body for a reason campus_sync's own validation should have caught.

InvalidKeysTest: CloudCard keys that the URL path would misread (".", "..",
"/") and NaN keys, through every way in: nothing is sent.
"""
import datetime
import io
import json
import os
import random
import re
import sys
import time
import unittest
import urllib.parse
from decimal import Decimal

import psycopg2
import psycopg2.errors

from helpers import CLOUDCARD_PAT, MOCK_API, connect, create_database, mock, query, scalar

DB = "cs_it_fuzz"
SEED = 20261130
N_ROWS = 100_000
N_SHAPES = 10
QUEUE_EVERY = 4            # rows with rid % 4 == 0 go through the queue (OPS-COM),
                           # rid % 4 == 1 too (CloudCard): 25,000 items each
PUSH_EVERY = 50            # rid % 50 == 2 (OPS-COM), == 3 (CloudCard), == 4 (CloudCard's
                           # people API): 2,000 rows each
DELIVER_CHUNK = 5000       # items per deliver() call; the mock is reset between
SESSION_SETUP = ("SET TimeZone = 'America/St_Johns'; SET DateStyle = 'SQL, DMY'; "
                 "SET extra_float_digits = 0; SET client_min_messages = error; "
                 "SET log_min_messages = error")
ORACLE_SETUP = ("SET TimeZone = 'America/St_Johns'; SET DateStyle = 'ISO, YMD'; "
                "SET extra_float_digits = 1; SET IntervalStyle = 'postgres'")

# ---------------------------------------------------------------------------
# The documented rules, as data
# ---------------------------------------------------------------------------

# OPS-COM fields in body order: (name, limit in characters, check)
OPSCOM_FIELDS = [
    ("unique_id", 50, None), ("login_source", 20, None), ("first_name", 50, None),
    ("last_name", 50, None), ("user_name", 50, None), ("email", 100, "email"),
    ("street", 0, None), ("city", 50, None), ("province", 2, "region"),
    ("state", 2, "region"), ("postal_code", 20, None), ("zip", 20, None),
    ("street2", 20, None), ("city2", 50, None), ("province2", 2, "region"),
    ("state2", 2, "region"), ("postal_code2", 20, None), ("zip2", 20, None),
    ("phone_cell", 20, None), ("user_type_id", 0, "digits"), ("employ_no", 50, None),
    ("employee_phone", 50, None), ("student_no", 50, None), ("student_phone", 50, None),
    ("driver_licence_num", 255, None), ("driver_license_num", 255, None),
    ("date_of_birth", 10, "date"), ("locker_user_type_id", 0, "digits"),
    ("driver_licence_prov", 2, "region"), ("driver_license_state", 2, "region"),
]
OPSCOM_NAMES = [f[0] for f in OPSCOM_FIELDS]

# CloudCard fields: (name, snake_case alternate, kind)
CLOUDCARD_FIELDS = [
    ("email", None, "email"), ("identifier", None, "string"),
    ("cardholderGroupName", "cardholder_group_name", "string"),
    ("additionalPhotoRequired", "additional_photo_required", "bool"),
    ("enabled", None, "bool"), ("managerEmail", "manager_email", "email"),
    ("managerIdentifier", "manager_identifier", "string"),
    ("ROLE_CARDHOLDER", "role_cardholder", "bool"), ("ROLE_OFFICE", "role_office", "bool"),
    ("ROLE_DIRECTOR", "role_director", "bool"),
]
CLOUDCARD_STANDARD = {f[0] for f in CLOUDCARD_FIELDS} | {"customFields"}

UNICODE_BLANKS = {0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000} | set(range(0x2000, 0x200B))

# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------

FRAGMENTS = {
    "plain": ["Ann", "Lee", "Main Street", "x", "O", "12 b", "Kingston", "zz top", "ABC123"],
    "unicode": ["Zoë", "e\u0301", "a\u0308\u0323", "\u0301", "Łódź", "漢字", "한국어", "Ελληνικά",
                "Кириллица", "ﬁ", "Å", "\u00df", "İ", "\ufeff", "\ufffe", "\uffff", "\u200b"],
    "emoji": ["😀", "👩\u200d👩\u200d👧\u200d👦", "🇨🇦", "🏳\ufe0f\u200d🌈", "𝄞", "\U0010fffd", "🧑🏽\u200d💻"],
    "rtl": ["שלום", "مرحبا", "\u200f", "\u202e", "abc\u202edef", "עברית 123", "\u061c"],
    "control": ["\x01", "\x07", "\x08", "\t", "\n", "\r", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f",
                "\x85", "\u2028", "\u2029", "\x9f"],
    "quotes": ['"', "'", "\\", '\\"', "\\u0000", "</script>", '{"a": 1}', "\\n", "''", '""', "%2F",
               "a/b", "..", ".", "?#&=", "%00"],
    "words": ["NaN", "Infinity", "-Infinity", "null", "true", "false", "-0", "", "0", "1e5"],
    "blank": [" ", "  x  ", "\u00a0", "\u3000", "\u2003"],
}
FRAGMENT_KINDS = list(FRAGMENTS)


def gen_text(rng, long_share=0.01):
    """A string from the fragment pools, sometimes long (up to 20,000)."""
    if rng.random() < long_share:
        n = rng.choice([51, 60, 101, 256, 300, 2000]) if rng.random() < 0.9 else rng.randint(5000, 20000)
        s = ""
        while len(s) < n:
            s += rng.choice(FRAGMENTS[rng.choice(FRAGMENT_KINDS)]) or "y"
        return s[:n]
    return "".join(rng.choice(FRAGMENTS[rng.choice(FRAGMENT_KINDS)])
                   for _ in range(rng.randint(1, 4)))


def weighted(common, rare, rare_share):
    """A pool where each rare value comes up rare_share / len(rare) of the time."""
    n = max(1, round(len(rare) * (1 - rare_share) / rare_share / len(common)))
    return common * n + rare


BOOL_TEXTS = weighted(["t", "true", "TRUE", "Yes", "n", "no", "on", "off", "1", "0", "y", "N", "ON", "tru"],
                      ["of", "o", "maybe", "", " true", "True ", "ja", "falsey", "truely", "nope", "é"], 0.05)
REGIONS = weighted(["MA", "qc", "ON", "NY", "bc", "Tx"],
                   ["Q1", "É1", "ÉA", "California", "a", " M", "Ωm", "b\u0301", "M\u00a0"], 0.05)
DATE_TEXTS = weighted(["2001-02-03", "2000-02-29", "1999-12-31", "0001-01-01", "9999-12-31", ""],
                      ["2001-02-29", "1999-13-01", "31/01/1999", "0000-01-01", "2001-2-3",
                       "２００１-０２-０３", "2001-02-03T00:00", " 2001-02-03"], 0.05)
DIGIT_TEXTS = weighted(["6", "7", "0", "12", "123456", ""],
                       ["-3", "6.0", "١٢", " 6", "x", "123456789012345678901234567890", "NaN"], 0.05)
LOGIN_SOURCES = weighted(["BANNER", "OPSCOM"], ["", "Banner", "x" * 21, "ÉCOLE"], 0.05)
EMAIL_LOCALS = ["ann", "o'brien", "jöhn", "用户", "a+b", '"q"', "x_y", "UPPER", "a.b", "😀"]
EMAIL_DOMAINS = ["campus.edu", "ex.ac.uk", "bücher.de", "xn--bcher-kva.de", "sub.domain.org"]
# odd emails; those that are valid get the row id, as CloudCard wants them unique
BAD_EMAILS = ["", "no-at-sign", "a@@b.c", "a b@c.d", "a\u00a0b@c.d", "x@y", "x@.y", "x@y.", "x@y..z",
              "@y.z", "x@y.z\u3000", "x\x01@y.z", "x@y.z\x85", "a/b.%d@c.d", "Ann Lee <ann@c.d>",
              "x" * 95 + ".%d@c.edu", "x@y\u2003.z", "x@y.z\u2028", "\u202e%d@c.d", "%d@[127.0.0.1]"]
CUSTOM_KEYS = ["Class Year", "Dorm", "Batch", "ünï", "😀 key", 'a"b', "back\\slash", "tab\tkey", "Email",
               "ID", "role_x", "Upload Date", "k" * 40, "Identifier", "ENABLED", "Role_Office",
               "customfields", "\u05e9\u05dd", "Id", "USERNAME"]
RESERVED_KEYS = ["id", "ROLE_X", "email", "customFields", "", "username", "ROLE_OFFICE", "identifier",
                 "authorities", "enabled"]
JSON_NUMBERS = ["12", "-0", "0", "1.50", "1e5", "2.5E-3", "-12345678901234567890.123", "7", "1E+2",
                "-0.0", "3.14159", "1e-7"]


def gen_custom_json(rng, kind, bad_share=0.02):
    if rng.random() < bad_share:
        return rng.choice(["[]", '[1, "a"]', '"str"', "42", "null", "true"])
    pairs = []
    for _ in range(rng.randint(0, 5)):
        key = rng.choice(RESERVED_KEYS) if rng.random() < bad_share else rng.choice(CUSTOM_KEYS)
        v = rng.random()
        if v < bad_share:
            val = rng.choice(['{"a": 1}', "[1, 2]", "[]"])
        elif v < 0.5:
            val = json.dumps(gen_text(rng, 0.005), ensure_ascii=rng.random() < 0.3)
        elif v < 0.75:
            val = rng.choice(JSON_NUMBERS)
        elif v < 0.88:
            val = rng.choice(["true", "false"])
        else:
            val = "null"
        pairs.append((json.dumps(key, ensure_ascii=rng.random() < 0.5), val))
    if kind == "json" and pairs:
        if rng.random() < 0.1:             # json keeps duplicate keys; the last one counts
            pairs.append((pairs[0][0], json.dumps(gen_text(rng, 0))))
        if rng.random() < bad_share:       # jsonb (and so CloudCard) cannot take these
            pairs.append((json.dumps("Bad"), rng.choice(['"a\\u0000b"', '"\\ud800"', '"\\udc00x"'])))
    sep = rng.choice([", ", ",", " ,\n "])
    return "{" + sep.join("%s: %s" % p for p in pairs) + "}"


def make_pools(rng):
    """Values of each kind, drawn once: picking from them is fast."""
    def many(f, n=3000):
        return [f() for _ in range(n)]

    def number(rare, common_f):
        return many(lambda: rng.choice(rare) if rng.random() < 0.015 else common_f())

    digits = lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
    pools = {
        "text": many(lambda: gen_text(rng)),
        "int": many(lambda: str(rng.choice([0, 1, -1, 6, 7, 2 ** 31 - 1, -2 ** 31, rng.randint(-2 ** 31, 2 ** 31 - 1),
                                            rng.randint(0, 1000)]))),
        "bigint": many(lambda: str(rng.choice([2 ** 63 - 1, -2 ** 63, rng.randint(-2 ** 63, 2 ** 63 - 1),
                                               rng.randint(0, 10 ** 6)]))),
        "numeric": number(["NaN", "Infinity", "-Infinity"],
                          lambda: rng.choice(["0", "-0", "0.000", "1e-30", "1.5E+20", "-1e3", "6", "6.0", "7.50",
                                              digits(), "-" + digits(), digits() + "." + digits()[:12]])),
        "float8": number(["NaN", "Infinity", "-Infinity"],
                         lambda: rng.choice(["0", "-0", "5e-324", "1.7976931348623157e308", "0.1", "1e22", "1e-7",
                                             "123456789012345678", "6", "2.5",
                                             repr(rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-20, 20))])),
        "date": number(["infinity", "-infinity", "0044-03-15 BC", "12000-01-01", "0001-01-01 BC"],
                       lambda: "%04d-%02d-%02d" % (rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28))),
        "boolean": ["t", "f"],
        "json": many(lambda: gen_custom_json(rng, "json"), 2000),
        "jsonb": many(lambda: gen_custom_json(rng, "jsonb"), 2000),
        "small_int": weighted(["6", "7", "0", "12", "123456"], ["-3", "-2147483648"], 0.05),
        "small_number": weighted(["6", "7", "0", "12"], ["6.5", "-3", "1e+20", "NaN"], 0.05),
        "bool_text": BOOL_TEXTS, "region": REGIONS, "date_text": DATE_TEXTS, "digit_text": DIGIT_TEXTS,
        "login_source": LOGIN_SOURCES,
    }
    for tz in (False, True):
        def ts(tz=tz):
            s = "%04d-%02d-%02d %02d:%02d:%02d" % (
                rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28),
                rng.choice([0, 1, 2, 12, 22, 23]), rng.randint(0, 59), rng.randint(0, 59))
            if rng.random() < 0.3:
                s += ".%06d" % rng.randint(0, 999999)
            if tz:
                s += rng.choice(["+00", "-05", "+05:30", "-03:30", "+14", "-12"])
            return s
        pools["timestamptz" if tz else "timestamp"] = number(
            ["infinity", "-infinity", "0044-03-15 12:00:00 BC", "12000-01-01 00:00:00",
             "0001-01-01 00:30:00+00"], ts)
    return pools


def gen_email(rng, rid, bad_share=0.05):
    if rng.random() >= bad_share:
        return "%s.%d@%s" % (rng.choice(EMAIL_LOCALS), rid, rng.choice(EMAIL_DOMAINS))
    email = rng.choice(BAD_EMAILS)
    return email % rid if "%d" in email else email


def gen_key(rng, rid, kind, pools):
    """A person key, unique per row (rid first) but for a few invalid ones."""
    r = rng.random()
    if kind in ("text", "varchar", "name"):
        if r < 0.04:
            return rng.choice([".", "..", "/", "a/b", "", None, "...", " ", "%2e%2e", "..%2F", "./", "x/.."])
        return "%d#%s" % (rid, rng.choice(pools["text"]))
    if r < 0.01:
        return None
    if kind == "int":
        return str(rid if r < 0.5 else -rid)
    if kind == "bigint":
        return str(rid + 2 ** 62 if r < 0.5 else -(rid + 2 ** 62))
    if kind == "numeric":
        if r < 0.03:
            return rng.choice(["NaN", "Infinity", "-Infinity"])
        return rng.choice(["%d", "%d.000", "-%d.5", "%d00000000000000000000"]) % rid
    if kind == "float8":
        if r < 0.03:
            return rng.choice(["NaN", "Infinity", "-Infinity"])
        return repr(rng.choice([rid + 0.25, rid * 1e20, -rid * 1e-20, float(rid)]))
    raise AssertionError(kind)


# ---------------------------------------------------------------------------
# Shapes: random tables, columns and mappings
# ---------------------------------------------------------------------------

ANY_KINDS = ["text"] * 6 + ["varchar", "char", "name", "int", "bigint", "numeric", "float8", "date",
                            "timestamp", "timestamptz", "boolean"]
KEY_KINDS = ["text"] * 4 + ["varchar", "name", "int", "bigint", "numeric", "float8"]
ODD_NAMES = ["First Name", "FIRST_NAME", "Email", "EMAIL", "Unique_ID", "unique_id ", "Identifier",
             "Enabled", "Role_Office", "customfields", "CustomFields", "prénom", "名前", "nom de famille",
             "e-mail", "ROLE_office", "State", "ZIP", "Date_Of_Birth", "user type", "\u00e9tat",
             "\"quoted\"", "a.b", "Banner ID", "😀", "cardholdergroupname", "login source", "IDENTIFIER",
             "Custom_Fields", "first_name\u0301"]


class Column:
    """A column: its name, kind (and SQL type) and how its values are drawn."""

    def __init__(self, name, kind, draw, length=None, null_share=0.1):
        self.name = name
        self.kind = kind
        self.draw = draw            # draw(rng, rid) -> COPY value (str) or None
        self.length = length
        self.null_share = null_share

    @property
    def sqltype(self):
        if self.kind == "varchar":
            return "varchar(%d)" % self.length
        if self.kind == "char":
            return "char(%d)" % self.length
        return self.kind

    def quoted(self):
        return '"' + self.name.replace('"', '""') + '"'

    def values(self, rng, rids):
        out = []
        for rid in rids:
            v = None if rng.random() < self.null_share else self.draw(rng, rid)
            if v is not None and self.kind in ("varchar", "char"):
                v = v[:self.length]     # what fits the column
            out.append(v)
        return out


class Shape:
    """A table: its columns, and the mapping each service is called with."""

    def __init__(self, index, rng, pools):
        self.index = index
        self.table = "fuzz_%d" % index
        self.columns = [Column("rid", "int", None, null_share=0)]
        self.opscom_mapping = {}
        self.cloudcard_mapping = {}
        used = {"rid"}
        odd = list(ODD_NAMES)
        rng.shuffle(odd)

        def pool(name):
            p = pools[name]
            return lambda r, rid: r.choice(p)

        def add(name, kind, draw=None, null_share=0.1, length=None):
            assert name not in used, name
            used.add(name)
            if kind == "varchar" and length is None:
                length = rng.choice([1, 2, 10, 60, 255, 400])
            if kind == "char" and length is None:
                length = rng.choice([1, 2, 5, 12, 60])
            if draw is None:
                draw = pool("text" if kind in ("varchar", "char", "name") else kind)
            col = Column(name, kind, draw, length, null_share)
            self.columns.append(col)
            return col

        def source(field, mapping, odd_share=0.3):
            """The column name for a field: itself, or an odd name and a mapping entry."""
            if rng.random() < odd_share and odd:
                name = odd.pop()
                mapping[field] = name
                return name
            return field

        def key_column(field, mapping):
            kind = rng.choice(KEY_KINDS)
            add(source(field, mapping), kind, lambda r, rid, k=kind: gen_key(r, rid, k, pools),
                null_share=0, length=400)

        # OPS-COM: the key, and a random subset of the other fields
        key_column("unique_id", self.opscom_mapping)
        for fname, limit, check in OPSCOM_FIELDS[1:]:
            if rng.random() > 0.4:
                continue
            length = None
            if fname == "email":
                kind = rng.choice(["text"] * 20 + ["varchar", "int"])
                draw = (lambda r, rid: gen_email(r, rid)) if kind != "int" else None
            elif check == "region":
                kind = rng.choice(["text", "text", "char", "varchar"])
                draw = pool("region")
                length = 2 if kind != "text" and rng.random() < 0.7 else None
            elif check == "date":
                kind = rng.choice(["date", "date", "timestamp", "timestamptz", "text"])
                draw = pool("date_text") if kind == "text" else None
            elif check == "digits":
                kind = rng.choice(["int", "int", "bigint", "numeric", "float8", "text"])
                draw = pool({"int": "small_int", "bigint": "small_int", "text": "digit_text"}.get(kind, "small_number"))
            elif fname == "login_source":
                kind = "text"
                draw = pool("login_source")
            else:
                kind = rng.choice(ANY_KINDS)
                draw = None
            add(source(fname, self.opscom_mapping), kind, draw, length=length)
        # a field mapped to null is left out although the column exists
        present = [c.name for c in self.columns if c.name in OPSCOM_NAMES[1:]]
        if present and rng.random() < 0.5:
            self.opscom_mapping[rng.choice(present)] = None

        # CloudCard: the key, the other fields (email is shared), custom fields
        key_column("identifier", self.cloudcard_mapping)
        for fname, alt, fkind in CLOUDCARD_FIELDS[2:]:
            if rng.random() > 0.5:
                continue
            length = None
            if fkind == "bool":
                kind = rng.choice(["boolean"] * 4 + ["text", "char", "varchar"])
                draw = pool("bool_text") if kind != "boolean" else None
                length = rng.choice([5, 60]) if kind in ("char", "varchar") else None
            elif fkind == "email":
                kind = rng.choice(["text"] * 20 + ["varchar", "int"])
                draw = (lambda r, rid: gen_email(r, rid)) if kind != "int" else None
            else:
                kind = rng.choice(ANY_KINDS)
                draw = None
            if rng.random() < 0.3 and odd:
                name = odd.pop()
                self.cloudcard_mapping[rng.choice([fname, alt or fname])] = name
            else:
                name = rng.choice([fname, alt or fname])
            add(name, kind, draw, length=length)
        if "email" not in used and rng.random() < 0.8:
            add("email", "text", lambda r, rid: gen_email(r, rid))
        r = rng.random()
        if r < 0.7:
            add(rng.choice(["custom_fields", "customFields"]), rng.choice(["json", "jsonb"]), null_share=0.15)
        if r > 0.5:
            custom = {}
            for key in rng.sample(CUSTOM_KEYS, rng.randint(1, 3)):
                col = add("cf %d %s" % (len(custom), key.replace('"', "")), rng.choice(ANY_KINDS))
                custom[key] = col.name
            self.cloudcard_mapping["customFields"] = custom
        if "identifier" not in self.cloudcard_mapping and rng.random() < 0.3:
            self.cloudcard_mapping["identifier"] = "identifier"

        # decoys: odd names that look like API fields, never read
        for _ in range(rng.randint(2, 5)):
            if odd:
                add(odd.pop(), rng.choice(ANY_KINDS + ["json"]))

    def create_sql(self):
        return "CREATE TABLE %s (%s)" % (self.table, ", ".join(
            "%s %s" % (c.quoted(), c.sqltype) for c in self.columns))

    def copy_data(self, rng, rids):
        columns = [[str(r) for r in rids]] + [c.values(rng, rids) for c in self.columns[1:]]
        return "".join("\t".join(map(copy_escape, row)) + "\n" for row in zip(*columns))


def copy_escape(value):
    if value is None:
        return "\\N"
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t"))


# ---------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------

class Bad(Exception):
    def __init__(self, sqlstate):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


DATE_RE = re.compile(r"^([0-9]{4,})-([0-9]{2})-([0-9]{2})")


def value_text(kind, stored):
    """The text a stored value is sent as (documented rules), or raise Bad."""
    if kind == "char":
        return stored.rstrip(" ")
    if kind in ("numeric", "float8") and stored in ("NaN", "Infinity", "-Infinity"):
        raise Bad("22P02")
    if kind in ("date", "timestamp", "timestamptz"):
        m = DATE_RE.match(stored)
        if stored.endswith(" BC") or m is None or int(m.group(1)) > 9999:
            raise Bad("22008")
        return stored[:10]
    if kind == "boolean":
        return {"t": "true", "f": "false", "true": "true", "false": "false"}[stored]
    return stored


def email_ok(v):
    for ch in v:
        o = ord(ch)
        if o <= 0x20 or o == 0x7F or 0x80 <= o <= 0x9F or o in UNICODE_BLANKS:
            return False
    at = v.find("@")
    if at <= 0 or "@" in v[at + 1:]:
        return False
    domain = v[at + 1:]
    dot = domain.rfind(".")
    return dot > 0 and dot != len(domain) - 1 and ".." not in domain


def ymd_ok(v):
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v):
        return False
    try:
        datetime.date(int(v[:4]), int(v[5:7]), int(v[8:10]))
    except ValueError:
        return False
    return True


def parse_bool(s):
    """PostgreSQL's parse_bool(): prefixes of true/false/yes/no, on/off, 1/0."""
    low = s.lower() if s.isascii() else None
    if not low:
        return None
    for word, value in (("true", True), ("false", False), ("yes", True), ("no", False)):
        if word.startswith(low):
            return value
    if low in ("on",):
        return True
    if low in ("of", "off"):
        return False
    if low == "1":
        return True
    if low == "0":
        return False
    return None


def numeric_text(d):
    s = format(d, "f")
    return s[1:] if s.startswith("-") and d == 0 else s


def has_bad_char(obj):
    """Strings jsonb cannot hold: NUL, lone surrogates (keys and values)."""
    if isinstance(obj, str):
        return "\x00" in obj or any(0xD800 <= ord(c) <= 0xDFFF for c in obj)
    if isinstance(obj, list):
        return any(has_bad_char(x) for x in obj)
    if isinstance(obj, dict):
        return any(has_bad_char(k) or has_bad_char(v) for k, v in obj.items())
    return False


def custom_name_ok(name):
    return not (name == "" or name in CLOUDCARD_STANDARD or name.startswith("ROLE_")
                or name in ("id", "username", "authorities"))


class Oracle:
    """Expected outcome of a row: ("ok", body dict) or ("err", {sqlstates})."""

    def __init__(self, shape):
        self.shape = shape
        self.kinds = {c.name: c.kind for c in shape.columns}
        self.ops_sources = []
        for fname, limit, check in OPSCOM_FIELDS:
            col = self.resolve(shape.opscom_mapping, fname, None)
            self.ops_sources.append((fname, limit, check, col))
        self.cc_sources = []
        for fname, alt, fkind in CLOUDCARD_FIELDS:
            col = self.resolve(shape.cloudcard_mapping, fname, alt)
            self.cc_sources.append((fname, fkind, col))
        m = shape.cloudcard_mapping
        entry = m.get("customFields", m.get("custom_fields", "absent"))
        if isinstance(entry, dict):
            self.custom_json = next((n for n in ("custom_fields", "customFields") if n in self.kinds), None)
            self.custom_columns = list(entry.items())
        else:
            self.custom_json = self.resolve(m, "customFields", "custom_fields")
            self.custom_columns = []

    def resolve(self, mapping, field, alt):
        for key in (field, alt):
            if key is not None and key in mapping:
                return mapping[key]
        for key in (field, alt):
            if key is not None and key in self.kinds:
                return key
        return None

    def opscom(self, row):
        errors = set()
        values = {}
        for fname, limit, check, col in self.ops_sources:
            if col is None or row[col] is None:
                continue
            try:
                v = value_text(self.kinds[col], row[col])
            except Bad as e:
                errors.add(e.sqlstate)
                continue
            if limit and len(v) > limit:
                errors.add("22001")
            elif v != "":
                if check == "email" and not email_ok(v):
                    errors.add("22P02")
                elif check == "region" and not (len(v.encode()) == 2 and v.isascii() and v.isalpha()):
                    errors.add("22P02")
                elif check == "date" and not ymd_ok(v):
                    errors.add("22007")
                elif check == "digits" and not all(c in "0123456789" for c in v):
                    errors.add("22P02")
            values[fname] = v
        if "login_source" not in values:
            values["login_source"] = "BANNER"       # the server option
        if not values.get("unique_id"):
            errors.add("23502")
        if values["login_source"] == "":
            errors.add("23502")
        if errors:
            return ("err", errors)
        return ("ok", values)

    def cloudcard(self, row):
        errors = set()
        body = {}
        for fname, fkind, col in self.cc_sources:
            if col is None or row[col] is None:
                continue
            kind = self.kinds[col]
            try:
                if fkind == "bool":
                    if kind == "boolean":
                        body[fname] = row[col] in ("t", "true")
                    else:
                        b = parse_bool(value_text(kind, row[col]))
                        if b is None:
                            errors.add("22P02")
                        else:
                            body[fname] = b
                    continue
                v = value_text(kind, row[col])
            except Bad as e:
                errors.add(e.sqlstate)
                continue
            if fkind == "email" and v != "" and not email_ok(v):
                errors.add("22P02")
            body[fname] = v
        custom = {}
        if self.custom_json is not None and row[self.custom_json] is not None:
            try:
                obj = json.loads(row[self.custom_json], parse_float=Decimal, parse_int=Decimal)
            except ValueError:
                raise AssertionError("the oracle cannot read %r" % row[self.custom_json])
            if self.kinds[self.custom_json] == "json" and has_bad_char(obj):
                errors.add("22P05")
                errors.add("22P02")
            elif not isinstance(obj, dict):
                errors.add("22023")
            else:
                for k, v in obj.items():
                    if v is None:
                        continue
                    if isinstance(v, (dict, list)):
                        errors.add("22023")
                        break
                    if not custom_name_ok(k):
                        errors.add("22023")
                        break
                    if isinstance(v, bool):
                        custom[k] = "true" if v else "false"
                    elif isinstance(v, Decimal):
                        custom[k] = numeric_text(v)
                    else:
                        custom[k] = v
        for name, col in self.custom_columns:
            if row[col] is None:
                continue
            try:
                custom[name] = value_text(self.kinds[col], row[col])
            except Bad as e:
                errors.add(e.sqlstate)
        key = body.get("identifier")
        if not key:
            errors.add("23502")
        elif len(key) > 255:
            errors.add("22001")
        elif key in (".", "..") or "/" in key:
            errors.add("22P02")
        if errors:
            return ("err", errors)
        body.update(custom)
        return ("ok", body)


# ---------------------------------------------------------------------------
# Comparing what the mock received
# ---------------------------------------------------------------------------

def strict_json(text):
    """Decodes a body; fails on duplicate keys and on NaN-like constants."""
    def pairs_hook(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise AssertionError("duplicate key in a body: %r" % text[:200])
        return dict(pairs)

    def constant(name):
        raise AssertionError("non-standard JSON constant %s in a body" % name)
    return json.loads(text, object_pairs_hook=pairs_hook, parse_constant=constant)


UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def path_escape(key):
    return "".join(chr(b) if chr(b) in UNRESERVED else "%%%02X" % b for b in key.encode())


def person_key_of(service, body):
    return body["unique_id"] if service == "opscom" else body["identifier"]


def canon(obj):
    """A canonical text of a JSON value: true is not 1, "1" is not 1."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def allowed_refusal(service, error, body):
    """Refusals of the remote that campus_sync does not (and cannot) check first."""
    if service == "opscom":
        # login sources are whatever an OPS-COM admin typed
        return error.startswith("OPS-COM error 9015:")
    # an empty email is sent (it clears the field); the mock refuses it
    return body.get("email") == "" and "email is not a valid email address" in error


class Received:
    """Checks every request the mock recorded against the expected bodies."""

    def __init__(self, test, service, expected, api="person"):
        self.test = test
        self.service = service
        self.api = api
        self.expected = {k: {canon(b) for b in bodies} for k, bodies in expected.items()}
        self.seen = set()                 # person keys that arrived
        self.requests = 0

    def check(self, records):
        t = self.test
        for r in records:
            self.requests += 1
            path = r["path"]
            if path == "/authentication-token":
                continue
            t.assertIsNotNone(r["status"], "a request got no answer: %r" % path)
            body = strict_json(r["body"])
            if self.service == "opscom":
                t.assertEqual((r["method"], path), ("POST", "/api/OC_TOMA/v1/profiles/push"))
                t.assertEqual(body.pop("apiToken"), "opscom-test-token-0123456789")
                key = body.get("unique_id")
                sent = body
            else:
                key = body.get("identifier")
                if r["method"] == "PUT":
                    t.assertEqual(path, "/person/" + path_escape(key), "the path of %r" % key)
                    t.assertEqual(r["query"], "findBy=identifier&updateRoles=false")
                    sent = body
                else:
                    # the create, and the people API, nest the custom fields
                    if self.api == "people":
                        t.assertEqual((r["method"], path, r["query"]),
                                      ("POST", "/api/people", "allowUpdate=true&sendInvitation=false"))
                    else:
                        t.assertEqual((r["method"], path), ("POST", "/person"))
                    sent = dict(body)
                    custom = sent.pop("customFields", None)
                    if custom is not None:
                        t.assertIsInstance(custom, dict)
                        t.assertTrue(custom, "an empty customFields object is sent: %s" % r["body"][:1000])
                    custom = custom or {}
                    for k, v in custom.items():
                        t.assertNotIn(k, sent, "custom field %r beside a person field" % k)
                        sent[k] = v
            wanted = self.expected.get(key)
            t.assertIsNotNone(wanted, "%s received a person nobody sent: %r (%s %s)" % (
                self.service, key, r["method"], path))
            t.assertIn(canon(sent), wanted, "%s body of %r (%s %s): %s" % (
                self.service, key, r["method"], path, r["body"][:1000]))
            self.seen.add(key)


def flat_preview(test, body, where):
    """A CloudCard preview (custom fields nested under customFields, one
    form whatever the request) as the update sends it: flat."""
    for k in body:
        test.assertIn(k, CLOUDCARD_STANDARD, "%s: custom field %r outside customFields" % (where, k))
    custom = body.pop("customFields", None)
    if custom is not None:
        test.assertIsInstance(custom, dict, where)
        test.assertTrue(custom, "%s: an empty customFields object" % where)
        for k, v in custom.items():
            test.assertNotIn(k, body, "%s: custom field %r beside a person field" % (where, k))
            body[k] = v
    return body


def mock_requests_since(seq):
    return mock("requests", since=seq)


# ---------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------

TRY_FUNCTIONS = """
CREATE FUNCTION fuzz_try_opscom(p anyelement, m jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN 'OK ' || campus_sync.opscom_payload(p, m)::text;
EXCEPTION WHEN others THEN
  RETURN 'ERR ' || SQLSTATE || ' ' || SQLERRM;
END $$;
CREATE FUNCTION fuzz_try_cloudcard(p anyelement, m jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN 'OK ' || campus_sync.cloudcard_payload(p, m)::text;
EXCEPTION WHEN others THEN
  RETURN 'ERR ' || SQLSTATE || ' ' || SQLERRM;
END $$;
"""


def log_path():
    return os.path.join(os.environ.get("RUN_DIR", ""), "postgres.log")


class FuzzTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t0 = time.monotonic()
        cls.log_offset = os.path.getsize(log_path()) if os.path.exists(log_path()) else None
        cls.conn = create_database(DB, TRY_FUNCTIONS)
        query(cls.conn, "CREATE SERVER cloudcard_people FOREIGN DATA WRAPPER campus_sync "
                        "OPTIONS (service 'cloudcard', url %s, api 'people')", (MOCK_API,))
        query(cls.conn, "CREATE USER MAPPING FOR PUBLIC SERVER cloudcard_people "
                        "OPTIONS (persistent_access_token %s)", (CLOUDCARD_PAT,))
        query(cls.conn, SESSION_SETUP)
        cls.pid = scalar(cls.conn, "SELECT pg_backend_pid()")
        rng = random.Random(SEED)
        pools = make_pools(rng)
        cls.shapes = [Shape(i, rng, pools) for i in range(N_SHAPES)]
        cls.counts = {"rows": N_ROWS, "payload_ok": {}, "payload_invalid": {}, "queue_items": {},
                      "queue_sent": {}, "push_rows": {}, "push_sent": {}, "requests": 0,
                      "seconds": {}}
        per_shape = N_ROWS // N_SHAPES
        with cls.conn.cursor() as cur:
            for shape in cls.shapes:
                cur.execute(shape.create_sql())
                rids = range(shape.index * per_shape + 1, (shape.index + 1) * per_shape + 1)
                cur.copy_expert("COPY %s FROM STDIN" % shape.table, io.StringIO(shape.copy_data(rng, rids)))
        cls.t_generated = time.monotonic()
        # what the database holds, as PostgreSQL prints it (ISO dates, exact floats)
        oracle_conn = connect(DB)
        query(oracle_conn, ORACLE_SETUP)
        for shape in cls.shapes:
            cols = ", ".join(c.quoted() if c.kind in ("text", "varchar", "char", "name")
                             else c.quoted() + "::text" for c in shape.columns)
            shape.oracle = Oracle(shape)
            shape.expected = {}
            for rec in query(oracle_conn, "SELECT %s FROM %s" % (cols, shape.table)):
                row = {c.name: v for c, v in zip(shape.columns, rec)}
                r = int(row["rid"])
                shape.expected[r] = (shape.oracle.opscom(row), shape.oracle.cloudcard(row))
        oracle_conn.close()

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        c = cls.counts
        print("\nfuzz: %d rows in %d tables; %.1f s (generated in %.1f s)" % (
            c["rows"], N_SHAPES, time.monotonic() - cls.t0, cls.t_generated - cls.t0), file=sys.stderr)
        for service in ("opscom", "cloudcard"):
            print("fuzz: %s payload: %d valid, invalid by SQLSTATE %s" % (
                service, c["payload_ok"].get(service, 0),
                dict(sorted(c["payload_invalid"].get(service, {}).items()))), file=sys.stderr)
            print("fuzz: %s queue: %d items, %d persons sent" % (
                service, c["queue_items"].get(service, 0), c["queue_sent"].get(service, 0)), file=sys.stderr)
        for server in c["push_rows"]:
            print("fuzz: push to %s: %d rows, %d persons sent" % (
                server, c["push_rows"][server], c["push_sent"][server]), file=sys.stderr)
        print("fuzz: %d requests received by the mock; seconds: %s" % (
            c["requests"], ", ".join("%s %.1f" % kv for kv in c["seconds"].items())), file=sys.stderr)

    def mapping(self, shape, service):
        m = shape.opscom_mapping if service == "opscom" else shape.cloudcard_mapping
        return json.dumps(m) if m else None

    def assert_alive(self):
        self.assertEqual(scalar(self.conn, "SELECT pg_backend_pid()"), self.pid,
                         "the backend was replaced: did it crash?")
        if self.log_offset is not None:
            with open(log_path(), "rb") as f:
                f.seek(self.log_offset)
                log = f.read().decode("utf-8", "replace")
            self.assertNotIn("terminated by signal", log)
            self.assertNotIn("was terminated by", log)

    # -- 1. every row through the payload functions ------------------------

    def test_1_payload_functions(self):
        t0 = time.monotonic()
        for shape in self.shapes:
            with self.conn.cursor() as cur:
                cur.execute("SELECT t.rid, fuzz_try_opscom(t, %s), fuzz_try_cloudcard(t, %s) FROM "
                            + shape.table + " t",
                            (self.mapping(shape, "opscom"), self.mapping(shape, "cloudcard")))
                for rid, ops, cc in cur:
                    want = shape.expected[rid]
                    for service, got, (status, value) in (("opscom", ops, want[0]), ("cloudcard", cc, want[1])):
                        where = "%s row %d of %s" % (service, rid, shape.table)
                        if got.startswith("OK "):
                            self.assertEqual(status, "ok", "%s: accepted, but the oracle expects %s: %s" % (
                                where, value, got[:300]))
                            preview = json.loads(got[3:])
                            if service == "cloudcard":
                                preview = flat_preview(self, preview, where)
                            self.assertEqual(canon(preview), canon(value), where)
                            ok = self.counts["payload_ok"]
                            ok[service] = ok.get(service, 0) + 1
                        else:
                            m = re.match(r"ERR ([0-9A-Z]{5}) (.+)", got, re.S)
                            self.assertIsNotNone(m, "%s: %r" % (where, got[:300]))
                            sqlstate = m.group(1)
                            self.assertEqual(status, "err", "%s: refused (%s), but the oracle expects %r" % (
                                where, got[:400], value))
                            self.assertIn(sqlstate, value, "%s: %s" % (where, got[:400]))
                            inv = self.counts["payload_invalid"].setdefault(service, {})
                            inv[sqlstate] = inv.get(sqlstate, 0) + 1
        self.counts["seconds"]["payload"] = time.monotonic() - t0
        self.assert_alive()

    # -- 2. a large share through enqueue() and deliver() -------------------

    def expected_sent(self, service, pick):
        """key -> bodies of the picked valid rows (a few keys such as "." are
        shared by several rows); and the number of invalid rows picked."""
        valid, invalid = {}, 0
        for shape in self.shapes:
            for rid, want in shape.expected.items():
                if not pick(rid):
                    continue
                status, value = want[0] if service == "opscom" else want[1]
                if status == "ok":
                    valid.setdefault(person_key_of(service, value), []).append(value)
                else:
                    invalid += 1
        return valid, invalid

    def reset_mock(self):
        mock("reset")
        mock("config", opscom_require_names_on_create=False)

    def test_2_queue(self):
        for service, residue in (("opscom", 0), ("cloudcard", 1)):
            t0 = time.monotonic()
            pick = (lambda rid, r=residue: rid % QUEUE_EVERY == r)
            valid, invalid = self.expected_sent(service, pick)
            query(self.conn, "DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox")
            n = 0
            for shape in self.shapes:
                n += scalar(self.conn, "SELECT count(campus_sync.enqueue(%s, t, %s)) FROM " + shape.table +
                            " t WHERE rid %% %s = %s",
                            (service, self.mapping(shape, service), QUEUE_EVERY, residue))
            self.counts["queue_items"][service] = n
            self.assertEqual(n, sum(len(b) for b in valid.values()) + invalid)
            self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'invalid' "
                                               "AND (last_error IS NULL OR last_error = '')"), 0)
            received = Received(self, service, valid)
            while True:
                self.reset_mock()
                query(self.conn, "SELECT * FROM campus_sync.deliver(%s, max_seconds => 120, max_items => %s)",
                      (service, DELIVER_CHUNK))
                records = mock_requests_since(0)
                received.check(records)
                if not records:
                    break
            self.assertEqual(received.seen, set(valid), "every valid row is sent, no other")
            states = dict(query(self.conn, "SELECT state, count(*) FROM campus_sync.queue GROUP BY state"))
            self.assertEqual(states.get("pending", 0) + states.get("retrying", 0), 0, states)
            # one item per person: older states of a shared key were coalesced
            self.assertEqual(states.get("delivered", 0) + states.get("failed", 0), len(valid), states)
            self.assertLessEqual(states.get("invalid", 0), invalid)
            for key, error in query(self.conn, "SELECT person_key, last_error FROM campus_sync.queue "
                                               "WHERE state = 'failed'"):
                self.assertTrue(any(allowed_refusal(service, error, b) for b in valid[key]),
                                "the remote refused a body campus_sync found valid: %r: %s" % (key, error))
            self.counts["queue_sent"][service] = len(received.seen)
            self.counts["seconds"]["queue " + service] = time.monotonic() - t0
            self.counts["requests"] += received.requests
        self.assert_alive()

    # -- 3. a few thousand through the synchronous push ----------------------

    def test_3_push(self):
        for service, residue, fn, server in (("opscom", 2, "opscom_push", "opscom"),
                                             ("cloudcard", 3, "cloudcard_upsert", "cloudcard"),
                                             ("cloudcard", 4, "cloudcard_upsert", "cloudcard_people")):
            t0 = time.monotonic()
            pick = (lambda rid, r=residue: rid % PUSH_EVERY == r)
            valid, invalid = self.expected_sent(service, pick)
            self.reset_mock()
            results = {}
            for shape in self.shapes:
                for rid, ok, status, error in query(
                        self.conn, "SELECT t.rid, r.ok, r.http_status, r.error FROM " + shape.table +
                        " t, LATERAL campus_sync." + fn + "(t, %s, %s) r WHERE rid %% %s = %s",
                        (self.mapping(shape, service), server, PUSH_EVERY, residue)):
                    results[rid] = (shape, ok, status, error)
            received = Received(self, service, valid, "people" if server == "cloudcard_people" else "person")
            received.check(mock_requests_since(0))
            self.assertEqual(received.seen, set(valid), "every valid row is sent, no other")
            for rid, (shape, ok, status, error) in results.items():
                want = shape.expected[rid][0 if service == "opscom" else 1]
                if want[0] == "err":
                    self.assertFalse(ok)
                    self.assertIsNone(status, "an invalid row was sent: %d" % rid)
                    self.assertTrue(error, "an invalid row has no error: %d" % rid)
                elif not ok:
                    self.assertTrue(allowed_refusal(service, error or "", want[1]),
                                    "the remote refused row %d, which campus_sync found valid: %s" % (rid, error))
            self.counts["push_rows"][server] = len(results)
            self.counts["push_sent"][server] = len(received.seen)
            self.counts["seconds"]["push " + server] = time.monotonic() - t0
            self.counts["requests"] += received.requests
        self.assert_alive()


class InvalidKeysTest(unittest.TestCase):
    """Keys the URL path would misread, and NaN keys: refused, never sent."""

    DB = "cs_it_fuzz_keys"
    BAD = [".", "..", "/", "a/b", "../x", "x/.."]

    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(cls.DB, """
            CREATE TABLE cards (identifier text, email text);
            CREATE TRIGGER cards_cloudcard AFTER INSERT OR UPDATE ON cards
              FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('cloudcard');
            CREATE TABLE numbers (unique_id float8, identifier numeric);
        """)
        query(cls.conn, "SET client_min_messages = error")

    def setUp(self):
        mock("reset")
        query(self.conn, "TRUNCATE cards, numbers; DELETE FROM campus_sync.queue_items; "
                         "DELETE FROM campus_sync.inbox")

    def assert_nothing_sent_but(self, allowed_keys=()):
        for r in mock("requests"):
            if r["path"] == "/authentication-token":
                continue
            self.assertIn(r["path"], ["/person/" + path_escape(k) for k in allowed_keys] + ["/person"],
                          "sent: %s %s" % (r["method"], r["path"]))
            self.assertIn((r.get("json") or {}).get("identifier"), allowed_keys)

    def test_trigger_and_enqueue_keep_invalid_items_and_send_nothing(self):
        with self.conn.cursor() as cur:
            for key in self.BAD + ["ok.1"]:
                cur.execute("INSERT INTO cards VALUES (%s, %s)", (key, None))
            cur.execute("SELECT campus_sync.enqueue('cloudcard', x) FROM (SELECT '..'::text AS identifier) x")
            cur.execute("INSERT INTO numbers VALUES ('NaN', 'Infinity'), ('-Infinity', 'NaN')")
            cur.execute("SELECT campus_sync.enqueue('opscom', n) FROM numbers n")
            cur.execute("SELECT campus_sync.enqueue('cloudcard', n) FROM numbers n")
        query(self.conn, "SELECT * FROM campus_sync.deliver(max_seconds => 30)")
        items = query(self.conn, "SELECT server, person_key, state, last_error FROM campus_sync.queue ORDER BY id")
        self.assertEqual([(i[0], i[1], i[2]) for i in items if i[2] != "invalid"],
                         [("cloudcard", "ok.1", "delivered")])
        errors = sorted(i[3] for i in items if i[2] == "invalid")
        # a key that cannot be sent is no person's key: the items have none
        self.assertEqual([i[1] for i in items if i[2] == "invalid"], [None] * 11)
        patterns = ['"identifier" cannot be "..?" as the person\'s key'] * 3 + \
            ['"identifier" cannot contain "/" as the person\'s key'] * 4 + \
            ['"(identifier|unique_id)" must be a finite number, not (NaN|-?Infinity)'] * 4
        for pattern in patterns:
            match = [e for e in errors if re.search(pattern, e)]
            self.assertTrue(match, "no invalid item says %r: %r" % (pattern, errors))
            errors.remove(match[0])
        self.assertEqual(errors, [])
        self.assert_nothing_sent_but(["ok.1"])

    def test_on_invalid_error_refuses_the_write(self):
        query(self.conn, "ALTER SERVER cloudcard OPTIONS (ADD on_invalid 'error')")
        try:
            for key in self.BAD:
                with self.assertRaises(psycopg2.Error) as cm:
                    query(self.conn, "INSERT INTO cards VALUES (%s, NULL)", (key,))
                self.assertEqual(cm.exception.pgcode, "22P02", key)
            with self.assertRaises(psycopg2.Error) as cm:
                query(self.conn, "SELECT campus_sync.enqueue('cloudcard', x) FROM (SELECT '.'::text AS identifier) x")
            self.assertEqual(cm.exception.pgcode, "22P02")
        finally:
            query(self.conn, "ALTER SERVER cloudcard OPTIONS (DROP on_invalid)")
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM cards"), 0)
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue"), 0)
        query(self.conn, "SELECT * FROM campus_sync.deliver(max_seconds => 10)")
        self.assert_nothing_sent_but()

    def test_push_and_lookup_send_nothing(self):
        for key in self.BAD:
            ok, status, error = query(self.conn, "SELECT r.ok, r.http_status, r.error FROM "
                                                 "(SELECT %s::text AS identifier) x, "
                                                 "LATERAL campus_sync.cloudcard_upsert(x) r", (key,))[0]
            self.assertEqual((ok, status), (False, None), key)
            self.assertIn("as the person's key in the URL path", error)
            with self.assertRaises(psycopg2.Error) as cm:
                query(self.conn, "SELECT campus_sync.cloudcard_person(%s)", (key,))
            self.assertEqual(cm.exception.pgcode, "22P02", key)
        ok, error = query(self.conn, "SELECT r.ok, r.error FROM (SELECT 'NaN'::numeric AS unique_id) x, "
                                     "LATERAL campus_sync.opscom_push(x) r")[0]
        self.assertFalse(ok)
        self.assertIn("must be a finite number, not NaN", error)
        self.assertEqual(mock("requests"), [], "nothing at all reaches the mock, not even a token exchange")


if __name__ == "__main__":
    unittest.main()
