"""The whole loop, end to end: `edgeloop up` on a small data set.

One real run of every role (pipeline, train, model push/promote into a layout registry, hub with
its retraining scheduler on an accelerated clock, serve following the alias with a canary rollout
and drift monitoring, worker with the compliance policy and the upload, the live feed), checked
from the outside:

  - the first model is served (its digest at the edge);
  - events reach the hub, and nothing outside the policy does (no operator id anywhere in the
    hub's API answers or its database files);
  - a retraining job ran on the feedback, the challenger passed the gate, was promoted, rolled
    out through the canary, and the edge serves its digest;
  - on the post-drift readings the new model's ROC AUC beats the first model's by a margin;
  - the hub reports accuracy from the edge's feedback for the first and the retrained version;
  - in headless Chromium (tests/browser/loop.mjs; skipped with a note without node and
    chromium), the edge web app and the hub's dashboard show the retrained version;
  - nothing in any queue was lost: after the feed, the worker's backlog drains to zero, the DLQ
    is empty, nothing was dropped, and the hub holds exactly the events the edge appended;
  - Ctrl-C stops every child; a second start resumes (no new data, no new first model) and a
    kill -9 of `edgeloop up` takes its children with it.

Takes about 2-3 minutes on 2 busy cores.
"""
import json
import os
import signal
import subprocess
import time
import unittest

import harness
from harness import scaled, wait_until
import up_util
from up_util import Up, http_json

AUC_MARGIN = 0.15


class LoopTest(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(harness.make_temp_dir("up-"), "state")
        self.up = None

    def tearDown(self):
        if self.up is not None:
            self.up.kill()

    def jobs(self):
        status, answer = http_json(self.up.hub_port, "GET", "/api/v1/jobs?limit=100",
                                   token=self.up.dashboard_token)
        self.assertEqual(status, 200, answer)
        return answer["jobs"]

    def deployment(self):
        status, answer = http_json(self.up.edge_port, "GET", "/v2/deployment")
        self.assertEqual(status, 200, answer)
        return answer["models"][0]

    def test_the_whole_loop(self):
        started = time.monotonic()
        self.up = Up(self.dir, *up_util.SMALL).wait_ready()
        with open(os.path.join(self.dir, "up.json")) as f:
            first = json.load(f)["first_model"]

        # 1. The first model is served: the edge holds the digest `train --push` reported.
        first_state = wait_until(lambda: self.deployment().get("digest") and self.deployment(),
                                 30, "the edge to load the first model")
        self.assertEqual(first_state["local_version"], 1)
        if first.get("digest"):
            self.assertEqual(first_state["digest"], first["digest"])

        # The first model on the post-drift readings (a versioned request: not part of any
        # rollout, and version 1 stays the champion until the loop replaces it).
        rows = up_util.read_live_rows(self.dir)
        after = [r for r in rows if r["phase"] == "1"][-1500:]
        labels = [int(r["failure"]) for r in after]
        old = up_util.score(self.up.edge_port, after, version=1)
        auc_old = up_util.auc(list(zip(old, labels)))

        # 2. A retraining job ran on the feedback and its challenger passed the gate.
        def passed_job():
            for job in self.jobs():
                if job["status"] == "succeeded" and job["gate_passed"] in (True, 1):
                    return job
            return None
        job = wait_until(passed_job, 150, "a retraining job whose challenger passed the gate",
                         interval=1)
        status, detail = http_json(self.up.hub_port, "GET", f"/api/v1/jobs/{job['id']}",
                                   token=self.up.dashboard_token)
        self.assertEqual(status, 200, detail)
        self.assertTrue(job["digest"], job)

        # 3. The edge rolls a retrained model out through the canary and promotes it. (The
        # scheduler may pass several challengers in a row; a newer one supersedes a canary.)
        def promoted():
            passed = {j["digest"] for j in self.jobs()
                      if j["status"] == "succeeded" and j["gate_passed"] in (True, 1)}
            history = (self.deployment().get("rollout") or {}).get("history", [])
            done = [h for h in history
                    if h.get("outcome") == "promoted" and h.get("candidate_digest") in passed]
            return done[-1] if done else None
        rollout = wait_until(promoted, 120, "the edge to promote a retrained model after its canary",
                             interval=0.5)
        self.assertGreater(rollout["candidate_version"], 1)

        # 4. Accuracy on the post-drift data recovers. The first challengers may be trained while
        # few post-drift labels have reached the hub; the loop keeps retraining as feedback
        # arrives, so wait (bounded) for a promoted version that has recovered, and check it is
        # the one being served.
        scored = {}

        def recovered():
            latest = promoted()
            if latest is None:
                return None
            version = latest["candidate_version"]
            if version not in scored:
                scored[version] = up_util.auc(list(zip(
                    up_util.score(self.up.edge_port, after, version=version), labels)))
            return latest if scored[version] >= auc_old + AUC_MARGIN else None
        try:
            rollout = wait_until(recovered, 150, "a promoted model that recovers the AUC",
                                 interval=1)
        except AssertionError:
            self.fail(f"AUC after the drift: first model {auc_old:.3f}, promoted retrained "
                      f"versions {scored}")
        new_version = rollout["candidate_version"]
        auc_new = scored[new_version]
        served = self.deployment()
        self.assertIn(rollout["candidate_digest"],
                      [v["digest"] for v in served["local_versions"] if v.get("loaded")])

        # 4b. The hub's accuracy from feedback: the edge's labels (by request id) are matched
        # with the predictions its events carry, per model version, the retrained one included.
        def accuracy_rows():
            status, answer = http_json(self.up.hub_port, "GET",
                                       "/api/v1/accuracy?bucket=1h",
                                       token=self.up.dashboard_token)
            self.assertEqual(status, 200, answer)
            versions = {str(r["version"]) for r in answer["rows"] if r["labelled"] > 0}
            return answer["rows"] if {"1", str(new_version)} <= versions else None
        accuracy = wait_until(accuracy_rows, 60, "accuracy from feedback for versions 1 and "
                              f"{new_version} at the hub", interval=1)
        for row in accuracy:
            self.assertTrue(0 <= row["accuracy"] <= 1, row)
            self.assertLessEqual(row["correct"], row["labelled"], row)

        # 4c. Browser: the edge web app and the hub's dashboard show the retrained version.
        shown = up_util.browser_check(self.up, attempts=3)
        if shown is not None:
            self.assertGreaterEqual(shown["version"], new_version, shown)

        # 5. The feed finishes; the worker drains; nothing was lost or dropped.
        wait_until(lambda: self.up.feed_state().get("position") == len(rows), 150,
                   "the feed to replay every reading", interval=0.5)
        def drained():
            status, text = up_util.get_text(self.up.worker_port, "/metrics")
            return status == 200 and up_util.metric_sum(
                text, "edgeloop_worker_backlog_events") == 0 and text
        worker_metrics = wait_until(drained, 60, "the worker's backlog to drain", interval=0.5)
        self.assertEqual(up_util.metric_sum(worker_metrics, "edgeloop_worker_dead_letter_events"), 0)
        self.assertEqual(up_util.metric_sum(worker_metrics, "edgeloop_worker_events_total",
                                            outcome="failed"), 0)
        _, edge_metrics = up_util.get_text(self.up.edge_port, "/metrics")
        appended = up_util.metric_sum(edge_metrics, "edgeloop_insight_events_total")
        self.assertEqual(up_util.metric_sum(edge_metrics, "edgeloop_insight_events_dropped_total"),
                         0)
        self.assertGreater(appended, len(rows))  # every prediction and every feedback
        queue = subprocess.run([harness.require_binary(), "queue", "stats", "--queue",
                                "file://" + os.path.join(self.dir, "edge", "queue"), "--json"],
                               capture_output=True, text=True, timeout=scaled(30))
        self.assertEqual(queue.returncode, 0, queue.stderr)
        stats = json.loads(queue.stdout)
        self.assertEqual(stats.get("dead", 0), 0, stats)
        self.assertFalse(stats.get("drops"), stats)
        status, sites = http_json(self.up.hub_port, "GET", "/api/v1/sites",
                                  token=self.up.dashboard_token)
        self.assertEqual(status, 200, sites)
        plant = [s for s in sites["rows"] if s["site"] == "plant-1"][0]
        self.assertEqual(plant["events_total"], appended,
                         "the hub must hold exactly the events the edge appended")

        # 6. Compliance: no operator id and no comment left the site.
        status, events = http_json(self.up.hub_port, "GET", "/api/v1/events?limit=1000000",
                                   token=self.up.dashboard_token, timeout=60)
        self.assertEqual(status, 200)
        text = json.dumps(events)
        self.assertGreater(len(events["rows"]), 1000)
        self.assertNotIn("op-", text)
        self.assertNotIn("checked by", text)
        types = {e["type"] for e in events["rows"]}
        self.assertTrue({"insight", "feedback"} <= types, types)
        for name in os.listdir(os.path.join(self.dir, "hub")):
            if name.startswith("hub.db"):
                with open(os.path.join(self.dir, "hub", name), "rb") as f:
                    self.assertNotIn(b"op-1", f.read(), name)

        # 7. Ctrl-C stops everything; nothing is left behind.
        code, children = self.up.stop(signal.SIGINT)
        self.assertEqual(code, 0, self.up.err()[-3000:])
        self.assertGreaterEqual(len(children), 3)
        for pid in children:
            self.assertFalse(up_util.alive(pid), f"child {pid} outlived edgeloop up")
        live_mtime = os.path.getmtime(os.path.join(self.dir, "data", "live.csv"))

        # 8. A second start resumes from the folder: same data, same first model, the feed
        # where it stopped, the retrained model still served.
        self.up = Up(self.dir, *up_util.SMALL).wait_ready()
        self.assertIn("reusing", self.up.err())
        self.assertEqual(os.path.getmtime(os.path.join(self.dir, "data", "live.csv")), live_mtime)
        with open(os.path.join(self.dir, "up.json")) as f:
            self.assertEqual(json.load(f)["first_model"], first)
        wait_until(lambda: self.deployment().get("digest"), 30, "the edge to serve again")

        # 9. kill -9 of `edgeloop up`: its children die with it (PR_SET_PDEATHSIG).
        children = up_util.children_of(self.up.proc.pid)
        self.assertGreaterEqual(len(children), 3)
        self.up.kill()
        for pid in children:
            wait_until(lambda: not up_util.alive(pid), 30, f"child {pid} to die with its parent")
        print(f"\ntest_loop_e2e: AUC after the drift {auc_old:.3f} -> {auc_new:.3f}; "
              f"{time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    unittest.main()
