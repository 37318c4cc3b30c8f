"""The `outlier` framework end to end: `edgeloop serve` serving tabular anomaly detectors.

The detectors in testdata/ were fitted by the C++ library (src/anomaly/tabular.h) with its
bench tool, from seeded Gaussian rows (numpy default_rng(2026), 3 features):

  anomaly_tabular_tool --cols 3 --data rows300.f32 --kind isolation_forest --seed 5 \\
      --param n_trees=10 --param sample_size=32 --model outlier_isolation_forest.json
  anomaly_tabular_tool --cols 3 --data rows300[:60].f32 --kind ecod --seed 5 \\
      --model outlier_ecod.json

The served scores must equal an independent evaluation of the same files written here in
Python from the published formulas (docs/anomaly.md, "Tabular detectors"): Isolation Forest
s = 2^(-E[h]/c(psi)) and ECOD's Phi-normalised max of tail sums. Verdicts must follow the
threshold, missing values (null) must score as the training median, and bad requests and bad
model files must be refused with clear errors while the server keeps serving.
"""
import bisect
import json
import math
import os
import unittest

import numpy as np

import harness

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")
KINDS = ("isolation_forest", "ecod")
THRESHOLD = 0.6


def load_detector(kind):
    with open(os.path.join(TESTDATA, f"outlier_{kind}.json")) as f:
        return json.load(f)


def average_path_length(n):
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    m = n - 1.0
    return 2.0 * (math.log(m) + 0.5772156649015329) - 2.0 * m / n


def reference_scores(doc, rows):
    """Scores of `rows` (float32, 2-D, NaN = missing) under the detector `doc`, in Python."""
    rows = np.asarray(rows, dtype=np.float32)
    medians = doc["medians"]
    out = []
    for row in rows:
        x = [medians[f] if math.isnan(v) else float(v) for f, v in enumerate(row)]
        if doc["kind"] == "isolation_forest":
            total = 0.0
            for tree in doc["trees"]:
                i, depth = 0, 0
                while len(tree[i]) == 3:
                    feature, threshold, left = tree[i]
                    i = left if x[feature] < threshold else left + 1
                    depth += 1
                total += depth + average_path_length(tree[i][0])
            mean = total / len(doc["trees"])
            out.append(2.0 ** (-mean / average_path_length(doc["sample_size"])))
        else:
            m = doc["rows"]
            left = right = auto = 0.0
            for f, v in enumerate(x):
                values = doc["sorted_values"][f]
                at_most = bisect.bisect_right(values, v)
                at_least = m - bisect.bisect_left(values, v)
                l = -math.log((at_most + 1) / (m + 1))
                r = -math.log((at_least + 1) / (m + 1))
                left += l
                right += r
                auto += l if doc["skewness"][f] < 0 else r
            raw = max(left, right, auto)
            z = (raw - doc["score_mean"]) / doc["score_std"]
            out.append(0.5 * math.erfc(-z / math.sqrt(2)))
    return np.asarray(out)


def outlier_yaml(num_features=3, threshold=THRESHOLD, outputs=None):
    outputs = outputs or [
        "{name: score, datatype: FP64, shape: [-1], kind: prediction}",
        "{name: anomaly, datatype: BOOL, shape: [-1]}",
    ]
    lines = ["framework: outlier", "model_file: detector.json",
             f"inputs: [{{name: features, datatype: FP32, shape: [-1, {num_features}]}}]",
             "outputs:"] + [f"  - {o}" for o in outputs]
    if threshold is not None:
        lines.append(f'parameters: {{threshold: "{threshold}"}}')
    lines.append("feature_names: [a, b, c]")
    return "\n".join(lines) + "\n"


def values(response_json, name, datatype):
    output = harness.find_output(response_json, name)
    if output.get("datatype") != datatype:
        raise AssertionError(f"output {name} is {output.get('datatype')}, want {datatype}")
    return harness.flatten(output["data"])


def test_rows():
    """Ordinary rows, far-away rows, and rows with missing and huge values."""
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(40, 3)).astype(np.float32)
    rows[0] = [9.0, -9.0, 9.0]
    rows[1] = [25.0, 25.0, -25.0]
    rows[2, 1] = np.nan
    rows[3] = [np.nan, np.nan, np.nan]
    rows[4, 0] = 1e30  # beyond every split (JSON has no infinity)
    return rows


class OutlierServeTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        repo = harness.Repository()
        cls.docs = {}
        for kind in KINDS:
            with open(os.path.join(TESTDATA, f"outlier_{kind}.json")) as f:
                text = f.read()
            cls.docs[kind] = json.loads(text)
            repo.add_raw_version(kind, 1, {"detector.json": text, "model.yaml": outlier_yaml()})
            # Broken versions of the same detector, each in its own model.
            repo.add_raw_version(f"{kind}-truncated", 1, {
                "detector.json": text[:len(text) // 2], "model.yaml": outlier_yaml()})
            repo.add_raw_version(f"{kind}-wrong-features", 1, {
                "detector.json": text, "model.yaml": outlier_yaml(num_features=4)})
            repo.add_raw_version(f"{kind}-no-threshold", 1, {
                "detector.json": text, "model.yaml": outlier_yaml(threshold=None)})
        repo.add_raw_version("corrupt-tree", 1, {
            "detector.json": json.dumps(dict(cls.docs["isolation_forest"],
                                             trees=[[[0, 0.5, 7], [1], [1]]])),
            "model.yaml": outlier_yaml()})
        cls.server = cls.start_class_server(repo)
        for kind in KINDS:
            cls.server.wait_model_ready(kind, timeout=30)
        cls.broken = [f"{kind}-{what}" for kind in KINDS
                      for what in ("truncated", "wrong-features", "no-threshold")]
        cls.broken.append("corrupt-tree")
        for name in cls.broken:
            cls.server.wait_state(name, 1, "UNAVAILABLE", timeout=30)

    def setUp(self):
        self.client = self.server.client()
        self.addCleanup(self.client.close)

    def infer(self, kind, rows, **kwargs):
        response = self.client.infer(kind, harness.infer_body(rows, **kwargs))
        self.assertEqual(response.status, 200, response.body[:300])
        return response.json

    def test_metadata_names_the_detector(self):
        for kind in KINDS:
            response = self.client.get(f"/v2/models/{kind}")
            self.assertEqual(response.status, 200, response.body[:300])
            self.assertEqual(response.json.get("platform"), f"outlier_{kind}")
            outputs = {o["name"]: o["datatype"] for o in response.json["outputs"]}
            self.assertEqual(outputs, {"score": "FP64", "anomaly": "BOOL"})

    def test_scores_match_the_formulas_and_verdicts_the_threshold(self):
        rows = test_rows()
        for kind in KINDS:
            with self.subTest(kind=kind):
                body = self.infer(kind, rows)
                scores = np.asarray(values(body, "score", "FP64"))
                expected = reference_scores(self.docs[kind], rows)
                harness.assert_close(scores, expected, 1e-12, f"{kind} scores")
                self.assertTrue(np.all((scores >= 0) & (scores <= 1)), scores)
                verdicts = values(body, "anomaly", "BOOL")
                self.assertEqual(verdicts, [bool(s >= THRESHOLD) for s in scores])
                # The far-away rows are flagged, and most ordinary rows are not.
                self.assertTrue(verdicts[0] and verdicts[1], scores[:2])
                self.assertLess(sum(verdicts[5:]), 12, scores[5:])

    def test_missing_values_score_as_the_training_median(self):
        for kind in KINDS:
            with self.subTest(kind=kind):
                medians = np.asarray(self.docs[kind]["medians"], dtype=np.float32)
                rows = np.array([[np.nan, 0.3, -0.2], medians, [np.nan] * 3,
                                 [medians[0], 0.3, -0.2]], dtype=np.float32)
                scores = values(self.infer(kind, rows), "score", "FP64")
                self.assertEqual(scores[0], scores[3])
                self.assertEqual(scores[1], scores[2])

    def test_outputs_can_be_requested_alone_and_batches_agree_with_single_rows(self):
        rows = test_rows()
        for kind in KINDS:
            with self.subTest(kind=kind):
                body = self.infer(kind, rows[:5], outputs=["anomaly"])
                self.assertEqual([o["name"] for o in body["outputs"]], ["anomaly"])
                batch = values(self.infer(kind, rows), "score", "FP64")
                single = [values(self.infer(kind, row), "score", "FP64")[0] for row in rows[:6]]
                self.assertEqual(single, batch[:6])

    def test_bad_requests_are_refused_and_the_server_keeps_serving(self):
        good = harness.infer_body(test_rows()[:2])
        for kind in KINDS:
            cases = {
                "four features": harness.infer_body(np.zeros((2, 4), dtype=np.float32)),
                "flat shape": dict(good, inputs=[dict(good["inputs"][0], shape=[6])]),
                "count mismatch": dict(good, inputs=[dict(good["inputs"][0], shape=[3, 3])]),
                "strings": dict(good, inputs=[dict(good["inputs"][0], data=["a"] * 6)]),
                "wrong input name": harness.infer_body(test_rows()[:2], input_name="x"),
                "unknown output": dict(good, outputs=[{"name": "margin"}]),
                "no inputs": {"inputs": []},
            }
            for what, body in cases.items():
                with self.subTest(kind=kind, case=what):
                    response = self.client.infer(kind, body)
                    self.assert_error(response, 400, f"{kind}: {what}")
            self.server.assert_alive()
            self.infer(kind, test_rows()[:2])

    def test_bad_model_files_are_not_served(self):
        for name in self.broken:
            with self.subTest(model=name):
                response = self.client.post(harness.infer_path(name),
                                            json.dumps(harness.infer_body(test_rows()[:1])))
                self.assertIn(response.status, (404, 503), response.body[:300])
                self.assert_error(response, response.status, name)
        reasons = {entry["name"]: entry.get("reason", "") for entry in self.server.index()}
        self.assertIn("not valid JSON", reasons["isolation_forest-truncated"])
        self.assertIn("has 3 features", reasons["ecod-wrong-features"])
        self.assertIn("parameters.threshold is required", reasons["ecod-no-threshold"])
        self.assertIn("child", reasons["corrupt-tree"])


if __name__ == "__main__":
    unittest.main()
