"""Canary rollout with automatic rollback: `edgeloop serve --deployment` with a `rollout:` section
(docs/serve.md, "Canary rollout and automatic rollback").

Models are published to an OCI layout directory (layout://) with the `edgeloop model` CLI and
promoted with a signature, as a release pipeline would. The server follows `:champion` with a
canary of half the route keys, a 1 s period and 30 requests; the test sends requests with random
route keys until the rollout is decided:

  - a deliberately bad candidate (a model whose scores all sit near 0.5, where the champion's
    spread over [0, 1]) answers part of the traffic, is rolled back automatically with a
    `score_psi` reason, the champion keeps answering, and the bad manifest stays refused;
  - the next candidate (the champion's model packaged again, so the same scores) is promoted:
    a failed rollout does not block the next one, and the new version then answers everything.
"""
import os
import uuid

import numpy as np
import xgboost as xgb

import harness

MODEL = "mf"
POLL_MS = 200


def model_cli(*args):
    result = harness.run_cli(["model"] + [str(a) for a in args], timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"edgeloop model {' '.join(str(a) for a in args)} failed "
                             f"({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def flat_model():
    """A binary model that scores every row about 0.5 (one tiny tree): deliberately bad."""
    x = harness.make_features(500, 5)
    y = (np.arange(500) % 2).astype(np.float64)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 1, "eta": 0.01,
                         "nthread": 1, "seed": 1}, xgb.DMatrix(x, label=y), num_boost_round=1)
    return harness.TrainedModel("binary:logistic", booster, "rollout-flat")


class CanaryRolloutTest(harness.ServerTestCase):
    def setUp(self):
        self.work = harness.make_temp_dir("rollout-")
        model_cli("keygen", "--out", os.path.join(self.work, "release"))
        self.layout = os.path.join(self.work, "registry", MODEL)
        repo = harness.Repository(os.path.join(self.work, "src"))
        self.good_dir = repo.write_version(repo.path("good"), harness.train(
            "binary:logistic", seed=71, rounds=15, max_depth=3))
        self.bad_dir = repo.write_version(repo.path("bad"), flat_model())
        self.rows = harness.make_features(400, 9)

    def ref(self, tag):
        return f"layout://{self.layout}:{tag}"

    def publish(self, directory, tag, version):
        model_cli("package", directory, self.ref(tag), "--version", str(version))
        model_cli("promote", self.ref(tag), "champion", "--key",
                  os.path.join(self.work, "release.key"), "--reason", f"release {tag}")

    def report(self, server):
        response = server.admin.get("/v2/deployment")
        self.assertEqual(response.status, 200, response.body[:300])
        return response.json["models"][0]

    def infer(self, server, i):
        # 20 rows a request: the score PSI compares rows, and small samples inflate it.
        start = (20 * i) % len(self.rows)
        body = harness.infer_body(self.rows[start:start + 20])
        response = server.admin.post(harness.infer_path(MODEL), body,
                                     headers={"X-Edgeloop-Route-Key": uuid.uuid4().hex})
        self.assertEqual(response.status, 200, response.body[:300])
        return response.json["model_version"]

    def drive_until(self, server, predicate, what, limit=2000):
        """Sends requests until the deployment report satisfies `predicate`; returns the report
        and the versions that answered."""
        answered = {}
        for i in range(limit):
            version = self.infer(server, i)
            answered[version] = answered.get(version, 0) + 1
            if i % 10 == 9:
                report = self.report(server)
                if predicate(report):
                    return report, answered
        raise AssertionError(f"{what} not reached after {limit} requests; answered {answered}; "
                             f"report {self.report(server)}")

    def test_bad_candidate_rolls_back_and_a_good_one_is_promoted(self):
        self.publish(self.good_dir, "v1", 1)
        deployment = os.path.join(self.work, "deployment.yaml")
        with open(deployment, "w") as f:
            f.write(f"cache_dir: cache\n"
                    f"poll_interval_s: 60\n"
                    f"trusted_keys: [{os.path.join(self.work, 'release.pub')}]\n"
                    f"models:\n"
                    f"  - name: {MODEL}\n"
                    f"    ref: {self.ref('champion')}\n"
                    f"    rollout:\n"
                    f"      mode: canary\n"
                    f"      share: 0.5\n"
                    f"      period_s: 1\n"
                    f"      min_requests: 30\n"
                    f"      max_period_s: 60\n"
                    f"      limits: {{max_score_psi: 0.25, max_latency_ratio: 20,"
                    f" latency_slack_ms: 50}}\n")
        server = harness.Server(None, ["--deployment", deployment,
                                       "--deployment-poll-interval-ms", str(POLL_MS)])
        self.addCleanup(server.stop)
        server.start(20)
        server.wait_model_ready(MODEL, timeout=20)
        self.assertEqual(self.infer(server, 0), "1")
        self.assertEqual(self.report(server)["rollout"]["state"], "none")

        # A bad candidate: it answers some requests, then is rolled back with the reason.
        self.publish(self.bad_dir, "v2", 2)
        harness.wait_until(lambda: self.report(server)["rollout"]["state"] == "canary", 10,
                           "the canary of the bad version")
        rollout = self.report(server)["rollout"]
        self.assertEqual(rollout["candidate_version"], 2)
        self.assertEqual(rollout["champion_version"], 1)
        report, answered = self.drive_until(
            server, lambda r: r["rollout"]["history"], "the bad version's rollout decided")
        self.assertGreater(answered.get("2", 0), 0, answered)  # the canary did answer
        outcome = report["rollout"]["history"][-1]
        self.assertEqual(outcome["outcome"], "rolled_back", outcome)
        self.assertTrue(outcome["reason"].startswith("score_psi"), outcome)
        self.assertGreaterEqual(outcome["counts"]["candidate"]["requests"], 30)
        self.assertGreater(outcome["numbers"]["score_psi"], 0.25)
        self.assertEqual(report["rollout"]["state"], "none")
        self.assertEqual(report["local_version"], 1)
        self.assertEqual(report["last_refusal"]["reason"], "rolled_back")
        metrics = server.metrics()
        self.assertEqual(metrics.value("edgeloop_rollout_outcomes_total", model=MODEL,
                                       outcome="rolled_back"), 1)
        # The champion answers everything again; the bad manifest stays refused.
        self.assertEqual({self.infer(server, i) for i in range(20)}, {"1"})
        harness.wait_until(lambda: self.report(server)["last_result"] == "refused", 5,
                           "the bad manifest refused at the next check")
        self.assertEqual(self.report(server)["rollout"]["state"], "none")

        # The next rollout is not blocked: the good model again (a new manifest) is promoted.
        self.publish(self.good_dir, "v3", 3)
        harness.wait_until(lambda: self.report(server)["rollout"]["state"] == "canary", 10,
                           "the canary of the good version")
        self.assertEqual(self.report(server)["rollout"]["candidate_version"], 3)
        report, answered = self.drive_until(
            server, lambda r: len(r["rollout"]["history"]) >= 2, "the good version's rollout")
        outcome = report["rollout"]["history"][-1]
        self.assertEqual(outcome["outcome"], "promoted", outcome)
        self.assertTrue(outcome["reason"].startswith("within limits"), outcome)
        self.assertGreater(answered.get("3", 0), 0, answered)
        self.assertEqual(report["local_version"], 3)
        self.assertEqual({self.infer(server, i) for i in range(20)}, {"3"})
        self.assertEqual(server.metrics().value("edgeloop_rollout_outcomes_total", model=MODEL,
                                                outcome="promoted"), 1)


if __name__ == "__main__":
    import unittest
    unittest.main()
