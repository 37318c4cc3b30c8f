"""`edgeloop lake ls|history|show|read|compact|expire`: the human interface to a lake, on
tables made by `edgeloop pipeline run`, with time travel, maintenance and bad input."""
import csv
import io
import json
import pathlib
import unittest

import harness
from test_pipeline import edgeloop

SPEC = """
name: readings
source: {type: csv, path: "in/*.csv"}
schema:
  - {name: ts, type: timestamp}
  - {name: machine, type: string}
  - {name: temp, type: double}
target: {table: readings, partition: "day(ts)"}
incremental: {watermark: ts}
"""


class LakeCliTest(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.tmp = pathlib.Path(harness.make_temp_dir("lake-cli-"))
        self.lake = self.tmp / "lake"
        (self.tmp / "in").mkdir()
        self.spec = self.tmp / "spec.yaml"
        self.spec.write_text(SPEC)
        # Three loads: snapshots for the tables' creation, then one per load.
        self.loads = []
        for day in (27, 28, 29):
            (self.tmp / "in" / f"{day}.csv").write_text(
                "ts,machine,temp\n"
                f"2026-11-{day}T01:00:00Z,m1,{day}.5\n"
                f"2026-11-{day}T02:00:00Z,\"m,2\",{day}\n")
            out = edgeloop("pipeline", "run", self.spec, "--lake", self.lake, "--json", check=0)
            self.loads.append(json.loads(out.stdout)["snapshot"])

    def lake_cli(self, *args, check=0):
        return edgeloop("lake", *args, "--lake", self.lake, check=check)

    def lake_json(self, *args):
        return json.loads(self.lake_cli(*args, "--json").stdout)

    def test_ls(self):
        tables = {t["table"]: t for t in self.lake_json("ls")}
        self.assertEqual(set(tables), {"readings", "readings_rejected"})
        self.assertEqual(tables["readings"]["rows"], 6)
        self.assertEqual(tables["readings"]["files"], 3)
        self.assertEqual(tables["readings"]["partition"], "day(ts)")
        text = self.lake_cli("ls").stdout
        self.assertIn("readings  6 rows  3 files", text)
        self.assertIn("partitioned by day(ts)", text)

    def test_history_newest_first(self):
        history = self.lake_json("history", "readings")
        self.assertEqual([h["snapshot"] for h in history][:3], self.loads[::-1])
        self.assertEqual(history[0]["operation"], "append")
        self.assertEqual(history[0]["rows_added"], 2)
        self.assertEqual(history[0]["summary"]["pipeline"], "readings")
        self.assertEqual(history[-1]["operation"], "create")
        text = self.lake_cli("history", "readings").stdout
        self.assertIn(f"{self.loads[-1]}  ", text)
        self.assertIn("pipeline=readings", text)

    def test_show_schema_partitions_and_files(self):
        shown = self.lake_json("show", "readings")
        self.assertEqual([(c["name"], c["type"]) for c in shown["columns"]],
                         [("ts", "timestamp"), ("machine", "string"), ("temp", "double")])
        self.assertEqual(shown["rows"], 6)
        self.assertEqual(sorted(f["partition"] for f in shown["files"]),
                         ["day=2026-11-27", "day=2026-11-28", "day=2026-11-29"])
        old = self.lake_json("show", f"readings@{self.loads[0]}")
        self.assertEqual(old["snapshot"], self.loads[0])
        self.assertEqual(old["rows"], 2)
        self.assertIn("partitioned by day(ts)", self.lake_cli("show", "readings").stdout)

    def test_read_csv_json_and_time_travel(self):
        text = self.lake_cli("read", "readings").stdout
        rows = list(csv.reader(io.StringIO(text)))
        self.assertEqual(rows[0], ["ts", "machine", "temp"])
        self.assertEqual(sorted(rows[1:]), [
            ["2026-11-27T01:00:00Z", "m1", "27.5"], ["2026-11-27T02:00:00Z", "m,2", "27"],
            ["2026-11-28T01:00:00Z", "m1", "28.5"], ["2026-11-28T02:00:00Z", "m,2", "28"],
            ["2026-11-29T01:00:00Z", "m1", "29.5"], ["2026-11-29T02:00:00Z", "m,2", "29"]])
        travelled = self.lake_cli("read", f"readings@{self.loads[1]}", "--json").stdout
        self.assertEqual(len(travelled.splitlines()), 4)
        first = json.loads(travelled.splitlines()[0])
        self.assertEqual(set(first), {"ts", "machine", "temp"})
        self.assertIsInstance(first["temp"], float)
        limited = self.lake_cli("read", "readings", "--limit", "1", "--columns", "machine,temp")
        lines = limited.stdout.splitlines()
        self.assertEqual(lines[0], "machine,temp")
        self.assertEqual(len(lines), 2)

    def test_compact_then_expire(self):
        before = sorted(self.lake_cli("read", "readings").stdout.splitlines())
        # Two more loads into an existing day make that partition hold three small files.
        for hour in (3, 4):
            (self.tmp / "in" / f"29-{hour}.csv").write_text(
                f"ts,machine,temp\n2026-11-29T0{hour}:00:00Z,m9,1\n")
            edgeloop("pipeline", "run", self.spec, "--lake", self.lake, check=0)
        compacted = self.lake_json("compact", "readings")
        self.assertTrue(compacted["compacted"])
        self.assertEqual(compacted["operation"], "compact")
        self.assertEqual(compacted["files_removed"], 3)
        self.assertEqual(compacted["files_added"], 1)
        after = sorted(self.lake_cli("read", "readings").stdout.splitlines())
        self.assertEqual(len(after), len(before) + 2)
        self.assertIn("nothing to compact", self.lake_cli("compact", "readings").stdout)

        expired = self.lake_json("expire", "--keep-last", "1")
        self.assertGreaterEqual(expired["files_deleted"], 3)  # the three merged files
        self.assertEqual(sorted(self.lake_cli("read", "readings").stdout.splitlines()), after)
        gone = self.lake_cli("read", f"readings@{self.loads[0]}", check=1)
        self.assertIn("snapshot", gone.stderr)

    def test_bad_input(self):
        result = self.lake_cli("read", "nope", check=1)
        self.assertIn("table 'nope' does not exist", result.stderr)
        result = self.lake_cli("read", "readings@x", check=2)
        self.assertIn("not a snapshot number", result.stderr)
        result = self.lake_cli("show", "readings@999", check=1)
        self.assertIn("999", result.stderr)
        result = edgeloop("lake", "ls", "--lake", self.tmp / "no-lake", check=1)
        self.assertIn("no lake at", result.stderr)
        self.assertFalse((self.tmp / "no-lake").exists())  # reading never creates a lake
        self.assertNotEqual(edgeloop("lake", "ls").returncode, 0)  # --lake is required
        self.assertNotEqual(edgeloop("lake", "frobnicate", "--lake", self.lake).returncode, 0)


if __name__ == "__main__":
    unittest.main()
