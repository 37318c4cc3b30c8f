"""Tabular detectors trained by `edgeloop train` and served by `edgeloop serve` score as the
trainer scored them.

For each detector task (isolation_forest, ecod): rows with missing values are loaded into a lake
with `edgeloop pipeline run`, `edgeloop train` fits the detector and writes its model folder
(model.yaml, detector.json, card.json), and that folder, unchanged, is served. The scores served
for the lake's rows must reproduce what the trainer computed from its own scores:
  - the card's threshold: the (1 - contamination) quantile, linear interpolation, of the training
    rows' scores (docs/train.md);
  - the card's test metrics: ROC-AUC and average precision of the test rows' scores, and the
    confusion matrix at the threshold;
and the served verdicts must be score >= threshold. Everything is compared to 1e-12 (the same
float64 computations, so in practice exactly).
"""
import json
import math
import unittest

import numpy as np
from sklearn import metrics as skm

import harness
import test_train

FEATURES = ["f0", "f1", "f2", "f3"]  # f3 has missing values
SPLIT_SEED = 11
CONTAMINATION = 0.05


def quantile(values, q):
    """Linear interpolation between order statistics, as `edgeloop train` documents."""
    values = sorted(values)
    position = q * (len(values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(values) - 1)
    return values[below] + (position - below) * (values[above] - values[below])


class TrainedDetectorServeTest(test_train.TrainTestCase, harness.ServerTestCase):
    def test_served_scores_reproduce_the_trainers_threshold_and_metrics(self):
        self.load_sensors(n=1200)
        rows = self.read_back("sensors")
        x = np.array([[math.nan if r[f] is None else r[f] for f in FEATURES] for r in rows],
                     dtype=np.float32)
        self.assertTrue(np.isnan(x[:, 3]).any())
        labels = np.array([r["failed"] for r in rows])
        train, _, test = test_train.random_split(len(rows), SPLIT_SEED)

        repo = harness.Repository()
        cards = {}
        for task in ("isolation_forest", "ecod"):
            spec = self.spec(f"name: det\ntable: sensors\ntask: {task}\nlabel: failed\n"
                             f"features: [{', '.join(FEATURES)}]\n"
                             f"split: {{method: random, seed: {SPLIT_SEED}}}\n"
                             f"trainer: {{contamination: {CONTAMINATION}, params: {{seed: 4}}}}\n",
                             f"{task}.yaml")
            out = self.tmp / task
            self.train_json(spec, out)
            cards[task] = self.card(out)
            repo.add_raw_version(task, 1, {name: (out / name).read_bytes()
                                           for name in ("model.yaml", "detector.json",
                                                        "card.json")})
        server = self.start_server(repo)
        client = server.client()
        self.addCleanup(client.close)

        for task, card in cards.items():
            with self.subTest(task=task):
                server.wait_model_ready(task, timeout=30)
                response = client.infer(task, harness.infer_body(x))
                self.assertEqual(response.status, 200, response.body[:300])
                scores = np.array(harness.flatten(
                    harness.find_output(response.json, "score")["data"]))
                verdicts = harness.flatten(harness.find_output(response.json, "anomaly")["data"])
                self.assertEqual(len(scores), len(rows))

                threshold = card["threshold"]["value"]
                self.assertEqual(card["threshold"]["rule"], "training_quantile")
                self.assertAlmostEqual(quantile(scores[train], 1 - CONTAMINATION), threshold,
                                       delta=1e-12)
                self.assertEqual(verdicts, [bool(s >= threshold) for s in scores])

                metrics = card["metrics"]["test"]
                y, s = labels[test], scores[test]
                self.assertEqual(metrics["rows"], len(test))
                self.assertAlmostEqual(skm.roc_auc_score(y, s), metrics["roc_auc"], delta=1e-12)
                self.assertAlmostEqual(skm.average_precision_score(y, s), metrics["pr_auc"],
                                       delta=1e-12)
                predicted = (s >= threshold).astype(int)
                self.assertEqual(skm.confusion_matrix(y, predicted, labels=[0, 1]).tolist(),
                                 metrics["confusion_matrix"])


if __name__ == "__main__":
    unittest.main()
