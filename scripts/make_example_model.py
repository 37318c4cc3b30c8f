#!/usr/bin/python3
"""Trains the bundled example model: examples/models/machine-failure/1.

A binary classifier (XGBoost, 200 trees, depth 6) that predicts a machine failure in the next
hour from 20 FP32 sensor features. The data is synthetic and seeded, so rerunning the script
gives the same model. Run with Debian's python3 (python3-xgboost, python3-numpy):

    /usr/bin/python3 scripts/make_example_model.py examples/models/machine-failure/1
"""
import os
import sys

import numpy as np
import xgboost as xgb

FEATURES = [
    "temperature_c", "vibration_rms", "vibration_peak", "pressure_bar", "rpm", "current_a",
    "voltage_v", "power_kw", "oil_temp_c", "oil_quality", "humidity_pct", "ambient_temp_c",
    "load_pct", "cycle_time_s", "tool_wear_min", "acoustic_db", "torque_nm", "flow_lpm",
    "hours_since_service", "error_count_24h",
]


def make_data(rows, rng):
    means = np.array([70, 2.0, 6.0, 5.0, 1500, 12, 400, 8, 60, 0.8, 45, 22, 70, 30, 120, 75,
                      40, 20, 300, 1], dtype=np.float64)
    scales = np.array([8, 0.6, 2.0, 0.8, 200, 3, 10, 2, 6, 0.1, 10, 4, 15, 5, 60, 6, 8, 4,
                       200, 1.5], dtype=np.float64)
    x = rng.normal(means, scales, size=(rows, len(FEATURES)))
    x[:, 19] = np.abs(np.round(x[:, 19]))
    z = ((x[:, 0] - 70) / 8 * 0.9 + (x[:, 1] - 2.0) / 0.6 * 1.1 + (x[:, 14] - 120) / 60 * 0.8
         + (x[:, 18] - 300) / 200 * 0.7 + x[:, 19] * 0.5 - (x[:, 9] - 0.8) / 0.1 * 0.6
         + 0.8 * np.sin(x[:, 4] / 150.0) * ((x[:, 12] - 70) / 15) - 3.0)
    y = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return x.astype(np.float32), y


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "examples/models/machine-failure/1"
    rng = np.random.default_rng(20261127)
    x, y = make_data(20000, rng)
    dtrain = xgb.DMatrix(x, label=y, feature_names=FEATURES)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist",
              "seed": 7, "nthread": 1, "eval_metric": "logloss"}
    booster = xgb.train(params, dtrain, num_boost_round=200)
    os.makedirs(out_dir, exist_ok=True)
    booster.save_model(os.path.join(out_dir, "model.json"))
    sample, _ = make_data(16, np.random.default_rng(1))
    sample_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                               "data", "machine_failure_sample.csv")
    np.savetxt(sample_path, sample, delimiter=",",
               fmt="%.4f", header=",".join(FEATURES), comments="")


if __name__ == "__main__":
    main()
