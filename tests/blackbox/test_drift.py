"""Drift monitoring at the edge (docs/serve.md, "Drift monitoring").

A model version whose card.json holds reference statistics in the format `edgeloop train` writes
(per feature: the distinct interior deciles of the training rows as histogram edges, and the
shares of the bins) is served with `--queue`. Rows drawn like the training rows leave every
feature undrifted in GET /v2/models/{m}/drift; rows with two features shifted make exactly those
drifted (PSI and KS past the thresholds), show in the metrics, and put one `drift` event with the
documented fields into the queue.
"""
import json
import os
import subprocess

import numpy as np

import harness

MODEL = "dm"
FEATURES = [f"f{i}" for i in range(harness.NUM_FEATURES)]
SHIFTED = (0, 11)


def reference_statistics(x):
    """What `edgeloop train` writes for each feature (src/train/features.cc)."""
    features = {}
    for j, name in enumerate(FEATURES):
        values = np.sort(x[:, j][~np.isnan(x[:, j])].astype(np.float64))
        edges = []
        for d in range(1, 10):
            edge = float(np.quantile(values, d / 10.0))
            if not edges or edge > edges[-1]:
                edges.append(edge)
        bins = np.searchsorted(np.array(edges), values, side="left")
        counts = np.bincount(bins, minlength=len(edges) + 1)
        features[name] = {"count": int(len(values)), "missing_rate": 0.0,
                          "histogram": {"edges": edges,
                                        "fractions": (counts / len(values)).tolist()}}
    return {"rows": int(len(x)), "features": features}


class DriftTest(harness.ServerTestCase):
    def test_reference_like_rows_do_not_drift_and_shifted_rows_do(self):
        trained = harness.train("binary:logistic", seed=71, rounds=15, max_depth=3)
        repo = harness.Repository()
        directory = repo.path(MODEL, 1)
        yaml_text = (harness.model_yaml("model.json",
                                        harness.default_outputs("binary:logistic"))
                     + "feature_names: [" + ", ".join(FEATURES) + "]\n")
        repo.write_version(directory, trained, yaml_text=yaml_text)
        training_rows = harness.make_features(4000, 71)
        with open(os.path.join(directory, "card.json"), "w") as f:
            json.dump({"name": MODEL, "reference_statistics": reference_statistics(training_rows)},
                      f)
        queue_dir = harness.make_temp_dir("drift-queue-")
        server = self.start_server(repo.root, [
            "--queue", f"file://{queue_dir}", "--site", "plant-7", "--sample-rate", "0",
            "--drift-window-rows", "400", "--drift-min-rows", "200",
            "--drift-psi-threshold", "0.2", "--drift-ks-threshold", "0.2"])
        server.wait_model_ready(MODEL)

        def send(rows):
            for start in range(0, len(rows), 20):
                response = server.admin.post(harness.infer_path(MODEL),
                                             harness.infer_body(rows[start:start + 20]))
                self.assertEqual(response.status, 200, response.body[:300])

        def drift():
            response = server.admin.get(f"/v2/models/{MODEL}/drift")
            self.assertEqual(response.status, 200, response.body[:300])
            return response.json

        calm = drift()
        self.assertTrue(calm["reference"])
        self.assertEqual(calm["window_rows"], 0)
        self.assertEqual([f["name"] for f in calm["features"]], FEATURES)

        send(harness.make_features(400, 123))  # drawn like the training rows
        calm = drift()
        self.assertEqual(calm["window_rows"], 400)
        self.assertEqual(calm["model_version"], "1")
        self.assertFalse(calm["drifted"], calm)
        for feature in calm["features"]:
            self.assertLess(feature["psi"], 0.2, feature)
            self.assertLess(feature["ks"], 0.2, feature)

        shifted = harness.make_features(400, 124)
        shifted[:, SHIFTED[0]] += 1.5
        shifted[:, SHIFTED[1]] *= 3.0
        send(shifted)
        report = drift()
        self.assertTrue(report["drifted"], report)
        drifted = [f["name"] for f in report["features"] if f["drifted"]]
        self.assertEqual(drifted, [FEATURES[i] for i in SHIFTED], report)
        self.assertGreater(report["features"][0]["psi"], 0.2)
        metrics = server.metrics()
        self.assertEqual(metrics.value("edgeloop_drift_drifted", model=MODEL, feature="f0"), 1)
        self.assertEqual(metrics.value("edgeloop_drift_drifted", model=MODEL, feature="f1"), 0)

        # Unknown models and versions are 404 with a JSON error.
        self.assert_error(server.admin.get("/v2/models/nope/drift"), 404)
        self.assert_error(server.admin.get(f"/v2/models/{MODEL}/versions/9/drift"), 404)

        # One drift event reached the queue (the stop drains the emitter).
        server.stop()
        result = subprocess.run([harness.require_binary(), "queue", "peek", "--queue",
                                 f"file://{queue_dir}", "--limit", "100", "--json"],
                                capture_output=True, text=True, timeout=harness.scaled(30))
        self.assertEqual(result.returncode, 0, result.stderr)
        events = [e["payload"] for e in json.loads(result.stdout) if e["type"] == "drift"]
        self.assertEqual(len(events), 1, result.stdout[:2000])
        event = events[0]
        self.assertEqual(event["type"], "drift")
        self.assertEqual(event["site"], "plant-7")
        self.assertEqual(event["model"]["name"], MODEL)
        self.assertEqual(event["model"]["version"], "1")
        self.assertEqual(event["model_version"], "1")
        self.assertTrue(event["model_digest"].startswith("sha256:"))
        self.assertEqual(event["model"]["digest"], event["model_digest"])
        self.assertIsInstance(event["ts_ms"], int)
        self.assertTrue(event["id"])
        self.assertGreaterEqual(event["drift"]["window_rows"], 200)
        by_name = {f["name"]: f for f in event["drift"]["features"]}
        self.assertEqual(sorted(by_name), sorted(FEATURES))
        self.assertTrue(by_name["f0"]["drifted"])
        self.assertFalse(by_name["f1"]["drifted"])
        self.assertEqual(set(by_name["f0"]), {"name", "psi", "ks", "drifted"})


if __name__ == "__main__":
    import unittest
    unittest.main()
