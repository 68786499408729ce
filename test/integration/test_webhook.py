"""The third service, webhook: a row POSTed as JSON to the server's url,
signed with the user mapping's signing_secret, through the same queue,
retries and states as OPS-COM and CloudCard.

Every test asserts the exact bytes the mock received (body, path, headers)
and the queue's rows.  The mock's receiver (test/mock_webhook.py) checks
the X-Signature itself when webhook_signing_secret is set; the tests also
compute the HMAC here, over the raw bytes received.
"""
import hashlib
import hmac
import json
import unittest

import psycopg2
import psycopg2.errors

from helpers import MOCK_API, connect, create_database, mock, query, scalar

DB = "cs_webhook"
# in test/secrets.txt: the server log grep fails the run if it appears
SIGNING_SECRET = 'hook/Signing"Secret-3e8a'

PEOPLE = """
    CREATE TABLE people (id int PRIMARY KEY, name text, active boolean, score numeric,
                         born date, tags jsonb, note text);
    CREATE TRIGGER people_hook AFTER INSERT OR UPDATE ON people
      FOR EACH ROW EXECUTE FUNCTION campus_sync.sync_trigger('hooks');
"""


def hook_requests(since=0):
    return [r for r in mock("requests", since=since) if r["path"].startswith("/hooks")]


def last_seq():
    requests = mock("requests")
    return requests[-1]["seq"] if requests else 0


def header(record, name):
    for k, v in record["headers"].items():
        if k.lower() == name.lower():
            return v
    return None


def sign(secret, raw):
    return "sha256=" + hmac.new(secret.encode(), raw.encode("utf-8"), hashlib.sha256).hexdigest()


class WebhookTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = create_database(DB)
        query(cls.conn, "CREATE SERVER hooks FOREIGN DATA WRAPPER campus_sync "
                        "OPTIONS (service 'webhook', url %s, max_attempts '3', retry_max_delay_s '1')",
              (MOCK_API + "/hooks/people",))
        query(cls.conn, PEOPLE)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()

    def setUp(self):
        mock("reset")
        query(self.conn, "TRUNCATE people; DELETE FROM campus_sync.queue_items; "
                         "DELETE FROM campus_sync.inbox; DELETE FROM campus_sync.target_health; "
                         "DROP USER MAPPING IF EXISTS FOR PUBLIC SERVER hooks")

    def deliver(self):
        return query(self.conn, "SELECT server, delivered, retried, failed "
                                "FROM campus_sync.deliver('hooks')")

    def items(self):
        return query(self.conn, "SELECT person_key, state, attempts, last_http_status, last_error, "
                                "remote_id FROM campus_sync.queue WHERE server = 'hooks' ORDER BY id")

    def test_a_row_is_posted_as_typed_json_unsigned_without_a_user_mapping(self):
        query(self.conn, "INSERT INTO people VALUES (7, 'Zoë \"Z\" Ng', true, 2.50, '1990-01-31', "
                         "'{\"b\": [1, 2], \"a\": null}', NULL)")
        self.assertEqual(self.deliver(), [("hooks", 1, 0, 0)])
        [r] = hook_requests()
        self.assertEqual((r["method"], r["path"], r["query"], r["status"]),
                         ("POST", "/hooks/people", "", 200))
        # the row's column order; NULL left out; numbers, booleans and jsonb as JSON
        self.assertEqual(r["body"], '{"id":7,"name":"Zoë \\"Z\\" Ng","active":true,"score":2.50,'
                                    '"born":"1990-01-31","tags":{"a": null, "b": [1, 2]}}')
        self.assertEqual(header(r, "Content-Type"), "application/json")
        self.assertIsNone(header(r, "X-Signature"))
        self.assertEqual(self.items(), [("7", "delivered", 1, 200, None, "wh-1")])
        self.assertEqual(mock("webhook_deliveries")[0]["body"]["name"], 'Zoë "Z" Ng')

    def test_payload_and_push_work_for_a_webhook(self):
        """The generic payload() and push(): the webhook's dry run and ad hoc send."""
        row = "(SELECT 11 AS id, 'Ida'::text AS name, false AS active) p"
        self.assertEqual(query(self.conn, f"SELECT campus_sync.payload(p, server => 'hooks')::text FROM {row}"),
                         [('{"id": 11, "name": "Ida", "active": false}',)])
        self.assertEqual(hook_requests(), [])
        self.assertEqual(query(self.conn, f"SELECT r.ok, r.http_status, r.remote_id, r.error "
                                          f"FROM {row}, LATERAL campus_sync.push(p, server => 'hooks') r"),
                         [(True, 200, "wh-1", None)])
        [r] = hook_requests()
        self.assertEqual(r["body"], '{"id":11,"name":"Ida","active":false}')
        with self.assertRaises(psycopg2.errors.NullValueNotAllowed) as cm:
            query(self.conn, f"SELECT campus_sync.push(p) FROM {row}")
        self.assertEqual(cm.exception.diag.message_primary, "the server argument must not be NULL")

    def test_a_signing_secret_signs_the_exact_bytes_sent(self):
        query(self.conn, "CREATE USER MAPPING FOR PUBLIC SERVER hooks OPTIONS (signing_secret %s)",
              (SIGNING_SECRET,))
        mock("config", webhook_signing_secret=SIGNING_SECRET)
        query(self.conn, "INSERT INTO people (id, name, note) VALUES (1, 'Ada', 'naïve – ✓'), (2, 'Bo', NULL)")
        self.assertEqual(self.deliver(), [("hooks", 2, 0, 0)])
        requests = hook_requests()
        self.assertEqual(len(requests), 2)
        for r in requests:
            self.assertEqual(r["status"], 200, r["body"])
            self.assertEqual(header(r, "X-Signature"), sign(SIGNING_SECRET, r["body"]))
        self.assertEqual(sorted(d["signature"] for d in mock("webhook_deliveries")),
                         sorted(sign(SIGNING_SECRET, r["body"]) for r in requests))
        self.assertEqual([i[1] for i in self.items()], ["delivered", "delivered"])

    def test_a_receiver_that_refuses_the_signature_fails_the_item_without_showing_the_secret(self):
        query(self.conn, "CREATE USER MAPPING FOR PUBLIC SERVER hooks OPTIONS (signing_secret %s)",
              (SIGNING_SECRET,))
        mock("config", webhook_signing_secret="another secret")
        query(self.conn, "INSERT INTO people (id, name) VALUES (3, 'Cy')")
        self.assertEqual(self.deliver(), [("hooks", 0, 0, 1)])
        self.assertEqual(self.items(), [("3", "failed", 1, 401, "webhook answered HTTP 401: bad signature", None)])
        everything = json.dumps(query(self.conn, "SELECT row_to_json(q) FROM campus_sync.queue_items q")
                                + query(self.conn, "SELECT row_to_json(s) FROM campus_sync.status s"))
        self.assertNotIn(SIGNING_SECRET, everything)

    def test_a_remote_that_echoes_the_signature_and_body_back_shows_no_secret(self):
        query(self.conn, "CREATE USER MAPPING FOR PUBLIC SERVER hooks OPTIONS (signing_secret %s)",
              (SIGNING_SECRET,))
        mock("behave", path_prefix="/hooks", status=400, echo=True, count=1)
        query(self.conn, "INSERT INTO people (id, name) VALUES (4, 'Di')")
        self.deliver()
        [(key, state, attempts, status, error, remote_id)] = self.items()
        self.assertEqual((key, state, status), ("4", "failed", 400))
        self.assertNotIn(SIGNING_SECRET, error)
        self.assertNotIn(SIGNING_SECRET.upper(), error.upper())

    def test_a_5xx_is_retried_and_a_later_2xx_delivers(self):
        mock("behave", path_prefix="/hooks", status=503, body='{"message": "busy"}', count=1)
        query(self.conn, "INSERT INTO people (id, name) VALUES (5, 'Ed')")
        self.assertEqual(self.deliver(), [("hooks", 0, 1, 0)])
        self.assertEqual(self.items(), [("5", "retrying", 1, 503, "webhook answered HTTP 503: busy", None)])
        query(self.conn, "UPDATE campus_sync.queue_items SET next_attempt_at = now()")
        self.assertEqual(self.deliver(), [("hooks", 1, 0, 0)])
        self.assertEqual(self.items(), [("5", "delivered", 2, 200, None, "wh-1")])
        self.assertEqual(len(hook_requests()), 2)

    def test_a_204_is_success_without_a_remote_id(self):
        mock("config", webhook_status=204)
        query(self.conn, "INSERT INTO people (id, name) VALUES (6, 'Fay')")
        self.assertEqual(self.deliver(), [("hooks", 1, 0, 0)])
        self.assertEqual(self.items(), [("6", "delivered", 1, 204, None, None)])

    def test_changes_of_one_person_coalesce_into_the_last(self):
        query(self.conn, "INSERT INTO people (id, name) VALUES (8, 'v1')")
        query(self.conn, "UPDATE people SET name = 'v2' WHERE id = 8")
        query(self.conn, "UPDATE people SET name = 'v3' WHERE id = 8")
        self.assertEqual(self.deliver()[0][1], 1)
        self.assertEqual([r["body"] for r in hook_requests()], ['{"id":8,"name":"v3"}'])

    def test_key_field_and_mapping(self):
        query(self.conn, "CREATE SERVER hooks_keyed FOREIGN DATA WRAPPER campus_sync "
                         "OPTIONS (service 'webhook', url %s, key_field 'person_id')",
              (MOCK_API + "/hooks/keyed/",))
        query(self.conn, "CREATE TABLE staff (banner_id text, name text, ssn text)")
        query(self.conn, "INSERT INTO staff VALUES ('B1', 'Gus', '123-45-6789'), (NULL, 'Nobody', 'x')")
        query(self.conn, "SELECT campus_sync.enqueue('hooks_keyed', s, "
                         "'{\"person_id\": \"banner_id\", \"ssn\": null}') FROM staff s")
        rows = query(self.conn, "SELECT person_key, state, last_error FROM campus_sync.queue "
                                "WHERE server = 'hooks_keyed' ORDER BY id")
        self.assertEqual(rows[0], ("B1", "pending", None))
        self.assertEqual(rows[1][:2], (None, "invalid"))
        self.assertIn('webhook field "person_id" is required', rows[1][2])
        self.assertEqual(query(self.conn, "SELECT delivered FROM campus_sync.deliver('hooks_keyed')"), [(1,)])
        [r] = hook_requests()
        # the trailing "/" of the url is the receiver's: kept
        self.assertEqual(r["path"], "/hooks/keyed/")
        self.assertEqual(r["body"], '{"person_id":"B1","name":"Gus"}')

    def test_hostile_column_names_and_a_1_mb_value_arrive_intact_and_signed(self):
        query(self.conn, "CREATE USER MAPPING FOR PUBLIC SERVER hooks OPTIONS (signing_secret %s)",
              (SIGNING_SECRET,))
        mock("config", webhook_signing_secret=SIGNING_SECRET)
        big = "é" * 524288 + "\\\"\n"
        query(self.conn, "SELECT campus_sync.enqueue('hooks', r) FROM (SELECT 9 AS id, "
                         '%s::text AS "we""ird\\name ✓", 1e3::float8 AS "x", NULL::text AS "..") r', (big,))
        self.assertEqual(self.deliver(), [("hooks", 1, 0, 0)])
        [r] = hook_requests()
        self.assertEqual(r["status"], 200)
        self.assertEqual(json.loads(r["body"]), {"id": 9, 'we"ird\\name ✓': big, "x": 1000})
        self.assertEqual(header(r, "X-Signature"), sign(SIGNING_SECRET, r["body"]))

    def test_options_and_mappings_are_checked(self):
        def error(sql, args=None):
            with self.assertRaises(psycopg2.Error) as cm:
                query(self.conn, sql, args)
            return cm.exception.pgcode, cm.exception.diag.message_primary
        self.assertEqual(error("CREATE SERVER h_bad FOREIGN DATA WRAPPER campus_sync "
                               "OPTIONS (service 'webhook', url %s, login_source 'X')", (MOCK_API,)),
                         ("HV00D", 'server option "login_source" applies only to opscom servers'))
        self.assertEqual(error("CREATE SERVER h_bad FOREIGN DATA WRAPPER campus_sync "
                               "OPTIONS (service 'opscom', url %s, key_field 'id')", (MOCK_API,)),
                         ("HV00D", 'server option "key_field" applies only to webhook servers'))
        self.assertEqual(error("CREATE SERVER h_bad FOREIGN DATA WRAPPER campus_sync "
                               "OPTIONS (service 'webhook', url %s, key_field '')", (MOCK_API,)),
                         ("22023", 'invalid server option "key_field": the value must have between 1 and 63 characters'))
        self.assertEqual(error("CREATE USER MAPPING FOR PUBLIC SERVER hooks OPTIONS (signing_secret '')"),
                         ("22023", 'user mapping option "signing_secret" is empty'))
        self.assertEqual(error("SELECT campus_sync.opscom_payload(p, server => 'hooks') "
                               "FROM (SELECT 1 AS id) p"),
                         ("42809", 'server "hooks" is a webhook target, but this function sends to opscom'))
        self.assertEqual(error("SELECT campus_sync.enqueue('hooks', x, '{\"id\": \"nosuch\"}') "
                               "FROM (SELECT 1 AS id) x")[0], "42703")

    def test_alter_server_while_items_wait_knows_the_webhook_key(self):
        """Regression: the server_bindings view keyed every server but
        CloudCard by unique_id, so any ALTER SERVER of a webhook with waiting
        items was refused (and a restore would not bind them)."""
        query(self.conn, "INSERT INTO people (id, name) VALUES (10, 'Hal')")
        query(self.conn, "SELECT campus_sync.enqueue('hooks', p) FROM people p")   # into the queue
        try:
            query(self.conn, "ALTER SERVER hooks OPTIONS (ADD timeout_ms '20000')")
            with self.assertRaises(psycopg2.errors.ObjectInUse) as cm:
                query(self.conn, "ALTER SERVER hooks OPTIONS (ADD key_field 'name')")
            self.assertEqual(cm.exception.diag.message_primary,
                             'cannot change server "hooks" to service webhook keyed by name '
                             'while 2 queued items wait for it')
            self.assertEqual(cm.exception.diag.message_detail,
                             "They were built for service webhook keyed by id, and would be sent "
                             "with the wrong body or to the wrong person.")
            self.assertEqual(query(self.conn, "SELECT service, key_field FROM campus_sync.server_bindings "
                                              "WHERE name = 'hooks'"), [("webhook", "id")])
            self.assertEqual(self.deliver(), [("hooks", 1, 0, 0)])    # coalesced: one person
        finally:
            query(self.conn, "ALTER SERVER hooks OPTIONS (DROP timeout_ms)")

    def test_check_server_reaches_the_url_and_sends_nothing(self):
        self.assertEqual(query(self.conn, "SELECT ok, http_status, detail FROM campus_sync.check_server('hooks')"),
                         [(True, 405, "the url answered HTTP 405 to GET (webhooks are sent with POST); "
                                      "no signing_secret: deliveries are not signed")])
        self.assertEqual(mock("webhook_deliveries"), [])
        query(self.conn, "ALTER SERVER hooks OPTIONS (SET url 'http://127.0.0.1:9/hooks')")
        try:
            [(ok, status, detail)] = query(self.conn, "SELECT ok, http_status, detail "
                                                      "FROM campus_sync.check_server('hooks')")
            self.assertEqual((ok, status), (False, None))
            self.assertIn("127.0.0.1 port 9", detail)
        finally:
            query(self.conn, "ALTER SERVER hooks OPTIONS (SET url %s)", (MOCK_API + "/hooks/people",))


if __name__ == "__main__":
    unittest.main()
