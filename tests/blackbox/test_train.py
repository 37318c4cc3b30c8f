"""`edgeloop train`: the real binary on lake tables written by `edgeloop pipeline run`.

Covers: parity with Debian's python3-xgboost on the same rows, split and parameters (test AUC
within 0.002) and every reported metric equal to scikit-learn's on the model's own predictions
(to 1e-9); the sklearn breast-cancer data (AUC >= 0.98); the gate (better challenger promoted,
worse refused, slice regression refused); reproducible bytes and package digests; one-hot
encodings in the card; anomaly detectors; clear errors and exit codes for bad specs and data.
"""
import json
import math
import os
import pathlib
import subprocess
import unittest

import numpy as np
import xgboost as xgb
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer

import harness

FEATURES = [f"f{i}" for i in range(8)]
MASK = (1 << 64) - 1


def edgeloop(*args, check=None, timeout=300):
    result = subprocess.run([harness.require_binary(), *map(str, args)], capture_output=True,
                            text=True, timeout=harness.scaled(timeout), stdin=subprocess.DEVNULL)
    if check is not None and result.returncode != check:
        raise AssertionError(f"edgeloop {' '.join(map(str, args))}: exit {result.returncode}, "
                             f"expected {check}\n--- stdout\n{result.stdout}\n--- stderr\n"
                             f"{result.stderr}")
    return result


def permutation(n, seed):
    """docs/train.md's split permutation: SplitMix64 and Fisher-Yates, in Python."""
    state = seed & MASK

    def next_u64():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    order = list(range(n))
    for i in range(n - 1, 0, -1):
        bound = i + 1
        limit = MASK - MASK % bound
        r = next_u64()
        while r >= limit:
            r = next_u64()
        j = r % bound
        order[i], order[j] = order[j], order[i]
    return order


def random_split(n, seed, validation=0.15, test=0.15):
    order = permutation(n, seed)
    n_test = int(math.floor(n * test + 0.5))
    n_valid = int(math.floor(n * validation + 0.5))
    return (sorted(order[n_test + n_valid:]), sorted(order[n_test:n_test + n_valid]),
            sorted(order[:n_test]))


def make_rows(n, seed, site_c_uses_f7=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    x[rng.random(n) < 0.03, 3] = np.nan
    sites = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    machines = np.array([f"m{i}" for i in range(60)])[rng.integers(0, 60, n)]
    z = 1.4 * x[:, 0] - 1.1 * x[:, 1] + 0.9 * x[:, 2] * x[:, 0] + np.where(sites == "c", 0.8, -0.4)
    if site_c_uses_f7:
        z = np.where(sites == "c", 3.0 * x[:, 7], z)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return x, sites, machines, y


class TrainTestCase(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.tmp = pathlib.Path(harness.make_temp_dir("train-"))
        self.lake = self.tmp / "lake"

    def load(self, table, columns, rows, types):
        """Writes rows to CSV and loads them with `edgeloop pipeline run` into `table`."""
        csv = self.tmp / f"{table}.csv"
        with open(csv, "w") as f:
            f.write(",".join(columns) + "\n")
            for row in rows:
                f.write(",".join("" if (isinstance(v, float) and math.isnan(v)) else str(v)
                                 for v in row) + "\n")
        schema = "".join(f"  - {{name: {c}, type: {t}}}\n" for c, t in zip(columns, types))
        spec = self.tmp / f"{table}-pipeline.yaml"
        spec.write_text(f"name: load-{table}\nsource: {{type: csv, path: \"{csv}\"}}\n"
                        f"schema:\n{schema}target: {{table: {table}}}\n")
        edgeloop("pipeline", "run", spec, "--lake", self.lake, "--json", check=0)

    def load_sensors(self, n=5000, seed=1, table="sensors", site_c_uses_f7=False):
        x, sites, machines, y = make_rows(n, seed, site_c_uses_f7)
        rows = [[*map(float, x[i]), sites[i], machines[i], int(y[i])] for i in range(n)]
        self.load(table, FEATURES + ["site", "machine", "failed"], rows,
                  ["double"] * len(FEATURES) + ["string", "string", "int64"])

    def read_back(self, table):
        """The table as the lake scans it (the order `edgeloop train` reads)."""
        out = edgeloop("lake", "read", table, "--lake", self.lake, "--json", check=0).stdout
        return [json.loads(line) for line in out.splitlines() if line]

    def spec(self, text, name="spec.yaml"):
        path = self.tmp / name
        path.write_text(text)
        return path

    def train(self, spec, *flags, check=0):
        return edgeloop("train", spec, "--lake", self.lake, *flags, check=check)

    def train_json(self, spec, out, *flags, check=0):
        result = self.train(spec, "--out", out, "--json", *flags, check=check)
        return json.loads(result.stdout)

    def card(self, out):
        return json.loads((pathlib.Path(out) / "card.json").read_text())


SENSOR_SPEC = """
name: failure
table: sensors
task: binary
label: failed
features: [f0, f1, f2, f3, f4, f5, f6, f7, site]
categorical: {site: {encoding: one_hot}}
slice_column: site
split: {method: random, seed: 11}
trainer:
  rounds: 200
  early_stopping_rounds: 15
  params: {max_depth: 4, eta: 0.1, seed: 3, nthread: 2, subsample: 0.9}
"""


class ParityTest(TrainTestCase):
    def test_matches_python_xgboost_and_sklearn_metrics(self):
        self.load_sensors()
        out = self.tmp / "model"
        summary = self.train_json(self.spec(SENSOR_SPEC), out)
        card = self.card(out)
        self.assertEqual(summary["version"], card["version"])
        self.assertEqual(card["lineage"]["table"], "sensors")
        self.assertGreaterEqual(card["lineage"]["snapshot"], 1)

        rows = self.read_back("sensors")
        n = len(rows)
        sites = ["a", "b", "c"]
        x = np.array([[np.nan if r[f] is None else r[f] for f in FEATURES] +
                      [1.0 if r["site"] == s else 0.0 for s in sites] for r in rows],
                     dtype=np.float32)
        y = np.array([r["failed"] for r in rows], dtype=np.float32)
        train, valid, test = random_split(n, 11)
        self.assertEqual(card["split"]["rows"]["test"], len(test))

        # The reference: python-xgboost on the same rows, split and parameters.
        params = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
                  "max_depth": 4, "eta": 0.1, "seed": 3, "nthread": 2, "subsample": 0.9}
        dtrain = xgb.DMatrix(x[train], label=y[train])
        dvalid = xgb.DMatrix(x[valid], label=y[valid])
        booster = xgb.train(params, dtrain, num_boost_round=200, evals=[(dvalid, "valid")],
                            early_stopping_rounds=15, verbose_eval=False)
        reference = booster.predict(xgb.DMatrix(x[test]),
                                    iteration_range=(0, booster.best_iteration + 1))
        reference_auc = skm.roc_auc_score(y[test], reference)
        ours = card["metrics"]["test"]
        self.assertLess(abs(ours["roc_auc"] - reference_auc), 0.002,
                        f"ours {ours['roc_auc']} reference {reference_auc}")
        self.assertEqual(card["training"]["best_iteration"], booster.best_iteration)

        # Every metric we report equals sklearn's on our model's predictions.
        ours_booster = xgb.Booster(model_file=str(out / "model.json"))
        p = ours_booster.predict(xgb.DMatrix(x[test])).astype(np.float64)
        t = card["threshold"]["value"]
        predicted = (p >= t).astype(int)
        truth = y[test].astype(int)
        expected = {
            "roc_auc": skm.roc_auc_score(truth, p),
            "pr_auc": skm.average_precision_score(truth, p),
            "log_loss": skm.log_loss(truth, p),
            "accuracy": skm.accuracy_score(truth, predicted),
            "f1": skm.f1_score(truth, predicted),
            "precision": skm.precision_score(truth, predicted),
            "recall": skm.recall_score(truth, predicted),
        }
        for name, value in expected.items():
            self.assertAlmostEqual(ours[name], value, delta=1e-9, msg=name)
        self.assertEqual(ours["confusion_matrix"], skm.confusion_matrix(truth, predicted).tolist())
        # Per slice too.
        test_sites = np.array([rows[i]["site"] for i in test])
        for s in sites:
            mask = test_sites == s
            self.assertAlmostEqual(ours["slices"][f"site={s}"]["roc_auc"],
                                   skm.roc_auc_score(truth[mask], p[mask]), delta=1e-9)

        # The threshold rule: the validation score maximising F1 (ties: the higher score).
        pv = ours_booster.predict(xgb.DMatrix(x[valid])).astype(np.float64)
        yv = y[valid].astype(int)
        best = max(sorted(set(pv), reverse=True),
                   key=lambda c: skm.f1_score(yv, (pv >= c).astype(int)))
        self.assertEqual(t, float(best))

    def test_breast_cancer_auc(self):
        data = load_breast_cancer()
        names = [f"x{i}" for i in range(data.data.shape[1])]
        rows = [[*map(float, data.data[i]), int(data.target[i])] for i in range(len(data.target))]
        self.load("cancer", names + ["malignant"], rows, ["double"] * len(names) + ["int64"])
        spec = self.spec(
            "name: breast-cancer\ntable: cancer\ntask: binary\nlabel: malignant\n"
            f"features: [{', '.join(names)}]\nsplit: {{method: random, seed: 5, test: 0.25}}\n"
            "trainer: {rounds: 300, early_stopping_rounds: 30, params: {max_depth: 3, eta: 0.1,"
            " nthread: 2}}\ngate: {floors: {roc_auc: 0.98}}\n")
        summary = self.train_json(spec, self.tmp / "cancer-model")
        self.assertGreaterEqual(summary["metrics"]["test"]["roc_auc"], 0.98)
        self.assertTrue(summary["gate"]["passed"])


class ReproducibilityTest(TrainTestCase):
    def test_same_spec_snapshot_and_seed_give_the_same_bytes_and_digest(self):
        self.load_sensors(n=3000)
        spec = self.spec(SENSOR_SPEC)
        first = self.tmp / "first"
        second = self.tmp / "second"
        result = self.train(spec, "--out", first, check=0)
        self.assertIn("valid-logloss", result.stderr)  # progress per round
        self.assertIn("[0]", result.stderr)
        self.train(spec, "--out", second, "--quiet", check=0)
        for name in ("model.json", "model.yaml", "card.json"):
            self.assertEqual((first / name).read_bytes(), (second / name).read_bytes(), name)
        a = json.loads(edgeloop("model", "package", first, f"layout://{self.tmp}/s1/failure:x",
                                "--json", check=0).stdout)
        b = json.loads(edgeloop("model", "package", second, f"layout://{self.tmp}/s2/failure:x",
                                "--json", check=0).stdout)
        self.assertEqual(a["digest"], b["digest"])
        card = self.card(first)
        self.assertEqual(card["encoding"]["columns"][-1],
                         {"column": "site", "encoding": "one_hot", "categories": ["a", "b", "c"]})
        self.assertIn("f0", card["reference_statistics"]["features"])
        self.assertIn("site", card["reference_statistics"]["categories"])
        self.assertGreater(card["reference_statistics"]["features"]["f3"]["missing_rate"], 0.01)
        self.assertTrue(card["lineage"]["spec_sha256"].startswith("sha256:"))
        # The served folder works with `edgeloop model inspect` through the package.
        inspect = json.loads(edgeloop("model", "inspect", f"layout://{self.tmp}/s1/failure:x",
                                      "--json", check=0).stdout)
        self.assertIn("metrics", json.dumps(inspect))

    def test_pinned_snapshot_is_recorded_and_read(self):
        self.load_sensors(n=1500)
        first = self.read_back("sensors")
        self.load_sensors(n=1500, seed=2)  # a second append
        snapshots = json.loads(edgeloop("lake", "history", "--lake", self.lake, "--json",
                                        check=0).stdout)
        older = min(s["snapshot"] for s in snapshots if s.get("rows_added", 0) > 0)
        card_latest = self.card(self.tmp / "l") if self.train_json(
            self.spec(SENSOR_SPEC), self.tmp / "l") else None
        summary = self.train_json(self.spec(SENSOR_SPEC), self.tmp / "p", "--snapshot", older)
        self.assertEqual(summary["lineage"]["snapshot"], older)
        total = sum(summary["rows"][k] for k in ("train", "validation", "test"))
        self.assertEqual(total, len(first))
        self.assertGreater(card_latest["lineage"]["snapshot"], older)


class GateTest(TrainTestCase):
    def setUp(self):
        super().setUp()
        self.key = self.tmp / "release"
        edgeloop("model", "keygen", "--out", self.key, check=0)
        self.store = f"layout://{self.tmp}/store/failure"

    def weak_spec(self):
        return self.spec(SENSOR_SPEC.replace("rounds: 200", "rounds: 2")
                         .replace("max_depth: 4", "max_depth: 1"), "weak.yaml")

    def gated_spec(self, extra=""):
        return self.spec(SENSOR_SPEC + "gate: {metric: roc_auc, min_improvement: 0.005,"
                         " slice_tolerance: 0.02, floors: {roc_auc: 0.6}}\n" + extra, "gated.yaml")

    def test_better_challenger_is_pushed_and_promoted_worse_is_refused(self):
        self.load_sensors()
        # The first champion: no champion to beat, floors only.
        first = json.loads(self.train(self.weak_spec(), "--push", f"{self.store}:weak",
                                      "--key", f"{self.key}.key", "--promote", "champion",
                                      "--json", check=0).stdout)
        self.assertIn("promoted", first)
        champion = f"{self.store}:champion"
        # A better challenger beats it and takes the alias.
        better = json.loads(self.train(self.gated_spec(), "--champion", champion,
                                       "--push", f"{self.store}:strong", "--key",
                                       f"{self.key}.key", "--promote", "champion", "--json",
                                       check=0).stdout)
        self.assertTrue(better["gate"]["passed"])
        self.assertEqual(better["gate"]["champion"]["digest"], first["pushed"]["digest"])
        self.assertEqual(better["promoted"]["to"], better["pushed"]["digest"])
        resolved = json.loads(edgeloop("model", "resolve", champion, "--json", check=0).stdout)
        self.assertIn(better["pushed"]["digest"], json.dumps(resolved))
        # The weak model again, now against the strong champion: refused, nothing pushed.
        weak_gated = self.spec(SENSOR_SPEC.replace("rounds: 200", "rounds: 2")
                               .replace("max_depth: 4", "max_depth: 1") +
                               "gate: {min_improvement: 0.0}\n", "weak-gated.yaml")
        result = self.train(weak_gated, "--champion", champion, "--push", f"{self.store}:weak2",
                            "--key", f"{self.key}.key", "--promote", "champion", check=6)
        self.assertIn("gate: refused", result.stdout)
        self.assertIn("not pushed", result.stdout)
        tags = edgeloop("model", "ls", self.store, check=0).stdout
        self.assertNotIn("weak2", tags)
        resolved = json.loads(edgeloop("model", "resolve", champion, "--json", check=0).stdout)
        self.assertIn(better["pushed"]["digest"], json.dumps(resolved))

    def test_slice_regression_is_refused(self):
        self.load_sensors(n=6000, site_c_uses_f7=True)
        champion = self.spec(SENSOR_SPEC.replace("[f0, f1, f2, f3, f4, f5, f6, f7, site]",
                                                 "[f7, site]"), "champion.yaml")
        self.train(champion, "--out", self.tmp / "champion", "--quiet", check=0)
        challenger = self.spec(
            SENSOR_SPEC.replace("[f0, f1, f2, f3, f4, f5, f6, f7, site]", "[f0, f1, f2, site]") +
            "gate: {metric: roc_auc, min_improvement: 0.0, slice_tolerance: 0.02}\n",
            "challenger.yaml")
        result = self.train(challenger, "--out", self.tmp / "challenger", "--champion",
                            self.tmp / "champion", "--json", check=6)
        gate = json.loads(result.stdout)["gate"]
        self.assertFalse(gate["passed"])
        beats = [c for c in gate["checks"] if c["check"].startswith("beats champion")]
        self.assertTrue(beats[0]["passed"], gate)
        self.assertEqual(len(gate["failures"]), 1, gate)
        self.assertIn("site=c", gate["failures"][0])
        # The card of the refused model holds the gate result with its numbers.
        self.assertFalse(self.card(self.tmp / "challenger")["gate"]["passed"])


class TasksTest(TrainTestCase):
    def test_anomaly_detectors_and_multiclass(self):
        self.load_sensors(n=1500)
        for task in ("isolation_forest", "ecod"):
            spec = self.spec(f"name: det\ntable: sensors\ntask: {task}\nlabel: failed\n"
                             "features: [f0, f1, f2]\ntrainer: {contamination: 0.02, params: "
                             "{seed: 4}}\n", f"{task}.yaml")
            out = self.tmp / task
            summary = self.train_json(spec, out)
            self.assertIn("roc_auc", summary["metrics"]["test"])
            yaml = (out / "model.yaml").read_text()
            self.assertIn("framework: outlier", yaml)
            self.assertIn("{name: anomaly, datatype: BOOL, shape: [-1]}", yaml)
            self.assertTrue((out / "detector.json").exists())
        spec = self.spec("name: site\ntable: sensors\ntask: multiclass\nlabel: site\n"
                         "features: [f0, f1, failed]\ntrainer: {rounds: 5}\n", "mc.yaml")
        summary = self.train_json(spec, self.tmp / "mc")
        self.assertEqual(len(summary["metrics"]["test"]["confusion_matrix"]), 3)


class BadInputTest(TrainTestCase):
    def test_clear_errors_and_exit_codes(self):
        self.load_sensors(n=400)
        base = "name: m\ntable: sensors\ntask: binary\nlabel: failed\n"
        cases = [
            (base + "features: [f0, pressure]\n", 2, "missing column 'pressure'"),
            (base + "features: [f0, site]\n", 2, "declare an encoding"),
            (base + "features: [f0]\ncolour: red\n", 2, "unknown field 'colour'"),
            ("name: m\ntable: sensors\ntask: binary\nlabel: f0\nfeatures: [f1]\n", 2,
             "must be 0 or 1"),
            ("name: m\ntable: nope\ntask: binary\nlabel: failed\nfeatures: [f0]\n", 4, "nope"),
            (base + "features: [f0]\nsplit: {test: 0.7, validation: 0.5}\n", 2, "fractions"),
            ("name: [oops\n", 2, "not valid YAML"),
        ]
        for i, (text, code, message) in enumerate(cases):
            result = self.train(self.spec(text, f"bad{i}.yaml"), "--out", self.tmp / f"o{i}",
                                check=code)
            self.assertIn(message, result.stderr, text)
            self.assertFalse((self.tmp / f"o{i}").exists())
        # One class.
        self.load("one", ["a", "y"], [[float(i), 1] for i in range(50)], ["double", "int64"])
        result = self.train(self.spec("name: m\ntable: one\ntask: binary\nlabel: y\n"
                                      "features: [a]\n", "one.yaml"), "--out", self.tmp / "x",
                            check=2)
        self.assertIn("only one class", result.stderr)
        # An empty snapshot (the table as created, before any row).
        self.load("empty", ["a", "y"], [], ["double", "int64"])
        result = self.train(self.spec("name: m\ntable: empty\ntask: binary\nlabel: y\n"
                                      "features: [a]\n", "empty.yaml"), "--out", self.tmp / "e",
                            check=2)
        self.assertIn("is empty at snapshot", result.stderr)
        # No lake, no output, a promote without a key.
        result = edgeloop("train", self.spec(base + "features: [f0]\n", "ok.yaml"), "--out",
                          self.tmp / "z", check=2)
        self.assertIn("--lake", result.stderr)
        result = self.train(self.tmp / "ok.yaml", check=2)
        self.assertIn("--out", result.stderr)
        result = self.train(self.tmp / "ok.yaml", "--push", f"layout://{self.tmp}/s/m:1",
                            "--promote", "champion", check=2)
        self.assertIn("--key", result.stderr)
        # An existing, non-empty output folder is never overwritten.
        (self.tmp / "full").mkdir()
        (self.tmp / "full" / "keep").write_text("x")
        result = self.train(self.tmp / "ok.yaml", "--out", self.tmp / "full", check=2)
        self.assertIn("not empty", result.stderr)
        self.assertEqual((self.tmp / "full" / "keep").read_text(), "x")


if __name__ == "__main__":
    unittest.main()
