"""The `streaming_anomaly` framework end to end: `edgeloop serve` serving a streaming detector.

Checks, against the real binary on loopback:
  - scores equal an independent Python evaluation of the EWMA detector's published formula
    with its default likelihood and range watch (docs/anomaly.md), verdicts follow the
    threshold, and series are independent;
  - rows of one request are processed in order, and a request is all-or-nothing;
  - the state survives a restart, also after kill -9 (checkpoint_points: 1), and a graceful
    stop writes the checkpoint on unload;
  - a corrupt checkpoint starts fresh with the server still serving;
  - bad inputs (out of order, duplicate timestamp with another value, wrong types, mismatched
    row counts, missing inputs) get 400 with a JSON error and leave the state untouched.
"""
import json
import math
import os
import signal
import unittest

import harness

DETECTOR = {"detector": "ewma", "probation": 30, "alpha": 0.01, "z_threshold": 4,
            "huber": 2.5, "suppress": 0, "threshold": 0.5}


def model_yaml(state_dir, extra=None, series=True):
    params = {"state_dir": state_dir}
    params.update(extra or {})
    inputs = ["{name: timestamp, datatype: INT64, shape: [-1]}",
              "{name: value, datatype: FP64, shape: [-1]}"]
    if series:
        inputs.append("{name: series, datatype: BYTES, shape: [-1]}")
    lines = ["framework: streaming_anomaly", "model_file: detector.yaml", "inputs:"]
    lines += [f"  - {i}" for i in inputs]
    lines += ["outputs:", "  - {name: score, datatype: FP64, shape: [-1]}",
              "  - {name: anomaly, datatype: BOOL, shape: [-1]}",
              "parameters: " + json.dumps({k: str(v) for k, v in params.items()})]
    return "\n".join(lines) + "\n"


def detector_yaml(detector=DETECTOR):
    return "".join(f"{k}: {v}\n" for k, v in detector.items())


class Likelihood:
    """The anomaly likelihood, written from docs/anomaly.md ("Likelihood and range watch")."""

    def __init__(self, window=10, alpha=1.0 / 4320, learning=0):
        self.recent = [0.0] * window
        self.alpha, self.learning = alpha, learning
        self.n, self.mean, self.var = 0, 0.0, 0.0

    def update(self, raw):
        window = len(self.recent)
        self.recent[self.n % window] = raw
        self.n += 1
        filled = min(self.n, window)
        average = sum(self.recent[:filled]) / filled
        score = 0.0
        if self.n > self.learning:
            z = (average - max(self.mean, 0.03)) / math.sqrt(max(self.var, 0.0003))
            tail = 0.5 * math.erfc(z / math.sqrt(2.0))
            score = min(max(math.log(tail + 1e-10) / math.log(1e-10), 0.0), 1.0)
        a = max(self.alpha, 1.0 / self.n) if self.n <= self.learning else self.alpha
        d = average - self.mean
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d)
        return score


class Ewma:
    """The EWMA detector with its default likelihood and range watch, written from its
    description in docs/anomaly.md."""

    def __init__(self, d=DETECTOR):
        self.d = d
        self.n = 0
        self.mean = 0.0
        self.var = 0.0
        self.lo = self.hi = None
        self.likelihood = Likelihood(learning=d["probation"])

    def update(self, x):
        self.n += 1
        if self.n == 1:
            self.mean, self.var = x, 0.0
            self.lo = self.hi = x
            return 0.0
        margin = 0.05 * (self.hi - self.lo)
        outside = x > self.hi + margin or x < self.lo - margin
        self.lo, self.hi = min(self.lo, x), max(self.hi, x)
        floor = 1e-3 * (abs(self.mean) + 1e-3)
        sigma = math.sqrt(self.var + floor * floor)
        residual = x - self.mean
        z = abs(residual / sigma)
        r = z / self.d["z_threshold"]
        score = self.likelihood.update(r * r / (1 + r * r))
        if outside:
            score = 1.0
        if self.n <= self.d["probation"]:
            score = 0.0
        warming = self.n <= self.d["probation"]
        a = max(self.d["alpha"], 1.0 / self.n) if warming else self.d["alpha"]
        limit = self.d["huber"] * sigma
        r = residual if warming else min(max(residual, -limit), limit)
        self.mean += a * r
        self.var = (1 - a) * (self.var + a * r * r)
        return score


def wave(i, series=0):
    return 20.0 + 3.0 * math.sin(i / 7.0 + series) + 0.4 * math.sin(i * 1.3)


def body(rows, outputs=None):
    """rows: [(series, timestamp_ms, value)]"""
    n = len(rows)
    b = {"inputs": [
        {"name": "timestamp", "datatype": "INT64", "shape": [n], "data": [r[1] for r in rows]},
        {"name": "value", "datatype": "FP64", "shape": [n], "data": [r[2] for r in rows]},
        {"name": "series", "datatype": "BYTES", "shape": [n], "data": [r[0] for r in rows]}]}
    if outputs:
        b["outputs"] = [{"name": o} for o in outputs]
    return b


class StreamingAnomalyTest(harness.ServerTestCase):
    def setUp(self):
        self.state = harness.make_temp_dir("anomaly-state-")
        self.repo = harness.Repository()
        self.repo.add_raw_version("sensor", 1, {
            "model.yaml": model_yaml(self.state, {"checkpoint_points": 1}),
            "detector.yaml": detector_yaml()})
        self.repo.add_raw_version("lazy", 1, {
            "model.yaml": model_yaml(self.state, {"checkpoint_points": 100000,
                                                  "checkpoint_interval_s": 3600}),
            "detector.yaml": detector_yaml()})
        self.repo.add_raw_version("single", 1, {
            "model.yaml": model_yaml(self.state, series=False),
            "detector.yaml": detector_yaml()})

    def serve(self):
        server = self.start_server(self.repo)
        for model in ("sensor", "lazy", "single"):
            server.wait_model_ready(model, timeout=30)
        client = server.client()
        self.addCleanup(client.close)
        return server, client

    def infer(self, client, model, rows, outputs=None):
        response = client.infer(model, body(rows, outputs))
        self.assertEqual(response.status, 200, response.body[:400])
        scores = harness.flatten(harness.find_output(response.json, "score")["data"])
        verdicts = harness.flatten(harness.find_output(response.json, "anomaly")["data"])
        return scores, verdicts

    def test_scores_follow_the_formula_per_series_and_rows_in_order(self):
        server, client = self.serve()
        meta = client.get("/v2/models/sensor")
        self.assertEqual(meta.status, 200)
        self.assertEqual(meta.json.get("platform"), "streaming_anomaly")
        refs = {"a": Ewma(), "b": Ewma()}
        expected, rows = [], []
        for i in range(120):
            for k, key in enumerate(("a", "b")):
                v = wave(i, k) + (15.0 if (key == "a" and i == 100) else 0.0)
                rows.append((key, 1_700_000_000_000 + i * 60_000, v))
                expected.append(refs[key].update(v))
        # Interleaved series in batches of 10 rows.
        scores, verdicts = [], []
        for start in range(0, len(rows), 10):
            s, v = self.infer(client, "sensor", rows[start:start + 10])
            scores += s
            verdicts += v
        harness.assert_close(scores, expected, 1e-9, "ewma scores")
        self.assertEqual(verdicts, [s >= 0.5 for s in scores])
        spike = rows.index(("a", 1_700_000_000_000 + 100 * 60_000, wave(100, 0) + 15.0))
        self.assertTrue(verdicts[spike], scores[spike])
        self.assertEqual(sum(verdicts), sum(1 for s in expected if s >= 0.5))
        self.assertTrue(all(0.0 <= s <= 1.0 for s in scores))

        # A model without a series input keeps one series.
        ref = Ewma()
        rows = [("", 1000 * i, wave(i)) for i in range(40)]
        b = body(rows)
        b["inputs"] = b["inputs"][:2]
        response = client.infer("single", b)
        self.assertEqual(response.status, 200, response.body[:300])
        harness.assert_close(harness.flatten(harness.find_output(response.json, "score")["data"]),
                             [ref.update(r[2]) for r in rows], 1e-9, "single-series scores")

    def test_state_survives_kill_9_and_graceful_restart(self):
        server, client = self.serve()
        ref_sensor, ref_lazy = Ewma(), Ewma()
        t = lambda i: 1_700_000_000_000 + i * 1000
        for start in range(0, 200, 20):
            rows = [("s", t(i), wave(i)) for i in range(start, start + 20)]
            self.infer(client, "sensor", rows)
            self.infer(client, "lazy", rows)
            for r in rows:
                ref_sensor.update(r[2])
                ref_lazy.update(r[2])
        server.send_signal(signal.SIGKILL)
        server.wait_exit(10)

        server, client = self.serve()
        rows = [("s", t(i), wave(i) + (9.0 if i == 205 else 0.0)) for i in range(200, 220)]
        scores, _ = self.infer(client, "sensor", rows)
        harness.assert_close(scores, [ref_sensor.update(r[2]) for r in rows], 1e-9,
                             "scores after kill -9 (every point checkpointed)")
        # The restored series remembers its last timestamp: going back is refused.
        response = client.infer("sensor", body([("s", t(100), 1.0)]))
        self.assert_error(response, 400, "out of order after restart")
        self.assertIn("out of order", response.json["error"])
        # "lazy" had no checkpoint yet when killed: it starts fresh (probation scores 0).
        scores, _ = self.infer(client, "lazy", rows)
        self.assertEqual(scores, [0.0] * len(rows))

        # A graceful stop checkpoints on unload: "lazy" then continues exactly.
        fresh = Ewma()
        for r in rows:
            fresh.update(r[2])
        server.stop()
        server, client = self.serve()
        more = [("s", t(i), wave(i)) for i in range(220, 240)]
        scores, _ = self.infer(client, "lazy", more)
        harness.assert_close(scores, [fresh.update(r[2]) for r in more], 1e-9,
                             "scores after a graceful restart")

    def test_corrupt_checkpoint_starts_fresh(self):
        path = os.path.join(self.state, "sensor", "1.ckpt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"EDGELOOP-ANOMALY-STATE\n garbage")
        server, client = self.serve()
        scores, _ = self.infer(client, "sensor", [("s", 1, 1.0), ("s", 2, 2.0)])
        self.assertEqual(scores, [0.0, 0.0])
        self.assertTrue(any("checkpoint not used" in line for line in server.stderr_lines()),
                        server.stderr_tail())

    def test_bad_inputs_are_400_and_change_nothing(self):
        server, client = self.serve()
        ref = Ewma()
        rows = [("s", 1000 * i, wave(i)) for i in range(50)]
        first_scores, _ = self.infer(client, "sensor", rows)
        for r in rows:
            ref.update(r[2])
        good = body([("s", 100_000, 21.0)])
        cases = {
            "out of order": body([("s", 10, 21.0)]),
            "duplicate timestamp, other value": body([("s", 49_000, 99.0)]),
            "later row out of order": body([("s", 200_000, 21.0), ("s", 150_000, 21.0)]),
            "value as FP32": dict(good, inputs=[good["inputs"][0],
                                                dict(good["inputs"][1], datatype="FP32"),
                                                good["inputs"][2]]),
            "timestamp as string": dict(good, inputs=[dict(good["inputs"][0], datatype="BYTES",
                                                           data=["2024-01-01"]),
                                                      good["inputs"][1], good["inputs"][2]]),
            "row counts differ": dict(good, inputs=[good["inputs"][0],
                                                    dict(good["inputs"][1], shape=[2],
                                                         data=[1.0, 2.0]),
                                                    good["inputs"][2]]),
            "missing series": dict(good, inputs=good["inputs"][:2]),
            "unknown output": dict(good, outputs=[{"name": "margin"}]),
        }
        for what, b in cases.items():
            with self.subTest(case=what):
                response = client.infer("sensor", b)
                self.assert_error(response, 400, what)
        server.assert_alive()
        # A redelivery of the last point is answered again without learning from it twice.
        last = rows[-1]
        again, _ = self.infer(client, "sensor", [last])
        self.assertEqual(again, first_scores[-1:])
        # Nothing above changed the state: the next point scores as the reference says.
        nxt = ("s", 100_000, 21.0)
        scores, _ = self.infer(client, "sensor", [nxt])
        harness.assert_close(scores, [ref.update(nxt[2])], 1e-9, "score after refused requests")


if __name__ == "__main__":
    unittest.main()
