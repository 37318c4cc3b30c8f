"""The Open Inference Protocol REST API as docs/serve.md documents it.

Health, server and model metadata, readiness, inference (version paths, id echo, output
selection, flat and nested data), the repository extension (index, load, unload), /metrics
names and exact counter movements, 404 and 405 answers. One server, with the bundled example
model, a model with two versions and a spare model for load/unload (all on the native backend;
the capi backend is covered by test_interop).
"""
import time
import unittest

import numpy as np
import xgboost as xgb

import harness

EXAMPLE = "machine-failure"
TWIN = "twin"
SPARE = "spare"
POLL_MS = 100


def twin_model(version):
    return harness.train("binary:logistic", seed=20 + version, rounds=20, max_depth=3)


class ApiTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        repo = harness.Repository()
        repo.add_example(EXAMPLE, 1)
        repo.add_version(TWIN, 1, twin_model(1))
        repo.add_version(TWIN, 2, twin_model(2))
        repo.set_policy(TWIN, "all")
        repo.add_version(SPARE, 1, twin_model(1))
        cls.server = cls.start_class_server(repo, ["--poll-interval-ms", str(POLL_MS)])
        cls.server.wait_ready(timeout=30)
        cls.rows = harness.example_rows()
        cls.reference = harness.example_model()

    def setUp(self):
        self.client = self.server.client()
        self.addCleanup(self.client.close)

    def expected(self, rows, **kwargs):
        return self.reference.predict(xgb.DMatrix(rows, missing=np.nan), **kwargs)

    def get_json(self, path, status=200):
        response = self.client.get(path)
        self.assertEqual(response.status, status, f"GET {path}: {response.body[:300]!r}")
        return response.json

    def infer_ok(self, model, body, version=None):
        response = self.client.infer(model, body, version)
        self.assertEqual(response.status, 200, f"{model}: {response.body[:300]!r}")
        return response.json

    # -- health and metadata ---------------------------------------------------------------------

    def test_live(self):
        self.assertEqual(self.get_json("/v2/health/live"), {"live": True})

    def test_ready(self):
        self.assertEqual(self.get_json("/v2/health/ready"), {"ready": True})

    def test_server_metadata(self):
        self.assertEqual(self.get_json("/v2"), {"name": "edgeloop", "version": "0.1.0",
                                                "extensions": ["model_repository"]})

    def test_model_metadata(self):
        body = self.get_json(f"/v2/models/{EXAMPLE}")
        self.assertEqual(body.get("name"), EXAMPLE)
        self.assertEqual(body.get("versions"), ["1"])
        self.assertEqual(body.get("platform"), "xgboost_native")
        strip = lambda specs: [{k: s.get(k) for k in ("name", "datatype", "shape")} for s in specs]
        self.assertEqual(strip(body.get("inputs", [])),
                         [{"name": "features", "datatype": "FP32", "shape": [-1, 20]}])
        self.assertEqual(strip(body.get("outputs", [])),
                         [{"name": "probability", "datatype": "FP32", "shape": [-1]},
                          {"name": "contributions", "datatype": "FP32", "shape": [-1, 21]}])

    def test_model_metadata_lists_every_served_version(self):
        body = self.get_json(f"/v2/models/{TWIN}")
        self.assertEqual(sorted(body.get("versions", [])), ["1", "2"])

    def test_versioned_model_metadata(self):
        for version in ("1", "2"):
            body = self.get_json(f"/v2/models/{TWIN}/versions/{version}")
            self.assertEqual(body.get("name"), TWIN)
            self.assertEqual(body.get("platform"), "xgboost_native")
            self.assertEqual(body["inputs"][0]["shape"], [-1, 20])

    def test_unknown_model_and_version_metadata_are_404(self):
        for path in ("/v2/models/nope", f"/v2/models/{TWIN}/versions/3",
                     f"/v2/models/{TWIN}/versions/3/ready", "/v2/models/nope/ready"):
            with self.subTest(path=path):
                self.assert_error(self.client.get(path), 404, path)

    def test_model_ready(self):
        self.assertEqual(self.get_json(f"/v2/models/{EXAMPLE}/ready"),
                         {"name": EXAMPLE, "ready": True})

    def test_version_ready(self):
        for version in ("1", "2"):
            self.assertEqual(self.get_json(f"/v2/models/{TWIN}/versions/{version}/ready"),
                             {"name": TWIN, "version": version, "ready": True})

    # -- inference -------------------------------------------------------------------------------

    def test_infer_response(self):
        body = self.infer_ok(EXAMPLE, harness.infer_body(self.rows[:1], request_id="req-42"))
        self.assertEqual(body.get("model_name"), EXAMPLE)
        self.assertEqual(body.get("model_version"), "1")
        self.assertEqual(body.get("id"), "req-42")
        self.assertEqual(len(body.get("outputs", [])), 1, body)
        output = body["outputs"][0]
        self.assertEqual(output.get("name"), "probability")
        self.assertEqual(output.get("datatype"), "FP32")
        self.assertEqual(output.get("shape"), [1])
        self.assertEqual(len(output.get("data", [])), 1)
        harness.assert_close(output["data"], self.expected(self.rows[:1]), 1e-6, "probability")

    def test_id_echo_with_unusual_characters(self):
        request_id = 'id "quoted" \\ \u00e9\u4e2d / 0'
        body = self.infer_ok(EXAMPLE, harness.infer_body(self.rows[:1], request_id=request_id))
        self.assertEqual(body.get("id"), request_id)

    def test_multi_row_output_data_is_flat(self):
        body = self.infer_ok(EXAMPLE, harness.infer_body(self.rows[:3],
                                                         outputs=["probability",
                                                                  "contributions"]))
        for output in body["outputs"]:
            with self.subTest(output=output.get("name")):
                self.assertTrue(all(isinstance(v, (int, float)) for v in output["data"]),
                                f"data is not a flat list of numbers: {output['data']!r:.200}")
        contributions = harness.find_output(body, "contributions")
        self.assertEqual(contributions["shape"], [3, 21])
        self.assertEqual(len(contributions["data"]), 63)

    def test_nested_and_flat_data_give_the_same_result(self):
        rows = self.rows[:4]
        flat = self.infer_ok(EXAMPLE, harness.infer_body(rows))
        nested = self.infer_ok(EXAMPLE, harness.infer_body(rows, nested=True))
        self.assertEqual(flat["outputs"], nested["outputs"])
        harness.assert_close(harness.output_array(nested, "probability", [4]),
                             self.expected(rows), 1e-6, "nested")

    def test_default_outputs_exclude_contributions(self):
        body = self.infer_ok(EXAMPLE, harness.infer_body(self.rows[:2]))
        self.assertEqual([o.get("name") for o in body["outputs"]], ["probability"])

    def test_default_outputs_are_every_non_contribution_output(self):
        body = self.infer_ok(TWIN, harness.infer_body(self.rows[:2]))
        self.assertEqual([o.get("name") for o in body["outputs"]], ["probability", "margin"])

    def test_selecting_contributions_returns_only_them(self):
        rows = self.rows[:2]
        body = self.infer_ok(EXAMPLE, harness.infer_body(rows, outputs=["contributions"]))
        self.assertEqual([o.get("name") for o in body["outputs"]], ["contributions"])
        harness.assert_close(harness.output_array(body, "contributions", [2, 21]),
                             self.expected(rows, pred_contribs=True), 1e-5, "contributions")

    def test_selecting_one_of_two_outputs(self):
        body = self.infer_ok(TWIN, harness.infer_body(self.rows[:2], outputs=["margin"]))
        self.assertEqual([o.get("name") for o in body["outputs"]], ["margin"])

    def test_unknown_output_is_400(self):
        response = self.client.infer(EXAMPLE, harness.infer_body(self.rows[:1],
                                                                 outputs=["nope"]))
        self.assert_error(response, 400)

    def test_parameters_are_accepted_and_ignored(self):
        request = harness.infer_body(self.rows[:1])
        request["parameters"] = {"priority": 3, "note": "x", "flag": True}
        request["inputs"][0]["parameters"] = {"content_type": "np"}
        body = self.infer_ok(EXAMPLE, request)
        harness.assert_close(harness.output_array(body, "probability", [1]),
                             self.expected(self.rows[:1]), 1e-6, "probability")

    def test_version_paths_route_to_that_version(self):
        rows = self.rows[:3]
        for version in (1, 2):
            body = self.infer_ok(TWIN, harness.infer_body(rows), version=version)
            self.assertEqual(body.get("model_version"), str(version))
            harness.assert_close(harness.output_array(body, "probability", [3]),
                                 twin_model(version).predict(rows), 1e-6, f"version {version}")

    def test_unversioned_infer_uses_the_highest_ready_version(self):
        rows = self.rows[:3]
        body = self.infer_ok(TWIN, harness.infer_body(rows))
        self.assertEqual(body.get("model_version"), "2")
        harness.assert_close(harness.output_array(body, "probability", [3]),
                             twin_model(2).predict(rows), 1e-6, "unversioned")

    def test_keep_alive_connection_is_reused(self):
        for _ in range(5):
            self.infer_ok(EXAMPLE, harness.infer_body(self.rows[:1]))
            self.assertEqual(self.client.get("/v2/health/live").status, 200)
        self.assertEqual(self.client.connections_opened, 1)

    # -- metrics ---------------------------------------------------------------------------------

    def test_metrics_has_the_documented_names_and_types(self):
        self.infer_ok(EXAMPLE, harness.infer_body(self.rows[:1]))
        response = self.client.get("/metrics")
        self.assertEqual(response.status, 200)
        self.assertTrue(response.header("Content-Type", "").startswith("text/plain"),
                        response.header("Content-Type"))
        metrics = harness.Metrics(response.text)
        expected_types = {
            "edgeloop_inference_requests_total": "counter",
            "edgeloop_inference_request_duration_seconds": "histogram",
            "edgeloop_inference_queue_duration_seconds": "histogram",
            "edgeloop_inference_batch_size": "histogram",
            "edgeloop_model_loaded": "gauge",
            "edgeloop_http_requests_total": "counter",
            "edgeloop_http_connections": "gauge",
            "edgeloop_http_connections_rejected_total": "counter",
        }
        for name, kind in expected_types.items():
            with self.subTest(metric=name):
                self.assertEqual(metrics.types.get(name), kind)
                suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
                for suffix in suffixes:
                    self.assertTrue(metrics.find(name + suffix),
                                    f"no {name}{suffix} sample in /metrics")
        self.assertIn("edgeloop_model_load_failures_total", metrics.types,
                      "edgeloop_model_load_failures_total is not declared")
        labels = metrics.find("edgeloop_inference_request_duration_seconds_count",
                              model=EXAMPLE, version="1")
        self.assertEqual(len(labels), 1, labels)

    def test_inference_counter_moves_by_the_exact_number_of_requests(self):
        before = self.server.metrics()
        for _ in range(7):
            self.infer_ok(EXAMPLE, harness.infer_body(self.rows[:1]))
        for _ in range(3):
            self.assert_error(self.client.infer(EXAMPLE, harness.infer_body(
                self.rows[:1], outputs=["nope"])), 400)
        self.assert_error(self.client.infer("no-such-model", harness.infer_body(self.rows[:1])),
                          404)
        after = self.server.metrics()

        def delta(name, **labels):
            return after.value(name, **labels) - before.value(name, **labels)

        requests = "edgeloop_inference_requests_total"
        self.assertEqual(delta(requests, model=EXAMPLE, version="1", code="200"), 7)
        self.assertEqual(delta(requests, model=EXAMPLE, code="400"), 3)
        self.assertEqual(delta(requests, model="_unknown_", code="404"), 1)
        self.assertEqual(delta(requests, model=EXAMPLE), 10)
        # The one /metrics scrape between the two snapshots counts as well.
        self.assertEqual(delta("edgeloop_http_requests_total", code="200"), 8)
        self.assertEqual(delta("edgeloop_http_requests_total", code="400"), 3)
        self.assertEqual(delta("edgeloop_http_requests_total", code="404"), 1)
        # Every successful single-row request ran exactly one row.
        self.assertEqual(delta("edgeloop_inference_batch_size_sum", model=EXAMPLE, version="1"),
                         7)

    def test_model_loaded_gauge(self):
        metrics = self.server.metrics()
        for model, version in ((EXAMPLE, "1"), (TWIN, "1"), (TWIN, "2"), (SPARE, "1")):
            with self.subTest(model=model, version=version):
                self.assertEqual(metrics.value("edgeloop_model_loaded", model=model,
                                               version=version), 1)

    # -- repository extension --------------------------------------------------------------------

    def test_repository_index(self):
        index = self.server.index()
        entries = {(e.get("name"), e.get("version")): e for e in index}
        for key in ((EXAMPLE, "1"), (TWIN, "1"), (TWIN, "2"), (SPARE, "1")):
            with self.subTest(entry=key):
                self.assertIn(key, entries, index)
                self.assertEqual(entries[key].get("state"), "READY")
                self.assertEqual(sorted(entries[key]), ["name", "reason", "state", "version"])
        self.assertEqual(len(index), 4, index)

    def test_repository_index_ready_only(self):
        index = self.server.index(ready_only=True)
        self.assertEqual(sorted((e.get("name"), e.get("version")) for e in index),
                         [(EXAMPLE, "1"), (SPARE, "1"), (TWIN, "1"), (TWIN, "2")])

    def load(self, model):
        response = self.client.post(f"/v2/repository/models/{model}/load", {})
        self.assertEqual(response.status, 200, response.body[:300])
        self.assertEqual(response.json, {})

    def unload(self, model):
        response = self.client.post(f"/v2/repository/models/{model}/unload", {})
        self.assertEqual(response.status, 200, response.body[:300])
        self.assertEqual(response.json, {})
        self.addCleanup(self.server.wait_model_ready, model)
        self.addCleanup(self.load, model)

    def test_unload_then_load(self):
        request = harness.infer_body(self.rows[:1])
        self.unload(SPARE)
        response = self.client.infer(SPARE, request)
        self.assertIn(response.status, (404, 503), response.body[:300])
        self.assert_error(response, response.status)
        entry = self.server.wait_state(SPARE, 1, "UNAVAILABLE", timeout=5)
        self.assertEqual(sorted(entry), ["name", "reason", "state", "version"])
        ready = self.client.get(f"/v2/models/{SPARE}/ready")
        self.assertEqual(ready.status, 503, ready.body[:300])
        self.assertIs(ready.json.get("ready"), False)
        self.assertEqual(self.server.metrics().value("edgeloop_model_loaded", model=SPARE), 0)
        self.assertNotIn((SPARE, "1"), [(e.get("name"), e.get("version"))
                                        for e in self.server.index(ready_only=True)])
        # Other models are untouched.
        self.infer_ok(EXAMPLE, request)

        self.load(SPARE)
        body = self.infer_ok(SPARE, request)
        self.assertEqual(body.get("model_version"), "1")
        self.assertEqual(self.server.index_entry(SPARE, 1).get("state"), "READY")

    def test_unloaded_model_stays_unloaded_across_scans(self):
        self.unload(SPARE)
        self.server.wait_state(SPARE, 1, "UNAVAILABLE", timeout=5)
        metrics = self.server.metrics()
        failures = metrics.value("edgeloop_model_load_failures_total", model=SPARE)
        # The subject: several repository scans pass without reloading the model.
        deadline = time.monotonic() + 4 * POLL_MS / 1000
        while time.monotonic() < deadline:
            self.assertEqual(self.server.index_entry(SPARE, 1).get("state"), "UNAVAILABLE")
            self.assertIn(self.client.infer(SPARE, harness.infer_body(self.rows[:1])).status,
                          (404, 503))
        self.assertEqual(self.server.metrics().value("edgeloop_model_load_failures_total",
                                                     model=SPARE), failures)

    def test_a_model_unloaded_on_purpose_keeps_the_server_ready(self):
        # docs/serve.md: a model unloaded through the repository API does not count against
        # readiness (the operator chose it); the model itself reports not ready.
        self.unload(SPARE)
        self.assertEqual(self.get_json("/v2/health/ready"), {"ready": True})
        response = self.client.get(f"/v2/models/{SPARE}/ready")
        self.assertEqual(response.status, 503, response.body[:300])
        self.assertIs(response.json.get("ready"), False)
        self.load(SPARE)
        self.assertEqual(self.get_json(f"/v2/models/{SPARE}/ready").get("ready"), True)

    def test_load_of_an_unknown_model_is_404(self):
        self.assert_error(self.client.post("/v2/repository/models/nope/load", {}), 404)

    def test_load_of_a_loaded_model_is_a_no_op(self):
        self.load(EXAMPLE)
        self.assertEqual(self.infer_ok(EXAMPLE, harness.infer_body(self.rows[:1]))
                         .get("model_version"), "1")

    # -- routing errors --------------------------------------------------------------------------

    def test_wrong_method_is_405_with_allow(self):
        cases = [
            ("GET", f"/v2/models/{EXAMPLE}/infer", "POST"),
            ("PUT", f"/v2/models/{EXAMPLE}/versions/1/infer", "POST"),
            ("POST", "/v2/health/live", "GET"),
            ("DELETE", "/v2/health/ready", "GET"),
            ("POST", "/v2", "GET"),
            ("POST", f"/v2/models/{EXAMPLE}", "GET"),
            ("POST", f"/v2/models/{EXAMPLE}/ready", "GET"),
            ("GET", "/v2/repository/index", "POST"),
            ("GET", f"/v2/repository/models/{EXAMPLE}/load", "POST"),
            ("PATCH", "/metrics", "GET"),
        ]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                response = self.client.request(method, path, body=b"{}")
                self.assert_error(response, 405, f"{method} {path}")
                allow = [m.strip() for m in response.header("Allow", "").split(",")]
                self.assertIn(allowed, allow, f"Allow: {response.header('Allow')!r}")
                self.assertNotIn(method, allow)

    def test_unknown_path_is_404(self):
        # ("GET", "/") redirects to the web app (/ui/); see test_webapp.py.
        for method, path in (("GET", "/v3"), ("GET", "/v2/nope"), ("GET", "/ui-nope"),
                             ("GET", f"/v2/models/{EXAMPLE}/bogus"),
                             ("POST", f"/v2/models/{EXAMPLE}/versions/1/infer/extra"),
                             ("GET", "/v2/health"), ("GET", "/metricsx")):
            with self.subTest(method=method, path=path):
                self.assert_error(self.client.request(method, path, body=b"{}"), 404)


if __name__ == "__main__":
    unittest.main()
