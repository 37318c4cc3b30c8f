"""Black-box tests of `edgeloop hub`: the real binary over SQLite and a real PostgreSQL, driven
over loopback: CLI administration, compressed idempotent uploads, queries and CSV, every
security rule, limits, and an acknowledged upload surviving kill -9."""
import json
import os
import shutil
import signal
import tempfile
import unittest

import hub_util as hu


class HubSuite:
    """The same suite over each store; subclasses provide new_store()."""

    def setUp(self):
        self.store = self.new_store()
        self.north = hu.run_cli("hub", "site", "add", "north", "--store", self.store).stdout.strip()
        self.south = hu.run_cli("hub", "site", "add", "south", "--store", self.store).stdout.strip()
        self.reader = hu.run_cli("hub", "token", "add", "dashboard", "--role", "read",
                                 "--store", self.store).stdout.strip()
        self.hub = hu.Hub(self.store)

    def tearDown(self):
        code = self.hub.stop()
        self.assertEqual(code, 0)

    def upload(self, token, body, encoding=None, key=None):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
        if encoding:
            headers["Content-Encoding"] = encoding
        if key:
            headers["Idempotency-Key"] = key
        status, _, data = self.hub.request("POST", "/api/v1/ingest", body, headers)
        return status, json.loads(data)

    def get(self, path, token=None):
        status, headers, data = self.hub.request("GET", path, headers={"Authorization": f"Bearer {token or self.reader}"})
        return status, headers, data

    def test_cli_lists_sites_and_tokens_without_secrets(self):
        sites = json.loads(hu.run_cli("hub", "site", "ls", "--json", "--store", self.store).stdout)
        self.assertEqual([s["site"] for s in sites], ["north", "south"])
        listing = hu.run_cli("hub", "token", "ls", "--store", self.store).stdout
        self.assertIn("dashboard", listing)
        self.assertNotIn(self.reader, listing)
        self.assertTrue(self.north.startswith("elh_"))
        dup = hu.run_cli("hub", "site", "add", "north", "--store", self.store, check=False)
        self.assertEqual(dup.returncode, 2)
        self.assertIn("already exists", dup.stderr)

    def test_compressed_uploads_are_idempotent_and_queryable(self):
        events = [hu.event("north", kind="anomaly" if i % 4 == 0 else "insight", score=i / 40) for i in range(40)]
        body = hu.jsonl(events)
        status, result = self.upload(self.north, hu.zstd(body), "zstd", key="batch-1")
        self.assertEqual(status, 200, result)
        self.assertEqual((result["accepted"], result["duplicates"], result["rejected"]), (40, 0, []))
        status, result = self.upload(self.north, hu.gzipped(body), "gzip", key="batch-1")
        self.assertEqual((status, result["accepted"], result["duplicates"]), (200, 0, 40))

        status, _, data = self.get("/api/v1/stats?bucket=1d&group_by=site")
        self.assertEqual(status, 200)
        rows = json.loads(data)["rows"]
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["site"], rows[0]["events"], rows[0]["anomalies"]), ("north", 40, 10))
        status, _, data = self.get("/api/v1/anomalies?limit=3")
        top = json.loads(data)["rows"]
        self.assertEqual([r["score"] for r in top], [0.9, 0.8, 0.7])
        status, headers, data = self.get("/api/v1/events.csv?limit=100")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/csv"))
        lines = data.decode().strip().split("\r\n")
        self.assertEqual(len(lines), 41)
        status, _, data = self.get("/api/v1/uploads")
        uploads = json.loads(data)["rows"]
        self.assertEqual([u["idempotency_key"] for u in uploads], ["batch-1", "batch-1"])
        self.assertEqual([u["encoding"] for u in uploads], ["gzip", "zstd"])
        status, _, data = self.get("/api/v1/sites")
        sites = {s["site"]: s for s in json.loads(data)["rows"]}
        self.assertEqual(sites["north"]["sync_state"], "ok")
        self.assertEqual(sites["south"]["sync_state"], "never")

    def test_partial_failures_are_reported_per_event(self):
        good = hu.event("north")
        body = hu.jsonl([good]) + b'{"id": "not-a-uuid", "type": "insight"}\nnot json\n'
        status, result = self.upload(self.north, body)
        self.assertEqual(status, 200)
        self.assertEqual(result["accepted"], 1)
        self.assertEqual([(r["line"], r["id"]) for r in result["rejected"]], [(2, "not-a-uuid"), (3, None)])

    def test_feedback_gives_accuracy(self):
        insights = [hu.event("north", score=0.9), hu.event("north", score=0.1)]
        feedback = [hu.event("north", kind="feedback", feedback={"event_id": e["id"], "label": "fail"})
                    for e in insights]
        self.assertEqual(self.upload(self.north, hu.jsonl(insights + feedback))[0], 200)
        status, _, data = self.get("/api/v1/accuracy?bucket=1d")
        rows = json.loads(data)["rows"]
        self.assertEqual((rows[0]["labelled"], rows[0]["correct"]), (2, 1))

    def test_security(self):
        body = hu.jsonl([hu.event("north")])
        headers = {"Content-Type": "application/x-ndjson"}
        self.assertEqual(self.hub.request("POST", "/api/v1/ingest", body, headers)[0], 401)
        self.assertEqual(self.upload("elh_" + "x" * 43, body)[0], 401)
        # A site cannot write another site's events (nothing stored) or read anything.
        status, result = self.upload(self.south, hu.jsonl([hu.event("south"), hu.event("north")]))
        self.assertEqual(status, 403)
        self.assertIn("error", result)
        for path in ("/api/v1/sites", "/api/v1/stats", "/api/v1/events.csv", "/api/v1/anomalies"):
            self.assertEqual(self.get(path, token=self.north)[0], 403, path)
        # A reader cannot upload; the dashboard's token is not an admin.
        self.assertEqual(self.upload(self.reader, body)[0], 403)
        status, _, _ = self.hub.request("POST", "/api/v1/sites", b'{"name":"x"}',
                                        {"Authorization": f"Bearer {self.reader}"})
        self.assertEqual(status, 403)
        status, _, data = self.get("/api/v1/events")
        self.assertEqual(json.loads(data)["rows"], [])
        # A revoked token stops working (after the 5 s cache at most: a fresh hub has no cache).
        hu.run_cli("hub", "token", "revoke", "dashboard", "--store", self.store)
        self.hub.stop()
        self.hub = hu.Hub(self.store)
        self.assertEqual(self.get("/api/v1/sites")[0], 401)

    def test_limits_and_malformed_batches(self):
        self.hub.stop()
        self.hub = hu.Hub(self.store, "--max-body-bytes", "20000", "--max-batch-bytes", "100000",
                          "--max-events", "50")
        big = hu.jsonl([hu.event("north") for _ in range(100)])
        self.assertEqual(self.upload(self.north, big)[0], 413)
        self.assertEqual(self.upload(self.north, hu.zstd(b"\n" * 200000), "zstd")[0], 413)
        many = hu.jsonl([hu.event("north") for _ in range(51)])
        self.assertEqual(self.upload(self.north, hu.zstd(many), "zstd")[0], 413)
        self.assertEqual(self.upload(self.north, b"\x28\xb5\x2f\xfd garbage", "zstd")[0], 400)
        self.assertEqual(self.upload(self.north, b"", None)[0], 400)
        self.assertEqual(self.upload(self.north, hu.jsonl([hu.event("north")]), "br")[0], 415)
        status, _, data = self.get("/api/v1/events")
        self.assertEqual(json.loads(data)["rows"], [])

    def test_acknowledged_upload_survives_kill_9(self):
        events = [hu.event("north") for _ in range(25)]
        self.assertEqual(self.upload(self.north, hu.jsonl(events))[0], 200)
        self.hub.stop(signal.SIGKILL)
        self.hub = hu.Hub(self.store)
        status, _, data = self.get("/api/v1/events?limit=100")
        self.assertEqual(sorted(r["id"] for r in json.loads(data)["rows"]), sorted(e["id"] for e in events))


class SqliteHubTest(HubSuite, unittest.TestCase):
    def new_store(self):
        self.dir = tempfile.mkdtemp(prefix="edgeloop-hub-sqlite-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        return "sqlite://" + os.path.join(self.dir, "hub.db")


class PostgresHubTest(HubSuite, unittest.TestCase):
    counter = 0

    @classmethod
    def setUpClass(cls):
        if hu.postgres_bin_dir() is None:
            raise unittest.SkipTest("PostgreSQL is not installed")
        cls.pg = hu.Postgres()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def new_store(self):
        PostgresHubTest.counter += 1
        return self.pg.create_database(f"hub{PostgresHubTest.counter}")

    def test_bi_tools_read_the_documented_views(self):
        self.assertEqual(self.upload(self.north, hu.jsonl([hu.event("north")]))[0], 200)
        db = self.store.rsplit("/", 1)[1]
        out = self.pg.psql(db, "SELECT site, event_time IS NOT NULL FROM events_view").stdout.strip()
        self.assertEqual(out, "north|t")
        version = self.pg.psql(db, "SELECT max(version) FROM schema_migrations").stdout.strip()
        self.assertEqual(version, "3")


class HubCliErrorsTest(unittest.TestCase):
    def test_bad_invocations_fail_with_a_message(self):
        result = hu.run_cli("hub", "serve", check=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--store", result.stderr)
        result = hu.run_cli("hub", "site", "ls", "--store", "mysql://x", check=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn("unsupported store", result.stderr)
        result = hu.run_cli("hub", "site", "add", "bad name!", "--store", "sqlite:///nonexistent-dir/x.db",
                            check=False)
        self.assertNotEqual(result.returncode, 0)
        result = hu.run_cli("hub", "token", "add", "x", "--role", "site", "--store",
                            "sqlite://" + tempfile.mktemp(suffix=".db"), check=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--site", result.stderr)


if __name__ == "__main__":
    unittest.main()
