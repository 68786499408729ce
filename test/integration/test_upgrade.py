"""The upgrade chain: 0.1 with queued items, ALTER EXTENSION campus_sync
UPDATE through every version, the items delivered, and the upgraded catalog
identical to a fresh install of the newest version.

Items are written into 0.1's tables directly, as 0.1 left them: the library
installed is always the newest, which expects the newest tables.
"""
import difflib
import json
import os
import re
import subprocess
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


class RestoreTest(unittest.TestCase):
    """pg_dump keeps the queue; restored into another database, where the
    servers have other OIDs, the items are bound to the servers of the same
    name, service and person key, and delivered."""

    @staticmethod
    def dump():
        return subprocess.run([os.environ["PG_BIN"] + "/pg_dump", "-d", "cs_it_restore_src"],
                              check=True, capture_output=True, text=True).stdout

    def restore(self, dump):
        """The dump loaded into a new database, as psql -f would."""
        admin = connect("postgres")
        query(admin, 'DROP DATABASE IF EXISTS "cs_it_restore_dst" WITH (FORCE)')
        query(admin, 'CREATE DATABASE "cs_it_restore_dst"')
        admin.close()
        restored = subprocess.run([os.environ["PG_BIN"] + "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                   "-d", "cs_it_restore_dst"], input=dump, capture_output=True, text=True)
        self.assertEqual(restored.returncode, 0, restored.stderr)
        return connect("cs_it_restore_dst")

    def tearDown(self):
        admin = connect("postgres")
        query(admin, 'DROP DATABASE IF EXISTS "cs_it_restore_dst" WITH (FORCE)')
        query(admin, 'DROP DATABASE IF EXISTS "cs_it_restore_src" WITH (FORCE)')
        admin.close()

    def test_a_restored_queue_is_delivered_and_not_purged(self):
        mock("reset")
        src = fresh_database("cs_it_restore_src")
        query(src, "CREATE TABLE people (unique_id text PRIMARY KEY, first_name text, last_name text, email text);"
                   "CREATE TRIGGER people_opscom AFTER INSERT OR UPDATE ON people FOR EACH ROW "
                   "EXECUTE FUNCTION campus_sync.sync_trigger('opscom');"
                   "INSERT INTO people SELECT 'R' || g, 'F', 'L', 'r' || g || '@campus.edu' "
                   "FROM generate_series(1, 5) g;")
        # one moved into queue_items by an earlier deliverer, four still in the inbox
        query(src, "SELECT * FROM campus_sync.deliver(max_items => 1)")
        mock("reset")
        query(src, "INSERT INTO people VALUES ('R6', 'F', 'L', 'r6@campus.edu')")
        query(src, "UPDATE campus_sync.queue_items SET state = 'pending' WHERE person_key = 'R1'")
        dump = self.dump()
        src.close()

        dst = self.restore(dump)
        self.assertEqual(scalar(dst, "SELECT count(*) FROM campus_sync.queue WHERE state = 'pending'"), 6)
        # purge() first: restored items are not orphans of a dropped server
        self.assertEqual(scalar(dst, "SELECT campus_sync.purge()"), 0)
        self.assertEqual(query(dst, "SELECT sum(delivered), sum(failed) FROM campus_sync.deliver()"), [(6, 0)])
        sent = sorted(json.loads(r["body"])["unique_id"] for r in mock("requests")
                      if r["path"].endswith("/profiles/push"))
        self.assertEqual(sent, ["R1", "R2", "R3", "R4", "R5", "R6"])
        dst.close()

    def test_restored_items_never_reach_a_server_of_another_service(self):
        mock("reset")
        src = fresh_database("cs_it_restore_src")
        query(src, "SELECT campus_sync.enqueue('opscom', r) FROM (VALUES ('X1', 'F', 'L', 'x1@campus.edu')) "
                   "r(unique_id, first_name, last_name, email)")
        dump = self.dump()
        src.close()
        dst = self.restore(dump)
        # before anything binds the restored item, the server named opscom
        # becomes a CloudCard server (the ALTER check cannot see an item
        # that is not bound yet; binding refuses it instead)
        query(dst, "ALTER SERVER opscom OPTIONS (SET service 'cloudcard', DROP login_source)")
        query(dst, "ALTER USER MAPPING FOR PUBLIC SERVER opscom OPTIONS (DROP api_token, ADD auth_token 'x')")
        self.assertEqual(query(dst, "SELECT sum(delivered), sum(failed) FROM campus_sync.deliver()"), [(0, 0)])
        self.assertEqual(mock("requests"), [])
        self.assertEqual(query(dst, "SELECT person_key, state FROM campus_sync.queue"), [("X1", "pending")])
        dst.close()
