"""Black-box tests of the hub's retraining scheduler (`edgeloop hub serve --schedule`): a real
hub on SQLite, labelled events uploaded over HTTP, and jobs that run the real `edgeloop pipeline
run` (hub source) and `edgeloop train` (push and promote to a layout:// registry) as children
of the hub. Also: drift reports, the open health endpoint, a gate refusal and a training failure
that change nothing, and a job interrupted by kill -9 of the hub."""
import json
import os
import random
import shutil
import signal
import socket
import tempfile
import time
import unittest

import hub_util as hu

TRAIN = """name: {name}
table: {table}
task: binary
label: label
features: [{features}]
split: {{method: random, seed: 3, validation: 0.2, test: 0.25}}
trainer: {{rounds: 15, early_stopping_rounds: 0, params: {{nthread: 1, max_depth: 3, seed: 1}}}}
gate: {{floors: {{roc_auc: {floor}}}}}
"""

PIPELINE = """name: {name}
source: {{type: hub, model: mf{extra}}}
steps:
  - cast: {{label: int64}}
target: {{table: {table}}}
incremental: {{watermark: labelled_at}}
"""


def running_commands():
    """The command lines of every live process, as one string."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    return "\n".join(found)


class SchedulerTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="edgeloop-sched-")
        self.store = "sqlite://" + os.path.join(self.dir, "hub.db")
        self.site = hu.run_cli("hub", "site", "add", "plant", "--store", self.store).stdout.strip()
        self.admin = hu.run_cli("hub", "token", "add", "ops", "--role", "admin",
                                "--store", self.store).stdout.strip()
        self.registry = os.path.join(self.dir, "registry")
        hu.run_cli("model", "keygen", "--out", os.path.join(self.dir, "release"))
        self.hub = None
        self.rng = random.Random(7)

    def tearDown(self):
        if self.hub is not None:
            self.hub.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w", encoding="utf-8") as f:
            f.write(text)

    def model(self, name, floor=0.6, features="x1, x2", extra=""):
        table = name.replace("-", "_") + "_rows"
        self.write(f"{name}-pipeline.yaml", PIPELINE.format(name=name, table=table, extra=extra))
        self.write(f"{name}-train.yaml", TRAIN.format(name=name, table=table, features=features,
                                                      floor=floor))
        return (f"  - model: {name}\n    pipeline: {name}-pipeline.yaml\n"
                f"    train: {name}-train.yaml\n"
                f"    push: layout://{self.registry}/{name}:candidate\n"
                f"    key: release.key\n    promote: champion\n    timeout: 2m\n")

    def start(self, models, *flags):
        self.write("schedule.yaml", "lake: lake\nwork_dir: jobs\nmodels:\n" + "".join(models))
        self.hub = hu.Hub(self.store, "--schedule", os.path.join(self.dir, "schedule.yaml"), *flags)

    def call(self, method, path, body=None, token=None):
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        status, _, data = self.hub.request(method, path, body, headers)
        return status, data

    def upload(self, events):
        status, _, data = self.hub.request(
            "POST", "/api/v1/ingest", "".join(json.dumps(e) + "\n" for e in events),
            {"Authorization": f"Bearer {self.site}", "Content-Type": "application/x-ndjson"})
        self.assertEqual(status, 200, data)
        result = json.loads(data)
        self.assertEqual(result["rejected"], [], result)
        return result

    def labelled_events(self, n):
        """n insight events of model mf with two inputs, half of them labelled in the canonical
        form and half in the edge's {request_id, label} form."""
        events, labels = [], []
        for i in range(n):
            x1, x2 = self.rng.uniform(-1, 1), self.rng.uniform(-1, 1)
            truth = 1 if x1 + 0.5 * x2 + self.rng.gauss(0, 0.15) > 0 else 0
            e = hu.event("plant", inputs={"x1": x1, "x2": x2}, prediction="0")
            e["model"]["name"] = "mf"
            events.append(e)
            if i % 2 == 0:
                labels.append({"id": hu.uuid7(), "type": "feedback", "timestamp": e["timestamp"],
                               "feedback": {"event_id": e["id"], "label": str(truth)}})
            else:
                labels.append({"id": hu.uuid7(), "type": "feedback", "timestamp": e["timestamp"],
                               "model": {"name": "mf"}, "request_id": e["request_id"],
                               "label": truth})
        return events, labels

    def run_job(self, model):
        status, data = self.call("POST", "/api/v1/jobs", {"model": model})
        self.assertEqual(status, 202, data)
        job_id = json.loads(data)["id"]

        def finished():
            status, data = self.call("GET", f"/api/v1/jobs/{job_id}")
            self.assertEqual(status, 200, data)
            job = json.loads(data)
            return job if job["status"] not in ("queued", "running") else None
        return hu.wait_until(finished, 60, f"job {job_id} of {model}")

    def resolve(self, ref):
        result = hu.run_cli("model", "resolve", ref, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def test_a_job_runs_pipeline_train_push_and_promote_then_failures_change_nothing(self):
        self.start([self.model("mf"), self.model("mf-strict", floor=1.5),
                    self.model("mf-broken", features="x1, no_such_column")])
        status, _, data = self.hub.request("GET", "/api/v1/health")  # open, no token
        self.assertEqual(status, 200)
        health = json.loads(data)
        self.assertEqual((health["status"], health["scheduler"], health["schema_version"]),
                         ("ok", True, 3))
        self.assertNotIn("elh_", data.decode())

        events, labels = self.labelled_events(300)
        self.upload(events)
        self.upload(labels)
        time.sleep(1.1)  # labels become readable after the hub's 1 s settle time

        job = self.run_job("mf")
        self.assertEqual(job["status"], "succeeded", job.get("error"))
        self.assertEqual(job["trigger"], "api")
        self.assertTrue(job["gate_passed"])
        self.assertEqual(job["gate_metric"], "roc_auc")
        self.assertGreater(job["challenger"], 0.8)
        self.assertEqual(job["pipeline"]["rows_written"], 300)
        self.assertTrue(job["digest"].startswith("sha256:"))
        self.assertEqual(self.resolve(f"layout://{self.registry}/mf:champion"), job["digest"])
        self.assertEqual([s["name"] for s in job["steps"]], ["pipeline", "train"])
        status, log = self.call("GET", f"/api/v1/jobs/{job['id']}/log")
        self.assertEqual(status, 200)
        self.assertIn(b"=== train: edgeloop train", log)

        # A second run reads only the labels that arrived since (incremental by labelled_at).
        events, labels = self.labelled_events(40)
        self.upload(events)
        self.upload(labels)
        time.sleep(1.1)
        second = self.run_job("mf")
        self.assertEqual(second["status"], "succeeded", second.get("error"))
        self.assertEqual(second["pipeline"]["rows_written"], 40)

        # The gate refuses: nothing is pushed or promoted.
        strict = self.run_job("mf-strict")
        self.assertEqual(strict["status"], "rejected", strict.get("error"))
        self.assertFalse(strict["gate_passed"])
        self.assertIsNone(strict["digest"])
        self.assertIsNone(self.resolve(f"layout://{self.registry}/mf-strict:champion"))
        self.assertIsNone(self.resolve(f"layout://{self.registry}/mf-strict:candidate"))

        # Training fails (a feature the table lacks): the job fails in the train step.
        broken = self.run_job("mf-broken")
        self.assertEqual((broken["status"], broken["exit_step"]), ("failed", "train"))
        self.assertIn("train exited with 2", broken["error"])
        self.assertIsNone(self.resolve(f"layout://{self.registry}/mf-broken:champion"))
        self.assertEqual(self.resolve(f"layout://{self.registry}/mf:champion"), second["digest"])

        status, data = self.call("GET", "/api/v1/jobs?model=mf")
        self.assertEqual(status, 200)
        self.assertEqual([j["id"] for j in json.loads(data)["jobs"]], [second["id"], job["id"]])

    def test_api_errors_and_drift_reports(self):
        self.start([self.model("mf")])
        reader = hu.run_cli("hub", "token", "add", "viewer", "--role", "read",
                            "--store", self.store).stdout.strip()
        self.assertEqual(self.call("POST", "/api/v1/jobs", {"model": "mf"}, token=reader)[0], 403)
        self.assertEqual(self.call("POST", "/api/v1/jobs", {"model": "nope"})[0], 404)
        self.assertEqual(self.call("POST", "/api/v1/jobs", "not an object")[0], 400)
        self.assertEqual(self.call("GET", "/api/v1/jobs/12345")[0], 404)
        self.assertEqual(self.call("GET", "/api/v1/jobs/abc")[0], 404)
        self.assertEqual(self.hub.request("GET", "/api/v1/jobs")[0], 401)

        drift = {"id": hu.uuid7(), "site": "plant", "type": "drift",
                 "ts_ms": int(time.time() * 1000), "model": "mf", "model_version": "3",
                 "model_digest": "sha256:" + "ab" * 32,
                 "drift": {"window_rows": 500, "features": [
                     {"name": "x1", "psi": 0.41, "ks": 0.3, "drifted": True},
                     {"name": "x2", "psi": 0.02, "ks": 0.05, "drifted": False}]}}
        self.upload([drift])
        bad = dict(drift, id=hu.uuid7(), drift={"features": "nope"})
        status, _, data = self.hub.request(
            "POST", "/api/v1/ingest", json.dumps(bad) + "\n",
            {"Authorization": f"Bearer {self.site}"})
        self.assertEqual(status, 200)
        self.assertIn("window_rows", json.loads(data)["rejected"][0]["error"])
        status, data = self.call("GET", "/api/v1/drift?model=mf", token=reader)
        self.assertEqual(status, 200)
        rows = json.loads(data)["rows"]
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["drifted_features"], rows[0]["window_rows"]), (1, 500))
        self.assertEqual(json.loads(rows[0]["details"])["features"][0]["psi"], 0.41)

    def test_drift_reports_trigger_a_job_on_the_accelerated_clock(self):
        self.start([self.model("mf") + "    triggers: {drift: {events: 2, window: 1h}}\n"],
                   "--time-scale", "3600")
        events, labels = self.labelled_events(200)
        self.upload(events)
        self.upload(labels)
        time.sleep(1.1)
        for _ in range(2):
            self.upload([{"id": hu.uuid7(), "type": "drift", "ts_ms": int(time.time() * 1000),
                          "model": "mf", "model_version": "3",
                          "drift": {"window_rows": 100, "features": []}}])

        def job():
            status, data = self.call("GET", "/api/v1/jobs")
            jobs = json.loads(data)["jobs"]
            return jobs[0] if jobs and jobs[0]["status"] not in ("queued", "running") else None
        finished = hu.wait_until(job, 60, "the drift-triggered job")
        self.assertEqual((finished["trigger"], finished["status"]), ("drift", "succeeded"),
                         finished["error"])

    def test_a_job_running_at_kill_9_is_interrupted_after_restart(self):
        # The pipeline reads from a "hub" that accepts connections and never answers.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            port = silent.getsockname()[1]
            models = [self.model("mf", extra=f", url: 'http://127.0.0.1:{port}', timeout_ms: 60000")]
            self.start(models)
            status, data = self.call("POST", "/api/v1/jobs", {"model": "mf"})
            self.assertEqual(status, 202, data)
            job_id = json.loads(data)["id"]
            self.assertEqual(self.call("POST", "/api/v1/jobs", {"model": "mf"})[0], 409)
            hu.wait_until(lambda: json.loads(self.call("GET", f"/api/v1/jobs/{job_id}")[1])["status"]
                          == "running", 10, "the job to run")
            time.sleep(0.3)  # the pipeline child is connected and waiting
            self.hub.proc.send_signal(signal.SIGKILL)
            self.hub.proc.wait()
            self.hub.stop()
            self.hub = None
            self.start(models)
            job = json.loads(self.call("GET", f"/api/v1/jobs/{job_id}")[1])
            self.assertEqual(job["status"], "interrupted")
            self.assertIsNotNone(job["finished_at"])
            # The orphaned step died with the hub (no step can push after the hub is gone).
            spec = os.path.join(self.dir, "mf-pipeline.yaml")
            hu.wait_until(lambda: spec not in running_commands(), 5, "the pipeline child to end")
        finally:
            silent.close()


if __name__ == "__main__":
    unittest.main()
