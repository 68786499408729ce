"""What must agree across files: META.json, CHANGELOG.md and the install
script follow campus_sync.control's default_version, the upgrade chain
reaches it, and the SQL that finds the deliverer lock uses src/lock_keys.h's
numbers."""
import json
import os
import re
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


class ReleaseTest(unittest.TestCase):

    def setUp(self):
        self.version = re.search(r"^default_version = '([0-9.]+)'", read("campus_sync.control"), re.M).group(1)

    def test_meta_json_follows_the_control_file(self):
        meta = json.loads(read("META.json"))
        self.assertEqual(meta["version"], self.version + ".0")
        provided = meta["provides"]["campus_sync"]
        self.assertEqual(provided["version"], self.version + ".0")
        self.assertEqual(provided["file"], f"campus_sync--{self.version}.sql")
        self.assertTrue(os.path.exists(os.path.join(ROOT, provided["file"])))

    def test_the_changelog_has_the_version(self):
        self.assertEqual(re.findall(r"^## ([0-9.]+)$", read("CHANGELOG.md"), re.M)[0], self.version)

    def test_the_upgrade_chain_reaches_the_version(self):
        scripts = [f for f in os.listdir(ROOT) if re.fullmatch(r"campus_sync--[0-9.]+--[0-9.]+\.sql", f)]
        reached, version = {"0.1"}, "0.1"
        steps = {re.match(r"campus_sync--([0-9.]+)--", f).group(1): re.search(r"--([0-9.]+)\.sql$", f).group(1)
                 for f in scripts}
        while version in steps:
            version = steps[version]
            reached.add(version)
        self.assertIn(self.version, reached)

    def test_deliverer_xids_uses_the_lock_keys_of_the_c_code(self):
        keys = {m.group(1): int(m.group(2), 0) for m in
                re.finditer(r"^#define (\w+) (0x[0-9A-Fa-f]+|\d+)", read("src/lock_keys.h"), re.M)}
        sql = read(f"campus_sync--{self.version}.sql")
        body = sql[sql.index("CREATE FUNCTION campus_sync.deliverer_xids()"):]
        body = body[:body.index("$$;")]
        self.assertEqual(int(re.search(r"d\.classid = (\d+)", body).group(1)), keys["CAMPUS_SYNC_LOCK_CLASS"])
        self.assertEqual(int(re.search(r"d\.objid = (\d+)", body).group(1)), keys["DELIVERER_LOCK_OBJID"])
        self.assertEqual(int(re.search(r"d\.objsubid = (\d+)", body).group(1)), keys["DELIVERER_LOCK_SUBID"])
