"""Deprovisioning on DELETE (issue 11 part 2): with on_delete 'disable', a
DELETE on the person table disables the person at CloudCard (PUT
/person/{key}?findBy=...&updateRoles=false with {"enabled": false}), in
order with its other items: a re-insert enables it again.  OPS-COM (and a
webhook) refuse the option.

The mass-change guard: past max_disables_per_hour (default 100), disables
are held; a DELETE FROM people of 1,000 rows sends 100, holds 900 (the
writer and the deliverer are warned, the status view counts them), and
release_held() sends the rest; discard_held() drops them; a newer item of
the person makes a held disable moot.  A TRUNCATE disables no one.
"""
import json
import unittest

import psycopg2
import psycopg2.errors

from helpers import MOCK_API, create_database, mock, query, scalar

DB = "cs_deprovision"

PEOPLE = """
    CREATE TABLE people (identifier text PRIMARY KEY, email text, cardholder_group_name text);
    CREATE TRIGGER people_cloudcard AFTER INSERT OR UPDATE OR DELETE ON people
      FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('cloudcard');
    ALTER SERVER cloudcard OPTIONS (ADD on_delete 'disable');
"""
DISABLE = {"enabled": False}


def cc_requests():
    """CloudCard's requests but the session's: the token exchange, and a
    request refused 401 after a mock reset (the backend's token was
    forgotten), which is sent again with a new one."""
    return [(r["method"], r["path"], r["query"], r["json"]) for r in mock("requests")
            if not r["path"].startswith("/api/OC_TOMA") and r["path"] != "/authentication-token"
            and r["status"] != 401]


def disables(since=0):
    return [r for r in cc_requests()[since:] if r[0] == "PUT" and r[3] == DISABLE]


def deliver(conn):
    return query(conn, "SELECT delivered, retried, failed FROM campus_sync.deliver('cloudcard', 120)")[0]


def remote(identifier):
    people = [p for p in mock("cloudcard_people") if p.get("identifier") == identifier]
    return people[0] if people else None


class DeprovisionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(DB, PEOPLE, skip_unchanged=True)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()

    def setUp(self):
        mock("reset")
        query(self.conn, "TRUNCATE people; DELETE FROM campus_sync.queue_items; DELETE FROM campus_sync.inbox; "
                         "DELETE FROM campus_sync.target_health; DELETE FROM campus_sync.sync_state; "
                         "DELETE FROM campus_sync.disable_windows")
        options = dict(query(self.conn, "SELECT option_name, option_value FROM pg_options_to_table("
                                        "(SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'cloudcard'))"))
        if "max_disables_per_hour" in options:
            query(self.conn, "ALTER SERVER cloudcard OPTIONS (DROP max_disables_per_hour)")
        del self.conn.notices[:]

    def add(self, n, prefix="P"):
        query(self.conn, "INSERT INTO people SELECT %s || i, lower(%s) || i || '@campus.edu', 'Students' "
                         "FROM generate_series(1, %s) i", (prefix, prefix, n))

    def test_a_delete_disables_the_person_and_a_reinsert_enables_it(self):
        self.add(1)
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        [(method, path, qs, body)] = [r for r in cc_requests() if r[0] == "PUT"]
        self.assertEqual((method, path, body["enabled"]), ("PUT", "/person/P1", True))   # every body enables
        self.assertEqual(remote("P1")["enabled"], True)
        mark = len(cc_requests())

        query(self.conn, "DELETE FROM people WHERE identifier = 'P1'")
        self.assertEqual(query(self.conn, "SELECT person_key, state, kind FROM campus_sync.queue "
                                          "WHERE state = 'pending'"), [("P1", "pending", "disable")])
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        self.assertEqual(cc_requests()[mark:],
                         [("PUT", "/person/P1", "findBy=identifier&updateRoles=false", DISABLE)])
        self.assertEqual(remote("P1")["enabled"], False)
        mark = len(cc_requests())

        self.add(1)
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        [(method, path, qs, body)] = cc_requests()[mark:]
        self.assertEqual((method, path, body["enabled"]), ("PUT", "/person/P1", True))
        self.assertEqual(remote("P1")["enabled"], True)

    def test_a_delete_and_reinsert_before_delivery_sends_only_the_last_state(self):
        self.add(1)
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        mark = len(cc_requests())
        query(self.conn, "DELETE FROM people")
        query(self.conn, "INSERT INTO people VALUES ('P1', 'p1@campus.edu', 'Staff')")
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        [(method, path, qs, body)] = cc_requests()[mark:]
        self.assertEqual((method, body["enabled"], body["cardholderGroupName"]), ("PUT", True, "Staff"))
        # and the other way round: the delete is the last state
        mark = len(cc_requests())
        query(self.conn, "BEGIN; UPDATE people SET cardholder_group_name = 'Alumni'; DELETE FROM people; COMMIT")
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        self.assertEqual(cc_requests()[mark:],
                         [("PUT", "/person/P1", "findBy=identifier&updateRoles=false", DISABLE)])
        self.assertEqual((remote("P1")["enabled"], remote("P1")["cardholderGroupName"]), (False, "Staff"))

    def test_disabling_a_person_cloudcard_does_not_have_is_done_without_creating_one(self):
        query(self.conn, "ALTER TABLE people DISABLE TRIGGER people_cloudcard; "
                         "INSERT INTO people VALUES ('GHOST', 'ghost@campus.edu', NULL); "
                         "ALTER TABLE people ENABLE TRIGGER people_cloudcard; DELETE FROM people")
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        self.assertEqual([(m, p) for m, p, q, b in cc_requests()], [("PUT", "/person/GHOST")])
        self.assertIsNone(remote("GHOST"))

    def test_a_deleted_row_without_a_sendable_key_disables_no_one_and_says_so(self):
        query(self.conn, "ALTER TABLE people DISABLE TRIGGER people_cloudcard; "
                         "INSERT INTO people VALUES ('..', 'dots@campus.edu', NULL); "
                         "ALTER TABLE people ENABLE TRIGGER people_cloudcard")
        query(self.conn, "DELETE FROM people")
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue"), 0)
        [warning] = [n for n in self.conn.notices if "no one is disabled" in n]
        self.assertIn('the deleted row has no person key for server "cloudcard": no one is disabled', warning)
        self.assertIn('cannot be ".." as the person\'s key in the URL path', warning)

    def test_on_delete_ignore_and_truncate_disable_no_one(self):
        self.add(3)
        self.assertEqual(deliver(self.conn), (3, 0, 0))
        query(self.conn, "TRUNCATE people")
        self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'pending'"), 0)
        self.add(3)
        query(self.conn, "ALTER SERVER cloudcard OPTIONS (SET on_delete 'ignore')")
        try:
            query(self.conn, "DELETE FROM people")
            self.assertEqual(scalar(self.conn, "SELECT count(*) FROM campus_sync.queue WHERE state = 'pending'"), 0)
        finally:
            query(self.conn, "ALTER SERVER cloudcard OPTIONS (SET on_delete 'disable')")
        # a statement-level trigger (as a TRUNCATE trigger would be) is refused
        with self.assertRaises(psycopg2.errors.TriggerProtocolViolated) as cm:
            query(self.conn, "CREATE TRIGGER t AFTER TRUNCATE ON people "
                             "FOR EACH STATEMENT EXECUTE FUNCTION campus_sync.sync_trigger('cloudcard')")
        self.assertEqual(cm.exception.diag.message_primary,
                         'trigger "t" on "people" must fire AFTER INSERT OR UPDATE [OR DELETE] ... FOR EACH ROW')

    def test_deleting_1000_people_sends_100_disables_holds_900_and_release_sends_the_rest(self):
        self.add(1000)
        self.assertEqual(deliver(self.conn), (1000, 0, 0))
        mark = len(cc_requests())
        query(self.conn, "DELETE FROM people")
        warnings = [n for n in self.conn.notices if "max_disables_per_hour" in n]
        self.assertEqual(len(warnings), 1, self.conn.notices)
        self.assertIn('this transaction disables more than 100 persons of server "cloudcard"', warnings[0])
        del self.conn.notices[:]

        self.assertEqual(deliver(self.conn), (100, 0, 0))
        self.assertEqual(len(disables(mark)), 100)
        self.assertEqual(len(cc_requests()[mark:]), 100)
        held = [n for n in self.conn.notices if "are held" in n]
        self.assertEqual(len(held), 1, self.conn.notices)
        self.assertIn('900 disables of server "cloudcard" are held: more than max_disables_per_hour (100) '
                      'in an hour', held[0])
        self.assertEqual(query(self.conn, "SELECT held, pending FROM campus_sync.status WHERE server = 'cloudcard'"),
                         [(900, 0)])
        self.assertEqual(query(self.conn, "SELECT kind, count(*) FROM campus_sync.queue WHERE state = 'held' "
                                          "GROUP BY kind"), [("disable", 900)])
        # nothing more goes out for them, however often delivery runs
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(len(cc_requests()[mark:]), 100)
        self.assertEqual(sum(not p["enabled"] for p in mock("cloudcard_people")), 100)

        self.assertEqual(scalar(self.conn, "SELECT campus_sync.release_held('cloudcard')"), 900)
        self.assertEqual(deliver(self.conn), (900, 0, 0))
        self.assertEqual(len(disables(mark)), 1000)
        self.assertEqual(len(cc_requests()[mark:]), 1000)
        self.assertEqual(len({r[1] for r in disables(mark)}), 1000)
        self.assertEqual(query(self.conn, "SELECT held FROM campus_sync.status WHERE server = 'cloudcard'"), [(0,)])
        people = mock("cloudcard_people")
        self.assertEqual((len(people), sum(not p["enabled"] for p in people)), (1000, 1000))

    def test_discard_held_drops_them_and_a_new_hour_admits_more(self):
        query(self.conn, "ALTER SERVER cloudcard OPTIONS (ADD max_disables_per_hour '2')")
        self.add(5)
        self.assertEqual(deliver(self.conn), (5, 0, 0))
        mark = len(cc_requests())
        query(self.conn, "DELETE FROM people WHERE identifier IN ('P1', 'P2', 'P3', 'P4')")
        self.assertEqual(deliver(self.conn), (2, 0, 0))
        self.assertEqual(sorted(r[1] for r in disables(mark)), ["/person/P1", "/person/P2"])   # the oldest
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.discard_held('cloudcard')"), 2)
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(len(cc_requests()[mark:]), 2)
        # the hour is over: two more may go
        query(self.conn, "UPDATE campus_sync.disable_windows SET opened_at = now() - interval '61 minutes'")
        query(self.conn, "DELETE FROM people WHERE identifier = 'P5'")
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        self.assertEqual(len(disables(mark)), 3)

    def test_a_newer_item_makes_a_held_disable_moot(self):
        query(self.conn, "ALTER SERVER cloudcard OPTIONS (ADD max_disables_per_hour '1')")
        self.add(3)
        self.assertEqual(deliver(self.conn), (3, 0, 0))
        mark = len(cc_requests())
        query(self.conn, "DELETE FROM people")
        self.assertEqual(deliver(self.conn), (1, 0, 0))                    # P1's; P2's, P3's held
        self.assertEqual(scalar(self.conn, "SELECT held FROM campus_sync.status WHERE server = 'cloudcard'"), 2)
        # P2 comes back changed: its held disable is superseded, the new state sent
        query(self.conn, "INSERT INTO people VALUES ('P2', 'p2@campus.edu', 'Staff')")
        # P3 comes back as it was: the remote still has it enabled, nothing to send
        query(self.conn, "INSERT INTO people VALUES ('P3', 'p3@campus.edu', 'Students')")
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        [(method, path, qs, body)] = [r for r in cc_requests()[mark:] if r[1] != "/person/P1"]
        self.assertEqual((method, path, body["enabled"], body["cardholderGroupName"]),
                         ("PUT", "/person/P2", True, "Staff"))
        self.assertEqual(scalar(self.conn, "SELECT held FROM campus_sync.status WHERE server = 'cloudcard'"), 0)
        self.assertEqual(scalar(self.conn, "SELECT campus_sync.release_held('cloudcard')"), 0)
        self.assertEqual(remote("P3")["enabled"], True)

    def test_a_server_with_held_items_keeps_its_service(self):
        query(self.conn, "ALTER SERVER cloudcard OPTIONS (ADD max_disables_per_hour '0')")
        self.add(1)
        self.assertEqual(deliver(self.conn), (1, 0, 0))
        query(self.conn, "DELETE FROM people")
        self.assertEqual(deliver(self.conn), (0, 0, 0))
        self.assertEqual(scalar(self.conn, "SELECT held FROM campus_sync.status WHERE server = 'cloudcard'"), 1)
        with self.assertRaises(psycopg2.errors.ObjectInUse):
            query(self.conn, "ALTER SERVER cloudcard OPTIONS (ADD find_by 'email')")

    def test_opscom_and_webhook_refuse_on_delete(self):
        for service, detail in (("opscom", "OPS-COM's Push API creates or updates a user; OPS-COM documents "
                                           "no way to disable or delete one."),
                                ("webhook", "A webhook receives the rows written; it is sent nothing for a DELETE.")):
            for option in ("on_delete 'disable'", "on_delete 'ignore'", "max_disables_per_hour '5'"):
                with self.assertRaises(psycopg2.errors.FdwInvalidOptionName) as cm:
                    query(self.conn, f"CREATE SERVER x FOREIGN DATA WRAPPER campus_sync "
                                     f"OPTIONS (service '{service}', url '{MOCK_API}', {option})")
                name = option.split()[0]
                self.assertEqual(cm.exception.diag.message_primary,
                                 f'server option "{name}" cannot be set on a {service} server')
                self.assertEqual(cm.exception.diag.message_detail, detail)
        with self.assertRaises(psycopg2.errors.FdwInvalidOptionName):
            query(self.conn, "ALTER SERVER opscom OPTIONS (ADD on_delete 'disable')")
        with self.assertRaises(psycopg2.errors.InvalidParameterValue):
            query(self.conn, "ALTER SERVER cloudcard OPTIONS (SET on_delete 'remove')")

    def test_release_and_discard_are_not_for_public(self):
        query(self.conn, "CREATE ROLE cs_deprovision_clerk")
        self.addCleanup(query, self.conn, "DROP ROLE cs_deprovision_clerk")
        query(self.conn, "SET ROLE cs_deprovision_clerk")
        try:
            for fn in ("release_held", "discard_held"):
                with self.assertRaises(psycopg2.errors.InsufficientPrivilege):
                    query(self.conn, f"SELECT campus_sync.{fn}('cloudcard')")
        finally:
            query(self.conn, "RESET ROLE")
        with self.assertRaises(psycopg2.errors.UndefinedObject):
            query(self.conn, "SELECT campus_sync.release_held('nosuch')")


if __name__ == "__main__":
    unittest.main()
