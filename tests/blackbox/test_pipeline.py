"""`edgeloop pipeline run`: the real binary on real files, an HTTP source served by Python's
http.server on 127.0.0.1, and the lake read back through `edgeloop lake read --json`.

Covers: every step; rejected rows with reason, file and line (malformed CSV quoting
included); --max-rejected; malformed headers;
incremental runs that pick up exactly the new rows and idempotent re-runs; bad specs with clear
errors and exit code 2 (unknown key, unknown column, bad expression with its position, type
errors); JSON Lines, HTTP and lake sources; the --json summary; the bundled examples.
"""
import functools
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import threading
import unittest

import harness


def edgeloop(*args, check=None, timeout=60):
    """Runs the binary; returns CompletedProcess (text). check=N asserts the exit code."""
    result = subprocess.run([harness.require_binary(), *map(str, args)], capture_output=True,
                            text=True, timeout=harness.scaled(timeout),
                            stdin=subprocess.DEVNULL)
    if check is not None and result.returncode != check:
        raise AssertionError(f"edgeloop {' '.join(map(str, args))}: exit {result.returncode}, "
                             f"expected {check}\n--- stdout\n{result.stdout}\n--- stderr\n"
                             f"{result.stderr}")
    return result


class PipelineTestCase(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.tmp = pathlib.Path(harness.make_temp_dir("pipeline-"))
        self.lake = self.tmp / "lake"
        (self.tmp / "in").mkdir()

    def write(self, name, text):
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def spec(self, text, name="spec.yaml"):
        return self.write(name, text)

    def run_pipeline(self, spec, *flags, check=0):
        return edgeloop("pipeline", "run", spec, "--lake", self.lake, "--json", *flags,
                        check=check)

    def summary(self, spec, *flags):
        return json.loads(self.run_pipeline(spec, *flags).stdout)

    def read(self, table):
        """The table's rows as dicts (JSON lines from `edgeloop lake read`)."""
        out = edgeloop("lake", "read", table, "--lake", self.lake, "--json", check=0).stdout
        return [json.loads(line) for line in out.splitlines() if line]

    def snapshots(self):
        out = edgeloop("lake", "history", "--lake", self.lake, "--json", check=0).stdout
        return json.loads(out)


READINGS = """
name: readings
source: {type: csv, path: "in/*.csv"}
schema:
  - {name: ts, type: timestamp}
  - {name: machine, type: string}
  - {name: temp, type: double}
steps:
  - filter: "temp IS NOT NULL AND temp < 500"
  - derive: {temp_f: "temp * 9 / 5 + 32", day: "date_trunc('day', ts)"}
target: {table: readings, partition: "day(ts)"}
incremental: {watermark: ts}
"""


class RejectsAndLimitsTest(PipelineTestCase):
    def test_rejected_rows_keep_reason_file_and_line(self):
        a = self.write("in/a.csv",
                       "ts,machine,temp\n"
                       "2026-11-27T01:00:00Z,m1,20\n"
                       "2026-11-27T02:00:00Z,m2,warm\n"
                       "2026-11-27T03:00:00Z,m3\n"
                       "not a time,m4,1\n"
                       "2026-11-27T04:00:00Z,m5,900\n"
                       "2026-11-27T05:00:00Z,m6,\n")
        summary = self.summary(self.spec(READINGS))
        self.assertEqual(summary["status"], "ok")
        self.assertEqual(summary["rows_read"], 3)
        self.assertEqual(summary["rows_written"], 1)
        self.assertEqual(summary["rows_filtered"], 2)  # 900 and NULL
        self.assertEqual(summary["rows_rejected"], 3)
        rejected = sorted(self.read("readings_rejected"), key=lambda r: r["line"])
        self.assertEqual([(r["source"], r["line"], r["reason"], r["raw"]) for r in rejected], [
            (str(a), 3, "column 'temp': cannot parse 'warm' as double",
             "2026-11-27T02:00:00Z,m2,warm"),
            (str(a), 4, "expected 3 fields, got 2", "2026-11-27T03:00:00Z,m3"),
            (str(a), 5, "column 'ts': cannot parse 'not a time' as timestamp", "not a time,m4,1"),
        ])
        self.assertTrue(all(r["run_id"] == summary["run_id"] for r in rejected))
        # Rows and rejects are one commit.
        self.assertEqual(self.snapshots()[0]["snapshot"], summary["snapshot"])
        self.assertEqual(self.snapshots()[0]["rows_added"], 4)

    def test_max_rejected_fails_and_commits_nothing(self):
        self.write("in/a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,x\n"
                   "2026-11-27T02:00:00Z,m1,y\n2026-11-27T03:00:00Z,m1,3\n")
        result = self.run_pipeline(self.spec(READINGS), "--max-rejected", "1", check=1)
        self.assertIn("more than 1 rows rejected", result.stderr)
        self.assertIn("a.csv:2: column 'temp'", result.stderr)
        summary = json.loads(result.stdout)
        self.assertEqual(summary["status"], "failed")
        self.assertIsNone(summary["snapshot"])
        self.assertEqual(self.read("readings"), [])
        # The limit in the spec works the same way, and the flag overrides it.
        spec = self.spec(READINGS + "max_rejected: 0\n", "strict.yaml")
        self.run_pipeline(spec, check=1)
        self.assertEqual(self.summary(spec, "--max-rejected", "2")["rows_written"], 1)

    def test_malformed_quotes_become_rejected_rows_and_the_rest_loads(self):
        # Resynchronisation rule (docs/pipeline.md): a malformed record costs its first line;
        # parsing resumes at the next line.
        bad = self.write("in/a.csv",
                         "ts,machine,temp\n"
                         "2026-11-27T01:00:00Z,m1,20\n"
                         "\"2026-11-27\"x,m1,1\n"          # text after a closing quote
                         "2026-11-27T02:00:00Z,\"m2,21\n"   # closed by the next line's quote
                         "2026-11-27T03:00:00Z,\"m3\",22\n"
                         "2026-11-27T04:00:00Z,\"m\n4\",23\n"  # a newline inside quotes is fine
                         "2026-11-27T05:00:00Z,m5,\"24\n")  # never closed
        summary = self.summary(self.spec(READINGS))
        self.assertEqual(summary["status"], "ok")
        self.assertEqual(summary["rows_written"], 3)
        self.assertEqual(summary["rows_rejected"], 3)
        self.assertEqual(sorted(r["machine"] for r in self.read("readings")), ["m\n4", "m1", "m3"])
        rejected = sorted(self.read("readings_rejected"), key=lambda r: r["line"])
        self.assertEqual([(r["source"], r["line"], r["reason"], r["raw"]) for r in rejected], [
            (str(bad), 3, "malformed CSV: text after the closing quote of field 1",
             "\"2026-11-27\"x,m1,1"),
            (str(bad), 4, "malformed CSV: text after the closing quote of field 2",
             "2026-11-27T02:00:00Z,\"m2,21"),
            (str(bad), 8, "malformed CSV: quoted field 3 is never closed (the input ends inside "
             "it)", "2026-11-27T05:00:00Z,m5,\"24"),
        ])
        # --max-rejected counts them like any reject.
        self.write("in/a.csv", "ts,machine,temp\n2026-11-27T06:00:00Z,\"m1\"!,20\n")
        result = self.run_pipeline(self.spec(READINGS), "--max-rejected", "0", check=1)
        self.assertIn("a.csv:2: malformed CSV", result.stderr)

    def test_malformed_header_fails_naming_file_and_line(self):
        bad = self.write("in/a.csv", "\"ts\"x,machine,temp\n2026-11-27T01:00:00Z,m1,20\n")
        result = self.run_pipeline(self.spec(READINGS), check=1)
        self.assertIn(str(bad), result.stderr)
        self.assertIn("line 1", result.stderr)
        self.assertEqual(self.read("readings"), [])

        self.write("in/a.csv", "when,machine,temp\n2026-11-27T01:00:00Z,m1,20\n")
        result = self.run_pipeline(self.spec(READINGS), check=1)
        self.assertIn("the header has no column 'ts'", result.stderr)

    def test_binary_garbage_is_rejected_not_loaded(self):
        self.write("in/a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n")
        (self.tmp / "in" / "b.csv").write_bytes(b"ts,machine,temp\n\x00\xff\xfe,\x01,\x02\n")
        summary = self.summary(self.spec(READINGS))
        self.assertEqual(summary["rows_written"], 1)
        self.assertEqual(summary["rows_rejected"], 1)


class IncrementalTest(PipelineTestCase):
    def test_new_rows_exactly_once_and_idempotent_reruns(self):
        spec = self.spec(READINGS)
        self.write("in/1.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n"
                   "2026-11-27T02:00:00Z,m2,21\n")
        first = self.summary(spec)
        self.assertEqual(first["rows_written"], 2)
        self.assertIsNone(first["watermark_before"])
        self.assertEqual(first["watermark_after"], "2026-11-27T02:00:00Z")

        before = len(self.snapshots())
        again = self.summary(spec)
        self.assertEqual((again["rows_written"], again["rows_rejected"], again["files_skipped"]),
                         (0, 0, 1))
        self.assertIsNone(again["snapshot"])  # nothing to commit
        self.assertEqual(len(self.snapshots()), before)

        # A new file with one old row (re-delivered) and two new ones.
        self.write("in/2.csv", "ts,machine,temp\n2026-11-27T02:00:00Z,m2,21\n"
                   "2026-11-27T03:00:00Z,m3,22\n2026-11-28T00:00:00Z,m4,23\n")
        third = self.summary(spec)
        self.assertEqual(third["rows_written"], 2)
        self.assertEqual(third["rows_skipped"], 1)
        self.assertEqual(third["watermark_before"], "2026-11-27T02:00:00Z")
        self.assertEqual(third["watermark_after"], "2026-11-28T00:00:00Z")
        rows = sorted(r["machine"] for r in self.read("readings"))
        self.assertEqual(rows, ["m1", "m2", "m3", "m4"])
        self.assertEqual(self.summary(spec)["rows_written"], 0)

    def test_watermark_moves_only_with_a_commit(self):
        spec = self.spec(READINGS)
        self.write("in/1.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n")
        self.summary(spec)
        self.write("in/2.csv", "ts,machine,temp\n2026-11-27T05:00:00Z,m1,bad\n"
                   "2026-11-27T06:00:00Z,m1,30\n")
        failed = json.loads(self.run_pipeline(spec, "--max-rejected", "0", check=1).stdout)
        self.assertEqual(failed["status"], "failed")
        retry = self.summary(spec)
        self.assertEqual(retry["watermark_before"], "2026-11-27T01:00:00Z")
        self.assertEqual(retry["rows_written"], 1)
        self.assertEqual(retry["rows_rejected"], 1)

    def test_killed_run_leaves_the_table_unchanged(self):
        spec = self.spec(READINGS)
        self.write("in/1.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n")
        self.summary(spec)
        count = 2_000_000
        rows = "".join(f"2026-11-28T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z,"
                       f"m{i % 50},{i % 400}.5\n" for i in range(count))
        self.write("in/2.csv", "ts,machine,temp\n" + rows)
        proc = subprocess.Popen([harness.require_binary(), "pipeline", "run", str(spec),
                                 "--lake", str(self.lake)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(0.5)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.wait()
        if proc.returncode == 0:
            self.skipTest("the run finished before it could be killed")
        self.assertEqual(len(self.read("readings")), 1)
        summary = self.summary(spec)
        self.assertEqual(summary["rows_written"], count)
        self.assertEqual(summary["rows_skipped"], 0)
        tables = json.loads(edgeloop("lake", "ls", "--lake", self.lake, "--json", check=0).stdout)
        self.assertEqual({t["table"]: t["rows"] for t in tables}["readings"], count + 1)


class StepsTest(PipelineTestCase):
    def test_every_step(self):
        self.write("in/a.csv",
                   "id,Machine,temp,code,at\n"
                   "1, m1 ,20,7,2026-11-27T01:00:00Z\n"
                   "2,m2,30,x,2026-11-27T01:00:00Z\n"
                   "3,m1,40,8,2026-11-27T03:00:00Z\n"
                   "4,m2,,9,2026-11-27T02:00:00Z\n"
                   "5,m3,-5,1,2026-11-27T02:00:00Z\n"
                   "6,m1,50,0,2026-11-27T02:00:00Z\n")
        spec = self.spec("""
name: all-steps
source: {type: csv, path: in/a.csv}
steps:
  - rename: {Machine: machine}
  - select: [machine, temp, code, at]
  - cast: {temp: double, code: int64, at: timestamp}
  - filter: "coalesce(temp, 0) >= 0"
  - derive:
      machine: "upper(trim(machine))"
      ratio: "temp / code"
      hot: "temp > 35"
  - dedupe: {key: [machine, hot], keep: latest, order_by: at}
  - aggregate:
      group_by: [machine]
      values: {n: "count(*)", hottest: "max(temp)", mean: "avg(temp)", latest: "max(at)"}
target: {table: out}
""")
        summary = self.summary(spec)
        self.assertEqual(summary["rows_rejected"], 2)  # code 'x' (cast), code 0 (division)
        self.assertEqual(summary["rows_filtered"], 1)  # -5
        rows = sorted(self.read("out"), key=lambda r: r["machine"])
        self.assertEqual(rows, [
            {"machine": "M1", "n": 2, "hottest": 40.0, "mean": 30.0,
             "latest": "2026-11-27T03:00:00Z"},
            {"machine": "M2", "n": 1, "hottest": None, "mean": None,
             "latest": "2026-11-27T02:00:00Z"},
        ])
        reasons = sorted(r["reason"] for r in self.read("out_rejected"))
        self.assertEqual(reasons, ["column 'code': cannot cast 'x' to int64", "division by zero"])

    def test_json_lines_source(self):
        self.write("in/e.jsonl", '{"ts": "2026-11-27T01:00:00Z", "machine": "m1", "temp": 20}\n'
                   '{"ts": "2026-11-27T02:00:00Z", "machine": "m2", "temp": "hot"}\n'
                   '{oops\n')
        spec = self.spec(READINGS.replace('{type: csv, path: "in/*.csv"}',
                                          '{type: jsonl, path: in/e.jsonl}'))
        summary = self.summary(spec)
        self.assertEqual((summary["rows_written"], summary["rows_rejected"]), (1, 2))
        lines = sorted(r["line"] for r in self.read("readings_rejected"))
        self.assertEqual(lines, [2, 3])

    def test_lake_source_into_an_overwritten_table(self):
        self.write("in/a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n"
                   "2026-11-27T02:00:00Z,m1,30\n2026-11-28T01:00:00Z,m2,10\n")
        self.summary(self.spec(READINGS))
        daily = self.spec("""
name: daily
source: {type: lake, table: readings}
steps:
  - aggregate: {group_by: [machine, day], values: {n: "count(*)", mean: "avg(temp)"}}
target: {table: daily, mode: overwrite}
""", "daily.yaml")
        for _ in range(2):
            self.summary(daily)
        rows = sorted((r["machine"], r["day"], r["n"], r["mean"]) for r in self.read("daily"))
        self.assertEqual(rows, [("m1", "2026-11-27T00:00:00Z", 2, 25.0),
                                ("m2", "2026-11-28T00:00:00Z", 1, 10.0)])


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class HttpSourceTest(PipelineTestCase):
    def setUp(self):
        super().setUp()
        served = self.tmp / "www"
        served.mkdir()
        (served / "readings.csv").write_text("ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n"
                                             "2026-11-27T02:00:00Z,m2,oops\n")
        handler = functools.partial(QuietHandler, directory=str(served))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)

    def http_spec(self, path):
        return self.spec(READINGS.replace(
            '{type: csv, path: "in/*.csv"}',
            f'{{type: http, url: "http://127.0.0.1:{self.port}/{path}", format: csv}}'))

    def test_http_csv(self):
        summary = self.summary(self.http_spec("readings.csv"))
        self.assertEqual((summary["rows_written"], summary["rows_rejected"]), (1, 1))
        rejected = self.read("readings_rejected")
        self.assertEqual(rejected[0]["source"], f"http://127.0.0.1:{self.port}/readings.csv")
        self.assertEqual(rejected[0]["line"], 3)
        # Incremental over HTTP: the watermark keeps the second run from loading anything.
        self.assertEqual(self.summary(self.http_spec("readings.csv"))["rows_written"], 0)

    def test_http_errors_fail_the_run(self):
        result = self.run_pipeline(self.http_spec("missing.csv"), check=1)
        self.assertIn("HTTP 404", result.stderr)
        self.server.shutdown()
        self.server.server_close()
        result = self.run_pipeline(self.http_spec("readings.csv"), check=1)
        self.assertIn(f"127.0.0.1:{self.port}", result.stderr)


class BadSpecTest(PipelineTestCase):
    def assert_spec_error(self, spec_text, *needles):
        self.write("in/a.csv", "ts,machine,temp\n2026-11-27T01:00:00Z,m1,20\n")
        result = self.run_pipeline(self.spec(spec_text), check=2)
        for needle in needles:
            self.assertIn(needle, result.stderr)
        self.assertFalse((self.lake / "tables" / "readings").exists())
        return result

    def test_unknown_key_names_key_and_line(self):
        self.assert_spec_error(READINGS.replace("target:", "targte:"),
                               "line 11: unknown key 'targte' in the spec")

    def test_unknown_column(self):
        self.assert_spec_error(READINGS.replace("temp IS NOT NULL", "tmp IS NOT NULL"),
                               "steps[0] (filter, line 9)", "unknown column 'tmp' at position 1",
                               "columns: ts, machine, temp")

    def test_bad_expression_with_position(self):
        self.assert_spec_error(READINGS.replace('"temp * 9 / 5 + 32"', '"temp * * 9"'),
                               "derive 'temp_f'", "unexpected '*' at position 8")

    def test_type_errors(self):
        self.assert_spec_error(READINGS.replace('"temp * 9 / 5 + 32"', "\"machine * 2\""),
                               "type error", "'*' needs numbers, got string")
        self.assert_spec_error(READINGS.replace("temp IS NOT NULL AND temp < 500", "temp + 1"),
                               "the condition is double, not bool")
        self.assert_spec_error(READINGS.replace("day(ts)", "day(machine)"),
                               "needs a timestamp or date column")

    def test_unknown_watermark_and_types(self):
        self.assert_spec_error(READINGS.replace("watermark: ts", "watermark: at"),
                               "watermark column 'at' is not a source column")
        self.assert_spec_error(READINGS.replace("type: double", "type: money"),
                               "unknown type 'money' for column 'temp'")

    def test_missing_or_invalid_spec_file(self):
        result = edgeloop("pipeline", "run", self.tmp / "nope.yaml", "--lake", self.lake, check=2)
        self.assertIn("cannot read the spec file", result.stderr)
        result = self.run_pipeline(self.spec("name: [unclosed\n"), check=2)
        self.assertIn("invalid YAML", result.stderr)
        result = edgeloop("pipeline", "run")
        self.assertNotEqual(result.returncode, 0)


class ExamplesTest(PipelineTestCase):
    def test_bundled_examples_run(self):
        examples = harness.REPO_ROOT / "examples"
        shutil.copytree(examples / "pipelines", self.tmp / "ex" / "pipelines")
        shutil.copytree(examples / "data", self.tmp / "ex" / "data")
        first = self.summary(self.tmp / "ex" / "pipelines" / "machine-failure.yaml")
        self.assertEqual(first["status"], "ok")
        self.assertEqual(first["rows_rejected"], 0)
        self.assertEqual(first["rows_written"], 16)
        rows = self.read("machine_readings")
        self.assertEqual(len(rows), 16)
        self.assertTrue(all(r["risk_band"] in ("low", "medium", "high") for r in rows))
        self.assertTrue(all(isinstance(r["error_count_24h"], int) for r in rows))
        self.summary(self.tmp / "ex" / "pipelines" / "machine-risk-summary.yaml")
        summary = self.read("machine_risk_summary")
        self.assertEqual(sum(r["readings"] for r in summary), 16)


if __name__ == "__main__":
    unittest.main()
