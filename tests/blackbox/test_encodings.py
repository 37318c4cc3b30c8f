"""Categorical encodings at serve time (issue 5): `edgeloop train` on a lake table with a one-hot
and an ordinal column writes the encoding into model.yaml; `edgeloop serve` then takes the raw
strings and scores them exactly as python3-xgboost scores the numbers encoded by the documented
rule (unseen one-hot category: all zeros; missing: NaN; unseen or missing ordinal: NaN)."""
import json
import math
import os
import pathlib
import shutil
import subprocess
import unittest

import numpy as np
import xgboost as xgb

import harness

SITES = ["north", "south", "east"]
GRADES = ["low", "mid", "high"]


def edgeloop(*args):
    result = subprocess.run([harness.require_binary(), *map(str, args)], capture_output=True,
                            text=True, timeout=harness.scaled(120), stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise AssertionError(f"edgeloop {' '.join(map(str, args))}: {result.returncode}\n"
                             f"{result.stderr}")
    return result


def encode(rows, categories):
    """The documented rule, in Python: [temperature, site one-hot x3, grade ordinal]."""
    out = []
    for temperature, site, grade in rows:
        x = [float(temperature) if temperature != "" else math.nan]
        x += [math.nan] * 3 if site == "" else [1.0 if site == s else 0.0 for s in categories]
        x.append(float(GRADES.index(grade)) if grade in GRADES else math.nan)
        out.append(x)
    return np.array(out, dtype=np.float32)


class EncodingsTest(unittest.TestCase):
    def test_raw_strings_score_like_their_encoded_numbers(self):
        tmp = pathlib.Path(harness.make_temp_dir("encodings-"))
        rng = np.random.default_rng(7)
        n = 1200
        csv = tmp / "machines.csv"
        with open(csv, "w") as f:
            f.write("temperature,site,grade,failed\n")
            for _ in range(n):
                t = rng.normal()
                site = SITES[rng.integers(0, 3)]
                grade = GRADES[rng.integers(0, 3)]
                z = 1.5 * t + (1.0 if site == "south" else -0.6) + 0.8 * GRADES.index(grade) - 0.7
                y = int(rng.random() < 1 / (1 + math.exp(-z)))
                f.write(f"{'' if rng.random() < 0.03 else round(t, 4)},{site},{grade},{y}\n")
        lake = tmp / "lake"
        pipeline = tmp / "load.yaml"
        pipeline.write_text(
            f"name: load\nsource: {{type: csv, path: \"{csv}\"}}\nschema:\n"
            "  - {name: temperature, type: double}\n  - {name: site, type: string}\n"
            "  - {name: grade, type: string}\n  - {name: failed, type: int64}\n"
            "target: {table: machines}\n")
        edgeloop("pipeline", "run", pipeline, "--lake", lake, "--json")
        spec = tmp / "spec.yaml"
        spec.write_text(
            "name: enc\ntable: machines\ntask: binary\nlabel: failed\n"
            "features: [temperature, site, grade]\n"
            "categorical:\n  site: {encoding: one_hot}\n"
            "  grade: {encoding: ordinal, categories: [low, mid, high]}\n"
            "split: {method: random, seed: 3}\n"
            "trainer: {rounds: 30, params: {max_depth: 3, eta: 0.3, seed: 1, nthread: 1}}\n")
        out = tmp / "repo" / "enc" / "1"
        edgeloop("train", spec, "--lake", lake, "--out", out, "--json")
        card = json.loads((out / "card.json").read_text())
        site_categories = next(c["categories"] for c in card["encoding"]["columns"]
                               if c["column"] == "site")
        self.assertEqual(sorted(site_categories), sorted(SITES))
        self.assertIn("encoding:", (out / "model.yaml").read_text())

        server = harness.Server(str(tmp / "repo"), ["--poll-interval-ms", "0"]).start(timeout=30)
        self.addCleanup(server.stop)
        server.wait_model_ready("enc")
        meta = json.loads(server.admin.get("/v2/models/enc").text)
        self.assertEqual(meta["inputs"], [{"name": "features", "datatype": "BYTES", "shape": [-1, 3]}])
        columns = {c["column"]: c for c in meta["parameters"]["encoding"]}
        self.assertEqual(columns["site"]["kind"], "one_hot")
        self.assertEqual(columns["site"]["categories"], site_categories)
        self.assertEqual(columns["grade"]["categories"], GRADES)
        self.assertEqual(columns["temperature"]["kind"], "number")

        rows = [["0.3", "south", "high"], ["-1.2", "north", "low"], ["", "east", "mid"],
                ["0.8", "mars", "mid"], ["1.1", "", "platinum"], ["-0.4", "east", ""]]
        body = {"inputs": [{"name": "features", "datatype": "BYTES", "shape": [len(rows), 3],
                            "data": [v for row in rows for v in row]}]}
        response = server.admin.post("/v2/models/enc/infer", body)
        self.assertEqual(response.status, 200, response.body[:300])
        served = harness.output_array(json.loads(response.text), "probability")

        booster = xgb.Booster(model_file=str(out / "model.json"))
        expected = booster.predict(xgb.DMatrix(encode(rows, site_categories), missing=np.nan))
        harness.assert_close(np.asarray(served, dtype=np.float64).ravel(),
                             np.asarray(expected, dtype=np.float64), 1e-6, "probabilities")
        self.assertGreater(float(np.ptp(expected)), 0.05)  # the categories matter

        bad = {"inputs": [{"name": "features", "datatype": "BYTES", "shape": [1, 3],
                           "data": ["warm", "north", "low"]}]}
        response = server.admin.post("/v2/models/enc/infer", bad)
        self.assertEqual(response.status, 400)
        self.assertIn("temperature", json.loads(response.text)["error"])
        numbers = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 5],
                               "data": [0.1, 1, 0, 0, 2]}]}
        self.assertEqual(server.admin.post("/v2/models/enc/infer", numbers).status, 400)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
