"""Black-box tests of insight events (`serve --queue`) and `edgeloop worker`.

Real processes only: `edgeloop serve` emitting events into the queue, `edgeloop worker` running
compliance + upload, an ingest endpoint in this process (a Python HTTP server on loopback that
speaks the upload protocol of docs/worker.md and dedupes by event id), and, for the Redis suite,
a redis-server started on a free loopback port in a temp dir.

Every test runs twice: against the embedded queue (file://) and against Redis Streams.
"""
import gzip
import hashlib
import hmac
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import HOST, scaled, wait_until

SITE_KEY_HEX = "8f3c2a1b0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa11"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class IngestSink:
    """The hub's ingest endpoint as docs/worker.md specifies it, deduping by event id.

    `down` makes ingest and health answer 503 with Retry-After: 1. Thread-safe.
    """

    def __init__(self, token="site-token-for-tests-0001"):
        self.token = token
        self.lock = threading.Lock()
        self.events = {}       # id -> event
        self.order = []        # ids in first-arrival order
        self.received = 0      # events received, duplicates included
        self.requests = []     # (headers, count)
        self.down = False
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, body, headers=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:
                    pass  # the worker was killed (kill -9) while waiting for this answer

            def do_GET(self):
                if self.path != "/api/v1/health":
                    return self._answer(404, {"error": "not found"})
                with sink.lock:
                    down = sink.down
                self._answer(503 if down else 200, {"ok": not down})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.path != "/api/v1/ingest":
                    return self._answer(404, {"error": "not found"})
                with sink.lock:
                    down = sink.down
                if down:
                    return self._answer(503, {"error": "down"}, [("Retry-After", "1")])
                if self.headers.get("Authorization") != f"Bearer {sink.token}":
                    return self._answer(401, {"error": "bad token"})
                if self.headers.get("Content-Encoding") != "gzip":
                    return self._answer(415, {"error": "gzip expected in these tests"})
                if len(self.headers.get("Idempotency-Key", "")) != 64:
                    return self._answer(400, {"error": "Idempotency-Key missing"})
                lines = gzip.decompress(raw).decode().splitlines()
                accepted = duplicates = 0
                with sink.lock:
                    sink.requests.append((dict(self.headers), len(lines)))
                    for line in lines:
                        event = json.loads(line)
                        sink.received += 1
                        if event["id"] in sink.events:
                            duplicates += 1
                        else:
                            sink.events[event["id"]] = event
                            sink.order.append(event["id"])
                            accepted += 1
                self._answer(200, {"accepted": accepted, "duplicates": duplicates, "rejected": []})

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://{HOST}:{self.server.server_address[1]}/api/v1/ingest"

    def set_down(self, down):
        with self.lock:
            self.down = down

    def snapshot(self):
        with self.lock:
            return dict(self.events), list(self.order), self.received

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Redis:
    """redis-server on a free loopback port in a temp dir (AOF, fsync always), stopped by PID."""

    def __init__(self):
        self.dir = harness.make_temp_dir("redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--dir", self.dir,
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready():
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        wait_until(ready, 10, "redis-server to answer PING")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Process(harness.Server):
    """An `edgeloop` process with arbitrary arguments (worker, serve with extra flags)."""

    def __init__(self, argv, name):
        super().__init__(repo=None, add_listen_flags=False, name=name)
        self.argv = [harness.require_binary()] + list(argv)

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._finish()


def run_cli(*args, timeout=30):
    result = subprocess.run([harness.require_binary()] + list(args), capture_output=True,
                            text=True, timeout=scaled(timeout))
    return result


class WorkerSuite:
    """The tests; mixed into one TestCase per queue backend."""

    backend = None

    def setUp(self):
        self.tmp = harness.make_temp_dir("worker-")
        self.redis = None
        if self.backend == "redis":
            self.redis = Redis()
            self.queue_url = f"redis://{HOST}:{self.redis.port}/insights-{self._testMethodName}"
        else:
            self.queue_url = "file://" + os.path.join(self.tmp, "queue")
        self.sink = IngestSink()
        self.repo = harness.Repository()
        self.repo.add_example()
        with open(os.path.join(self.tmp, "site.key"), "w") as f:
            f.write(SITE_KEY_HEX + "\n")
        with open(os.path.join(self.tmp, "hub.token"), "w") as f:
            f.write(self.sink.token + "\n")
        self.write_policy()
        self.processes = []

    def tearDown(self):
        for process in self.processes:
            if process.alive():
                process.kill9()
        self.sink.close()
        if self.redis:
            self.redis.stop()

    # -- helpers -----------------------------------------------------------------------------

    def write_policy(self, text=None):
        text = text or (
            "destination: hub\n"
            "allow: [id, type, site, model, timestamp, anomaly, outputs.probability,\n"
            "        inputs.temperature_c, label]\n"
            "coarsen: [{field: inputs.temperature_c, round: 0.5}]\n"
            "pseudonymise: {key_file: site.key, epoch: 30d, fields: [request_id]}\n")
        with open(os.path.join(self.tmp, "hub.yaml"), "w") as f:
            f.write(text)

    def write_chain(self, stages=None):
        stages = stages or (
            "  - compliance: {policy: hub.yaml, audit_log: audit/hub.jsonl}\n"
            f"  - upload: {{destination: hub, url: '{self.sink.url}', token_file: hub.token,\n"
            "              compression: gzip, timeout_ms: 5000}\n")
        path = os.path.join(self.tmp, "chain.yaml")
        with open(path, "w") as f:
            f.write("functions:\n" + stages)
        return path

    def start_serve(self, sample_rate="1", threshold="0.5", extra=()):
        process = Process(["serve", "--model-repository", self.repo.root, "--http-address", HOST,
                           "--http-port", "0", "--queue", self.queue_url, "--site", "plant-7",
                           "--sample-rate", sample_rate, "--anomaly-threshold", threshold,
                           "--poll-interval-ms", "0", *extra], "serve")
        self.processes.append(process)
        return process.start(timeout=30)

    def start_worker(self, chain=None, extra=()):
        process = Process(["worker", "--queue", self.queue_url, "--function",
                           chain or self.write_chain(), "--metrics-port", "0",
                           "--lease-wait-ms", "100", "--probe-initial-ms", "100",
                           "--probe-max-ms", "500", "--visibility-ms", "3000",
                           "--drain-timeout-ms", "5000", *extra], "worker")
        self.processes.append(process)
        return process.start(timeout=30)

    def infer(self, server, rows, request_id):
        body = harness.infer_body(rows, request_id=request_id)
        response = server.admin.post("/v2/models/machine-failure/infer", body)
        self.assertEqual(response.status, 200, response.body[:300])
        return response

    def pseudonym(self, field, value, timestamp_ms):
        key = bytes.fromhex(SITE_KEY_HEX)
        epoch = timestamp_ms // (30 * 86400 * 1000)
        epoch_key = hmac.new(key, f"edgeloop pseudonym epoch {epoch}".encode(),
                             hashlib.sha256).digest()
        digest = hmac.new(epoch_key, field.encode() + b"\0" + value.encode(),
                          hashlib.sha256).hexdigest()
        return f"ps:{epoch}:{digest[:32]}"

    # -- tests ---------------------------------------------------------------------------------

    def test_events_flow_through_compliance_to_the_sink(self):
        serve = self.start_serve()
        worker = self.start_worker()
        rows = harness.example_rows()
        for i in range(0, 16, 4):
            response = self.infer(serve, rows[i:i + 4], f"req-{i}")
            self.assertEqual(response.header("X-Request-Id"), f"req-{i}")
        feedback = serve.admin.post("/v2/models/machine-failure/feedback",
                                    {"request_id": "req-0", "label": {"failed": True}})
        self.assertEqual(feedback.status, 201, feedback.body)
        feedback_id = feedback.json["id"]
        wait_until(lambda: len(self.sink.snapshot()[0]) >= 17, 30, "17 events at the sink")
        events, _, _ = self.sink.snapshot()
        self.assertEqual(len(events), 17)
        probabilities = []
        allowed = {"id", "type", "site", "model", "timestamp", "anomaly", "outputs", "inputs",
                   "label", "request_id"}
        for event in events.values():
            # Compliance scan: nothing off the allow-list, no raw feature but the coarsened one.
            self.assertLessEqual(set(event), allowed, event)
            self.assertNotIn("latency_ms", event)
            if event["type"] == "feedback":
                self.assertEqual(event["label"], {"failed": True})
                continue
            self.assertEqual(set(event["inputs"]), {"temperature_c"})
            self.assertEqual(event["inputs"]["temperature_c"] % 0.5, 0)
            self.assertEqual(set(event["outputs"]), {"probability"})
            self.assertEqual(event["site"], "plant-7")
            self.assertEqual(event["model"]["name"], "machine-failure")
            self.assertTrue(event["model"]["digest"].startswith("sha256:"))
            self.assertEqual(event["anomaly"]["verdict"], event["anomaly"]["score"] >= 0.5)
            self.assertEqual(event["type"], "anomaly" if event["anomaly"]["verdict"] else "insight")
            probabilities.append(event["outputs"]["probability"])
        self.assertIn(feedback_id, events)
        # Pseudonyms: HMAC-SHA256 under the site key and the epoch, stable for one request id.
        by_request = {}
        for event in events.values():
            if event["type"] == "feedback":
                continue
            by_request.setdefault(event["request_id"], set()).add(event["timestamp"])
            self.assertTrue(event["request_id"].startswith("ps:"), event["request_id"])
            self.assertNotIn("req-", json.dumps(event))
        self.assertEqual(len(by_request), 4)
        now_ms = int(time.time() * 1000)
        expected = {self.pseudonym("request_id", f"req-{i}", now_ms) for i in range(0, 16, 4)}
        self.assertEqual(set(by_request), expected)
        # The reference predictions match what left.
        reference = harness.example_model().predict(
            harness.xgb.DMatrix(rows, missing=float("nan")))
        for got, want in zip(sorted(probabilities), sorted(float(p) for p in reference)):
            self.assertAlmostEqual(got, want, delta=1e-5)
        self.assertEqual(len(probabilities), len(reference))
        # The audit log: one record per batch that left, naming the fields that left.
        with open(os.path.join(self.tmp, "audit", "hub.jsonl")) as f:
            audit = [json.loads(line) for line in f]
        self.assertEqual(sum(record["events"] for record in audit), self.sink.snapshot()[2])
        for record in audit:
            self.assertNotIn("latency_ms", record["fields"])
            self.assertEqual(len(record["body_sha256"]), 64)
        metrics = serve.metrics()
        self.assertEqual(metrics.value("edgeloop_insight_events_dropped_total",
                                       reason="overflow"), 0)
        worker.stop()
        serve.stop()

    def test_kill_9_of_server_and_worker_loses_no_acknowledged_event(self):
        serve = self.start_serve()
        worker = self.start_worker()
        acknowledged = []
        rows = harness.example_rows()
        for round_number in range(4):
            for i in range(10):
                request_id = f"r{round_number}-{i}"
                self.infer(serve, rows[i % 16:i % 16 + 1], request_id)
                response = serve.admin.post("/v2/models/machine-failure/feedback",
                                            {"request_id": request_id, "label": i % 2})
                self.assertEqual(response.status, 201, response.body)
                acknowledged.append(response.json["id"])
            # kill -9 one of them, alternately, while events are in flight, and restart it.
            if round_number % 2 == 0:
                serve.kill9()
                serve = self.start_serve()
            else:
                worker.kill9()
                worker = self.start_worker()
        def all_arrived():
            events, _, _ = self.sink.snapshot()
            return all(event_id in events for event_id in acknowledged)
        wait_until(all_arrived, 60, "every acknowledged feedback event at the sink")
        events, order, received = self.sink.snapshot()
        self.assertEqual(len(order), len(set(order)))
        # Duplicates only as at-least-once allows: the sink saw each id at most a few times.
        self.assertLessEqual(received - len(events), len(events))
        for event_id in acknowledged:
            self.assertEqual(events[event_id]["type"], "feedback")
        worker.stop()
        serve.stop()

    def test_destination_down_then_back_delivers_the_backlog_anomalies_first(self):
        self.sink.set_down(True)
        serve = self.start_serve(sample_rate="1", threshold="0.1")  # 9 of the 16 rows
        # One batch at a time: with two, a later batch could overtake an earlier one.
        worker = self.start_worker(extra=["--batch-size", "5", "--concurrency", "1"])
        rows = harness.example_rows()
        for i in range(16):
            self.infer(serve, rows[i:i + 1], f"d-{i}")
        def held_back():
            text = worker_metrics(worker)
            return "edgeloop_worker_held_back 1" in text and text
        wait_until(held_back, 30, "the worker to hold back")
        def backlog():
            m = harness.Metrics(worker_metrics(worker))
            return m.value("edgeloop_worker_backlog_events") >= 15 and m
        metrics = wait_until(backlog, 30, "the backlog metric to show the events")
        self.assertGreater(metrics.value("edgeloop_worker_oldest_unsent_age_seconds"), 0)
        self.assertEqual(self.sink.snapshot()[0], {})
        serve.stop()  # no live traffic during the drain: the order is then exact
        self.sink.set_down(False)
        wait_until(lambda: len(self.sink.snapshot()[0]) == 16, 30, "the backlog at the sink")
        worker.stop()
        events, order, _ = self.sink.snapshot()
        types = [events[event_id]["type"] for event_id in order]
        first_insight = types.index("insight") if "insight" in types else len(types)
        self.assertEqual(types.count("anomaly"), 9, types)
        self.assertNotIn("anomaly", types[first_insight:], types)

    def test_a_policy_that_does_not_load_blocks_egress_until_fixed(self):
        self.write_policy("destination: hub\nallow: [id, type\n")  # broken YAML
        serve = self.start_serve()
        worker = self.start_worker()
        self.infer(serve, harness.example_rows()[:3], "p-1")
        wait_until(lambda: "edgeloop_compliance_policy_loaded" in worker_metrics(worker)
                   and "edgeloop_worker_held_back 1" in worker_metrics(worker), 30,
                   "egress blocked")
        self.assertIn("} 0", [line for line in worker_metrics(worker).splitlines()
                              if line.startswith("edgeloop_compliance_policy_loaded{")][0])
        time.sleep(0.5)  # the subject of the test: nothing leaves while the policy is broken
        self.assertEqual(self.sink.snapshot()[0], {})
        self.write_policy("destination: hub\nallow: [id, type]\n")
        wait_until(lambda: len(self.sink.snapshot()[0]) == 3, 30, "egress after the fix")
        for event in self.sink.snapshot()[0].values():
            self.assertEqual(set(event), {"id", "type"})
        worker.stop()
        serve.stop()

    def test_poison_message_goes_to_the_dlq_with_history_and_replays(self):
        failing = self.write_chain(
            "  - exec: {name: poison, command: [/bin/sh, -c, 'cat > /dev/null; exit 1'],\n"
            "           timeout_ms: 5000}\n")
        worker = self.start_worker(failing, extra=["--max-attempts", "3",
                                                   "--retry-initial-ms", "10"])
        appended = run_cli("queue", "append", "--queue", self.queue_url, "--type", "insight",
                           "--payload", '{"n": 1}')
        self.assertEqual(appended.returncode, 0, appended.stderr)

        def dead():
            result = run_cli("queue", "dlq", "ls", "--queue", self.queue_url, "--json")
            if result.returncode != 0:
                return None
            listed = json.loads(result.stdout)
            items = listed if isinstance(listed, list) else listed.get("events", [])
            return items or None
        items = wait_until(dead, 30, "the event in the DLQ")
        self.assertEqual(len(items), 1)
        self.assertEqual(len(items[0]["history"]), 3, items[0])
        self.assertIn("exited with status 1", json.dumps(items[0]["history"]))
        worker.stop()
        # A fixed function, then replay: the event goes through and the DLQ is empty.
        passing = self.write_chain(
            "  - exec: {name: ok, command: [/usr/bin/python3, -c, \"import sys, json\\n"
            "for l in sys.stdin: d = json.loads(l); print(json.dumps({'id': d['id'], "
            "'event': d['event']}))\"]}\n")
        worker = self.start_worker(passing)
        replayed = run_cli("queue", "dlq", "replay", "--queue", self.queue_url, "--all")
        self.assertEqual(replayed.returncode, 0, replayed.stderr)
        wait_until(lambda: dead() is None and "edgeloop_worker_events_total{outcome=\"acked\"} 1"
                   in worker_metrics(worker), 30, "the replayed event acked")
        worker.stop()

    def test_worker_usage_errors(self):
        result = run_cli("worker", "--queue", self.queue_url)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--function", result.stderr)
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("functions:\n  - upload: {destination: hub, folder: out}\n")
        result = run_cli("worker", "--queue", self.queue_url, "--function", bad)
        self.assertEqual(result.returncode, 1)
        self.assertIn("after a compliance stage", result.stderr)
        result = run_cli("worker", "--queue", "ftp://x", "--function", self.write_chain())
        self.assertEqual(result.returncode, 1)


def worker_metrics(worker):
    client = harness.Client(worker.port)
    try:
        response = client.get("/metrics")
        return response.text if response.status == 200 else ""
    finally:
        client.close()


class FileQueueWorkerTest(WorkerSuite, unittest.TestCase):
    backend = "file"


class RedisQueueWorkerTest(WorkerSuite, unittest.TestCase):
    backend = "redis"


if __name__ == "__main__":
    unittest.main()
