"""The upgrade chain: 0.1 with queued items, ALTER EXTENSION campus_sync
UPDATE through every version, the items delivered, and the upgraded catalog
identical to a fresh install of the newest version.

Items are written into 0.1's tables directly, as 0.1 left them: the library
installed is always the newest, which expects the newest tables.
"""
import difflib
import re
import unittest

from helpers import CLOUDCARD_PAT, MOCK_API, OPSCOM_TOKEN, connect, mock, query, scalar

FRESH = "cs_it_upgrade_fresh"
OLD = "cs_it_upgrade_old"
CONTROL = __file__.rsplit("/test/", 1)[0] + "/campus_sync.control"

# Every object that belongs to the extension, described by what a user
# relies on (names, types, bodies, privileges, settings), not by OIDs;
# privileges as sorted lists (GRANT order is not a difference).
CATALOG = r"""
WITH members AS (
  SELECT d.classid, d.objid FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
  WHERE e.extname = 'campus_sync' AND d.deptype = 'e')
SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM members
UNION ALL
SELECT format('routine %s(%s) returns %s kind=%s volatile=%s strict=%s secdef=%s parallel=%s '
              'config=%s acl=%s language=%s bin=%s src=%s',
              p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
              p.prokind, p.provolatile, p.proisstrict, p.prosecdef, p.proparallel,
              p.proconfig, array(SELECT x::text FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) x ORDER BY 1), l.lanname,
              p.probin, md5(p.prosrc))
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = 'campus_sync'::regnamespace
UNION ALL
SELECT format('relation %s kind=%s persistence=%s options=%s replident=%s acl=%s',
              c.relname, c.relkind, c.relpersistence, c.reloptions, c.relreplident,
              array(SELECT x::text FROM unnest(coalesce(c.relacl, acldefault(
                CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) x ORDER BY 1))
FROM pg_class c WHERE c.relnamespace = 'campus_sync'::regnamespace
UNION ALL
SELECT format('column %s.%s #%s %s notnull=%s default=%s collation=%s', c.relname, a.attname,
              row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
              format_type(a.atttypid, a.atttypmod), a.attnotnull,
              pg_get_expr(ad.adbin, ad.adrelid), a.attcollation::regcollation)
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
WHERE c.relnamespace = 'campus_sync'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'campus_sync'::regnamespace
UNION ALL
SELECT format('constraint %s on %s: %s', co.conname, co.conrelid::regclass, pg_get_constraintdef(co.oid))
FROM pg_constraint co WHERE co.connamespace = 'campus_sync'::regnamespace
UNION ALL
SELECT format('view %s: %s', c.relname, pg_get_viewdef(c.oid))
FROM pg_class c WHERE c.relnamespace = 'campus_sync'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT format('sequence %s: %s %s %s %s', s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart,
              s.seqincrement, s.seqcache)
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'campus_sync'::regnamespace
UNION ALL
SELECT format('event trigger %s on %s tags=%s function=%s enabled=%s', t.evtname, t.evtevent,
              t.evttags, t.evtfoid::regprocedure, t.evtenabled)
FROM pg_event_trigger t
UNION ALL
SELECT format('wrapper %s validator=%s acl=%s', w.fdwname, w.fdwvalidator::regproc, array(SELECT x::text FROM unnest(w.fdwacl) x ORDER BY 1))
FROM pg_foreign_data_wrapper w
UNION ALL
SELECT format('config dump %s', array(SELECT unnest(e.extconfig)::regclass::text ORDER BY 1))
FROM pg_extension e WHERE e.extname = 'campus_sync'
UNION ALL
SELECT format('schema acl %s', array(SELECT x::text FROM unnest(coalesce(n.nspacl, acldefault('n', n.nspowner))) x ORDER BY 1))
FROM pg_namespace n WHERE n.nspname = 'campus_sync'
ORDER BY 1
"""

# Items as 0.1 queued them: one waiting in the inbox, one in the queue, one
# of a server that no longer exists (0.1 kept it; 0.2 discards it).
OLD_ITEMS = """
INSERT INTO campus_sync.inbox (id, server, person_key, payload, enqueued_by, enqueued_at)
VALUES (nextval('campus_sync.queue_items_id_seq'), 'opscom', 'U1',
        '{"unique_id":"U1","login_source":"BANNER","first_name":"Una","last_name":"Lee","email":"u1@campus.edu"}', 'postgres', now()),
       (nextval('campus_sync.queue_items_id_seq'), 'gone', 'U9',
        '{"unique_id":"U9"}', 'postgres', now());
INSERT INTO campus_sync.queue_items (server, person_key, state, payload, enqueued_by)
VALUES ('cloudcard', 'C1', 'pending', '{"identifier":"C1","email":"c1@example.edu"}', 'postgres'),
       -- 0.1 took a key of '..' (PUT /person/.. is PUT /): never sent now
       ('cloudcard', '..', 'pending', '{"identifier":".."}', 'postgres');
"""


def versions():
    """Every version with an install script, oldest first."""
    import glob
    import os
    root = os.path.dirname(CONTROL)
    found = {re.match(r".*campus_sync--([0-9.]+)\.sql$", p).group(1)
             for p in glob.glob(root + "/campus_sync--*.sql") if re.match(r".*campus_sync--[0-9.]+\.sql$", p)}
    return sorted(found, key=lambda v: [int(x) for x in v.split(".")])


def fresh_database(name, version=None):
    admin = connect("postgres")
    query(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    query(admin, f'CREATE DATABASE "{name}"')
    admin.close()
    conn = connect(name)
    query(conn, "CREATE EXTENSION campus_sync" + (f" VERSION '{version}'" if version else ""))
    query(conn, "CREATE SERVER opscom FOREIGN DATA WRAPPER campus_sync "
                "OPTIONS (service 'opscom', url %s, login_source 'BANNER')", (MOCK_API,))
    query(conn, "CREATE USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (api_token %s)", (OPSCOM_TOKEN,))
    query(conn, "CREATE SERVER cloudcard FOREIGN DATA WRAPPER campus_sync "
                "OPTIONS (service 'cloudcard', url %s)", (MOCK_API,))
    query(conn, "CREATE USER MAPPING FOR PUBLIC SERVER cloudcard "
                "OPTIONS (persistent_access_token %s)", (CLOUDCARD_PAT,))
    return conn


class UpgradeChainTest(unittest.TestCase):
    def test_every_version_updates_to_the_fresh_catalog_and_keeps_its_queue(self):
        chain = versions()
        self.assertGreaterEqual(len(chain), 2, "the chain starts at 0.1")
        self.assertEqual(chain[0], "0.1")
        mock("reset")
        old = fresh_database(OLD, chain[0])
        query(old, OLD_ITEMS)
        for version in chain[1:]:
            query(old, f"ALTER EXTENSION campus_sync UPDATE TO '{version}'")
            self.assertEqual(scalar(old, "SELECT extversion FROM pg_extension WHERE extname = 'campus_sync'"),
                             version)
        query(old, "ALTER EXTENSION campus_sync UPDATE")   # the default is the newest
        self.assertEqual(scalar(old, "SELECT extversion FROM pg_extension WHERE extname = 'campus_sync'"),
                         chain[-1])

        # the items of 0.1 are bound to their servers and delivered
        self.assertEqual(query(old, "SELECT server, person_key, state FROM campus_sync.queue ORDER BY 2"),
                         [("cloudcard", "..", "pending"), ("cloudcard", "C1", "pending"),
                          ("opscom", "U1", "pending")])
        query(old, "SELECT * FROM campus_sync.deliver()")
        self.assertEqual(query(old, "SELECT person_key, state, left(last_error, 89) FROM campus_sync.queue "
                                    "ORDER BY 1"),
                         [("..", "failed", 'not sent: CloudCard field "identifier" cannot be ".." as the person\'s '
                                           'key in the URL path'),
                          ("C1", "delivered", None), ("U1", "delivered", None)])
        sent = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in mock("requests")
                if not r["path"].endswith("authentication-token")]
        self.assertEqual(sorted(sent), [("POST", "person"), ("POST", "push"), ("PUT", "C1")])  # PUT 404, then the create

        fresh = fresh_database(FRESH)
        upgraded = [r[0] for r in query(old, CATALOG)]
        created = [r[0] for r in query(fresh, CATALOG)]
        self.assertGreater(len(created), 100)
        diff = "\n".join(difflib.unified_diff(created, upgraded, "fresh install", "upgraded from 0.1",
                                              lineterm=""))
        self.assertEqual(diff, "", "the upgraded catalog differs from a fresh install:\n" + diff)
        old.close()
        fresh.close()


if __name__ == "__main__":
    unittest.main()
