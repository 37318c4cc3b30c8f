"""Interop: models trained and saved by python3-xgboost are served with XGBoost's own numbers.

One server holds every combination of objective (binary:logistic, multi:softprob with 3
classes, reg:squarederror), backend (native, capi) and model file format (JSON, UBJSON). The
reference is Booster.predict of the same saved file on the same float32 rows: predictions and
margins agree within 1e-6, contributions (SHAP values) within 1e-5, both scaled by max(1, |x|).
"""
import unittest

import numpy as np

import harness

OBJECTIVES = {"binary": "binary:logistic", "multi": "multi:softprob", "reg": "reg:squarederror"}
BACKENDS = ("native", "capi")
FORMATS = ("json", "ubj")
PREDICTION_ATOL = 1e-6
CONTRIBUTION_ATOL = 1e-5


def model_name(short, backend, fmt):
    return f"{short}-{backend}-{fmt}"


def trained_model(objective):
    return harness.train(objective, seed=11, rounds=40, max_depth=5)


def threshold_rows(trained):
    """Rows whose features sit exactly on split thresholds, and one float32 step either side."""
    conditions = trained.split_conditions()
    rows = []
    for shift in (None, -np.inf, np.inf):
        for r in range(20):
            row = np.zeros(harness.NUM_FEATURES, dtype=np.float32)
            for feature, values in conditions.items():
                value = np.float32(values[(r * 7 + feature) % len(values)])
                if shift is not None:
                    value = np.nextafter(value, np.float32(shift))
                row[feature] = value
            rows.append(row)
    return np.array(rows, dtype=np.float32)


def extreme_rows():
    """Values far outside the training range: +-FLT_MAX, +-1e30, denormals, signed zeros."""
    specials = np.array([np.finfo(np.float32).max, -np.finfo(np.float32).max, 1e30, -1e30,
                         np.float32(1e-45), -np.float32(1e-45), 0.0, -0.0, 1e-30, 65504.0],
                        dtype=np.float32)
    rows = []
    for r in range(len(specials)):
        rows.append(np.roll(specials, r)[np.arange(harness.NUM_FEATURES) % len(specials)])
    rows.append(np.full(harness.NUM_FEATURES, specials[0], dtype=np.float32))
    rows.append(np.full(harness.NUM_FEATURES, specials[1], dtype=np.float32))
    return np.array(rows, dtype=np.float32)


class InteropTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        repo = harness.Repository()
        for short, objective in OBJECTIVES.items():
            trained = trained_model(objective)
            for backend in BACKENDS:
                for fmt in FORMATS:
                    repo.add_version(model_name(short, backend, fmt), 1, trained, fmt=fmt,
                                     backend=backend)
        cls.server = cls.start_class_server(repo)
        # Each test checks its own model, so one model that fails to load fails only its tests.
        cls.server.wait_settled([model_name(s, b, f) for s in OBJECTIVES for b in BACKENDS
                                 for f in FORMATS])
        cls.rows = harness.make_features(1000, seed=99)
        nan_rows = harness.make_features(300, seed=98, nan_fraction=0.15)
        nan_rows[0, :] = np.nan
        cls.nan_rows = nan_rows

    def setUp(self):
        self.client = self.server.client(timeout=30)
        self.addCleanup(self.client.close)

    def infer(self, model, rows, outputs=None):
        entry = self.server.index_entry(model, 1)
        self.assertEqual(entry and entry.get("state"), "READY",
                         f"{model} did not load: {entry and entry.get('reason', '')[:300]}")
        response = self.client.infer(model, harness.infer_body(rows, outputs=outputs))
        self.assertEqual(response.status, 200, f"{model}: {response.body[:300]!r}")
        self.assertEqual(response.json.get("model_name"), model)
        return response.json

    def check_predictions(self, short, backend, fmt, rows, what):
        objective = OBJECTIVES[short]
        trained = trained_model(objective)
        model = model_name(short, backend, fmt)
        body = self.infer(model, rows)
        shape = [len(rows), 3] if short == "multi" else [len(rows)]
        actual = harness.output_array(body, harness.prediction_output_name(objective), shape)
        expected = trained.predict(rows, fmt=fmt)
        harness.assert_close(actual, expected, PREDICTION_ATOL, f"{model} {what}")

    def check_single_rows(self, short, backend, fmt):
        for i in range(10):
            self.check_predictions(short, backend, fmt, self.rows[i:i + 1], f"row {i}")

    def check_batch(self, short, backend, fmt):
        self.check_predictions(short, backend, fmt, self.rows, "1000-row batch")

    def check_nan(self, short, backend, fmt):
        self.check_predictions(short, backend, fmt, self.nan_rows, "rows with nulls")

    def check_thresholds(self, short, backend, fmt):
        rows = threshold_rows(trained_model(OBJECTIVES[short]))
        self.check_predictions(short, backend, fmt, rows, "values on split thresholds")

    def check_extremes(self, short, backend, fmt):
        self.check_predictions(short, backend, fmt, extreme_rows(), "extreme values")

    def check_margin(self, short, backend, fmt):
        objective = OBJECTIVES[short]
        model = model_name(short, backend, fmt)
        rows = np.concatenate([self.rows[:100], self.nan_rows[:100]])
        body = self.infer(model, rows, outputs=["margin"])
        self.assertEqual([o.get("name") for o in body["outputs"]], ["margin"])
        shape = [len(rows), 3] if short == "multi" else [len(rows)]
        actual = harness.output_array(body, "margin", shape)
        expected = trained_model(objective).predict(rows, fmt=fmt, output_margin=True)
        harness.assert_close(actual, expected, PREDICTION_ATOL, f"{model} margin")

    def check_contributions(self, short, backend, fmt):
        objective = OBJECTIVES[short]
        model = model_name(short, backend, fmt)
        rows = np.concatenate([self.rows[:100], self.nan_rows[:100]])
        body = self.infer(model, rows, outputs=["contributions"])
        self.assertEqual([o.get("name") for o in body["outputs"]], ["contributions"])
        actual = harness.output_array(body, "contributions",
                                      [len(rows), harness.NUM_FEATURES + 1])
        expected = trained_model(objective).predict(rows, fmt=fmt, pred_contribs=True)
        harness.assert_close(actual, expected, CONTRIBUTION_ATOL, f"{model} contributions")

    def test_platforms(self):
        platforms = {}
        for backend in BACKENDS:
            model = model_name("binary", backend, "json")
            response = self.client.get(f"/v2/models/{model}")
            self.assertEqual(response.status, 200, f"{model}: {response.body[:300]!r}")
            platforms[backend] = response.json.get("platform")
        self.assertEqual(platforms["native"], "xgboost_native")
        self.assertIsInstance(platforms["capi"], str)
        self.assertTrue(platforms["capi"].startswith("xgboost"), platforms)
        self.assertNotEqual(platforms["capi"], platforms["native"])


def _add_tests():
    checks = ["single_rows", "batch", "nan", "thresholds", "extremes", "margin"]
    for short in OBJECTIVES:
        for backend in BACKENDS:
            for fmt in FORMATS:
                names = checks + (["contributions"] if short != "multi" else [])
                for check in names:
                    def test(self, check=check, short=short, backend=backend, fmt=fmt):
                        getattr(self, "check_" + check)(short, backend, fmt)
                    test.__name__ = f"test_{short}_{backend}_{fmt}_{check}"
                    test.__doc__ = None
                    setattr(InteropTest, test.__name__, test)


_add_tests()

if __name__ == "__main__":
    unittest.main()
