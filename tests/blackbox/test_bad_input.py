"""Bad input: invalid requests, broken repository entries, garbage and fuzzed traffic.

Every invalid request must get the documented status and a JSON body with an "error" string,
and the server must keep serving: after each case a good request still gets the right answer
and the process is alive.
"""
import copy
import json
import random
import unittest

import xgboost as xgb

import harness

EXAMPLE = "machine-failure"
OTHER = "other"
BROKEN = {
    # name: files of version 1
    "broken-yaml": {"model.yaml": "framework: xgboost\ninputs: [unclosed\n"},
    "bad-shape": None,  # filled in setUpClass: valid model file, input shape [20]
    "truncated": None,  # model.json cut in half
    "missing-file": None,  # model.yaml names a file that is not there
    "wrong-features": None,  # a 20-feature model declared with 21 features
}
BROKEN_FOR_LOAD = "broken-for-load"


def good_row():
    return harness.example_rows()[0]


_good_expected = []


def good_expected():
    if not _good_expected:
        _good_expected.append(harness.example_model().predict(
            xgb.DMatrix(good_row().reshape(1, -1))))
    return _good_expected[0]


def base_body():
    return harness.infer_body(good_row())


class ServingCheckMixin:
    """assert_still_serving(): the process lives and a good request gets the right answer."""

    def setUp(self):
        self.good = self.server.client()
        self.addCleanup(self.good.close)
        self.good_body = base_body()
        self.good_expected = good_expected()

    def assert_still_serving(self, context=""):
        self.server.assert_alive()
        response = self.good.infer(EXAMPLE, self.good_body)
        self.assertEqual(response.status, 200, f"after {context}: {response.body[:300]!r}")
        harness.assert_close(harness.output_array(response.json, "probability", [1]),
                             self.good_expected, 1e-6, f"good request after {context}")


class BadRequestTest(ServingCheckMixin, harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        repo = harness.Repository()
        repo.add_example(EXAMPLE, 1)
        trained = harness.train("binary:logistic", seed=31, rounds=10, max_depth=3)
        repo.add_version(OTHER, 1, trained)
        repo.add_raw_version("broken-yaml", 1, BROKEN["broken-yaml"])
        repo.add_version("bad-shape", 1, trained, yaml_text=harness.model_yaml(
            "model.json", harness.default_outputs(trained.objective)).replace(
                "shape: [-1, 20]", "shape: [20]"))
        with open(trained.file("json"), "rb") as f:
            model_bytes = f.read()
        repo.add_raw_version("truncated", 1, {
            "model.json": model_bytes[:len(model_bytes) // 2],
            "model.yaml": harness.model_yaml("model.json",
                                             harness.default_outputs(trained.objective))})
        repo.add_raw_version("missing-file", 1, {
            "model.yaml": harness.model_yaml("absent.json",
                                             harness.default_outputs(trained.objective))})
        repo.add_version("wrong-features", 1, trained, yaml_text=harness.model_yaml(
            "model.json", [("probability", [-1], "prediction")], num_features=21))
        repo.add_raw_version(BROKEN_FOR_LOAD, 1, BROKEN["broken-yaml"])
        cls.server = cls.start_class_server(repo)
        cls.server.wait_model_ready(EXAMPLE, timeout=30)
        cls.server.wait_model_ready(OTHER, timeout=30)
        for name in list(BROKEN) + [BROKEN_FOR_LOAD]:
            cls.server.wait_state(name, 1, "UNAVAILABLE", timeout=30)

    def post(self, body, path=None, status=400, what=""):
        """POSTs `body` (bytes or JSON value) on a fresh connection and checks the error."""
        client = self.server.client()
        try:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            response = client.post(path or harness.infer_path(EXAMPLE), body)
        finally:
            client.close()
        self.assert_error(response, status, what or repr(body[:120]))
        self.assert_still_serving(what or repr(body[:120]))
        return response

    def with_input(self, **changes):
        """The good request with fields of its input replaced (None removes the field)."""
        body = copy.deepcopy(self.good_body)
        for key, value in changes.items():
            if value is None:
                del body["inputs"][0][key]
            else:
                body["inputs"][0][key] = value
        return body

    # -- body structure --------------------------------------------------------------------------

    def test_malformed_json(self):
        good = json.dumps(self.good_body).encode()
        special = copy.deepcopy(self.good_body)
        special["inputs"][0]["data"][0] = "__special__"
        special = json.dumps(special).encode()
        cases = [b'{"inputs": [', b"{inputs: []}", b"{'inputs': []}",
                 b'{"inputs":[{"name":"features",}]}', good + b" xyz", good + b"}",
                 good.replace(b"[", b"(", 1), b"\xff\xfe\x00{", b"{" * 100000,
                 b"[" * 100000, special.replace(b'"__special__"', b"NaN"),
                 special.replace(b'"__special__"', b"Infinity"),
                 special.replace(b'"__special__"', b"0x10"),
                 special.replace(b'"__special__"', b"+1"),
                 special.replace(b'"__special__"', b".5"),
                 good.replace(b'"features"', b'"feat\xffures"')]
        for body in cases:
            with self.subTest(body=body[:60]):
                self.post(body)

    def test_body_that_is_not_an_object(self):
        for body in (b"[]", b'"text"', b"42", b"null", b"true", b"[{}]"):
            with self.subTest(body=body):
                self.post(body)

    def test_empty_body(self):
        self.post(b"")

    def test_missing_or_invalid_inputs(self):
        cases = {
            "no inputs": {},
            "only an id": {"id": "x"},
            "only outputs": {"outputs": [{"name": "probability"}]},
            "inputs is an object": {"inputs": {"name": "features"}},
            "inputs is a string": {"inputs": "features"},
            "inputs is empty": {"inputs": []},
            "inputs holds a number": {"inputs": [1]},
            "inputs is null": {"inputs": None},
        }
        for what, body in cases.items():
            with self.subTest(what):
                self.post(body, what=what)

    def test_input_missing_a_field(self):
        for field in ("name", "datatype", "shape", "data"):
            with self.subTest(missing=field):
                self.post(self.with_input(**{field: None}), what=f"no {field}")

    def test_duplicate_input(self):
        body = copy.deepcopy(self.good_body)
        body["inputs"].append(copy.deepcopy(body["inputs"][0]))
        self.post(body)

    def test_unknown_input_name(self):
        self.post(self.with_input(name="feature"))
        self.post(self.with_input(name=""))

    def test_wrong_datatype(self):
        values = self.good_body["inputs"][0]["data"]
        cases = {
            "INT32": [int(v) for v in values],
            "INT64": [int(v) for v in values],
            "FP64": values,
            "FP16": values,
            "BYTES": [str(v) for v in values],
            "BOOL": [True] * 20,
        }
        for datatype, data in cases.items():
            with self.subTest(datatype=datatype):
                self.post(self.with_input(datatype=datatype, data=data), what=datatype)

    def test_unknown_datatype_name(self):
        for datatype in ("FLOAT", "fp32", "Fp32", "FP32 ", "", "FP128"):
            with self.subTest(datatype=datatype):
                self.post(self.with_input(datatype=datatype), what=repr(datatype))
        self.post(self.with_input(datatype=32), what="numeric datatype")

    def test_data_count_does_not_match_shape(self):
        values = self.good_body["inputs"][0]["data"]
        cases = {
            "19 values": ([1, 20], values[:19]),
            "21 values": ([1, 20], values + [1.0]),
            "2 rows declared, 1 sent": ([2, 20], values),
            "1 row declared, 2 sent": ([1, 20], values + values),
            "no values": ([1, 20], []),
            "scalar data": ([1, 20], 1.0),
        }
        for what, (shape, data) in cases.items():
            with self.subTest(what):
                self.post(self.with_input(shape=shape, data=data), what=what)

    def test_shape_that_does_not_fit_the_model(self):
        values = self.good_body["inputs"][0]["data"]
        cases = {
            "[1, 19]": ([1, 19], values[:19]),
            "[20]": ([20], values),
            "[1, 20, 1]": ([1, 20, 1], values),
            "[20, 1]": ([20, 1], values),
            "[2, 10]": ([2, 10], values),
            "[]": ([], values),
        }
        for what, (shape, data) in cases.items():
            with self.subTest(shape=what):
                self.post(self.with_input(shape=shape, data=data), what=what)

    def test_negative_huge_and_non_integer_shape_dims(self):
        values = self.good_body["inputs"][0]["data"]
        cases = {
            "[-1, 20]": [-1, 20],
            "[1, -20]": [1, -20],
            "[-20, -1]": [-20, -1],
            "[2^40, 20]": [2 ** 40, 20],
            "[2^62, 2^62]": [2 ** 62, 2 ** 62],
            "[2^63-1, 20]": [2 ** 63 - 1, 20],
            "[2^64, 20]": [2 ** 64, 20],
            "[1e3, 20]": [1e3, 20],
            "[1.5, 20]": [1.5, 20],
            "['1', 20]": ["1", 20],
            "[null, 20]": [None, 20],
            "shape is a string": "1,20",
            "shape is a number": 20,
        }
        for what, shape in cases.items():
            with self.subTest(shape=what):
                self.post(self.with_input(shape=shape, data=values), what=what)

    def test_non_numeric_data(self):
        values = self.good_body["inputs"][0]["data"]
        cases = {
            "string numbers": [str(v) for v in values],
            "one string": values[:19] + ["1.0"],
            "a boolean": values[:19] + [True],
            "an object": values[:19] + [{}],
            "an empty list": values[:19] + [[]],
            "data is a string": "1,2,3",
            "data is an object": {"a": 1},
            "data is null": None,
        }
        for what, data in cases.items():
            if data is None:
                body = self.with_input()
                body["inputs"][0]["data"] = None
            else:
                body = self.with_input(data=data)
            with self.subTest(what):
                self.post(body, what=what)

    def test_unknown_model_is_404(self):
        for model in ("nope", "Machine-Failure", ".hidden", "machine-failure2"):
            with self.subTest(model=model):
                self.post(self.good_body, path=harness.infer_path(model), status=404)

    def test_unknown_version_is_404(self):
        for version in ("99", "2"):
            with self.subTest(version=version):
                self.post(self.good_body, path=harness.infer_path(EXAMPLE, version), status=404)

    def test_malformed_version_is_404(self):
        # docs/serve.md: 404 for an unknown model, version or path; none of these can name one.
        for version in ("0", "abc", "-1", "01"):
            with self.subTest(version=version):
                self.post(self.good_body, path=harness.infer_path(EXAMPLE, version), status=404)

    def test_unknown_output_is_400(self):
        body = dict(self.good_body, outputs=[{"name": "nope"}])
        self.post(body)
        body = dict(self.good_body, outputs=[{"name": "probability"}, {"name": "nope"}])
        self.post(body)

    def test_invalid_outputs_field(self):
        for outputs in ("probability", {"name": "probability"}, [{}], [{"name": 1}], [1]):
            with self.subTest(outputs=outputs):
                self.post(dict(self.good_body, outputs=outputs), what=repr(outputs))

    # -- broken repository entries ---------------------------------------------------------------

    def test_broken_versions_are_unavailable_with_a_reason(self):
        metrics = self.server.metrics()
        for name in BROKEN:
            with self.subTest(model=name):
                entry = self.server.index_entry(name, 1)
                self.assertIsNotNone(entry, f"{name}/1 not in the index")
                self.assertEqual(entry.get("state"), "UNAVAILABLE")
                self.assertIsInstance(entry.get("reason"), str)
                self.assertTrue(entry["reason"].strip(), entry)
                self.assertEqual(metrics.value("edgeloop_model_load_failures_total", model=name,
                                               version="1"), 1)

    def test_other_models_serve_beside_broken_ones(self):
        body = self.good.infer(OTHER, self.good_body)
        self.assertEqual(body.status, 200, body.body[:300])
        self.assertEqual(body.json.get("model_version"), "1")
        self.assert_still_serving("a request to another model")

    def test_broken_model_is_not_ready_and_not_served(self):
        for name in BROKEN:
            with self.subTest(model=name):
                ready = self.good.get(f"/v2/models/{name}/ready")
                self.assertEqual(ready.status, 503, ready.body[:300])
                self.assertIs(ready.json.get("ready"), False)
                response = self.good.infer(name, self.good_body)
                self.assertIn(response.status, (404, 503), response.body[:300])
                self.assert_error(response, response.status)
        self.assert_still_serving("requests to broken models")

    def test_server_is_not_ready_while_a_model_has_no_ready_version(self):
        response = self.good.get("/v2/health/ready")
        self.assertEqual(response.status, 503, response.body[:300])
        self.assertIs(response.json.get("ready"), False)

    def test_loading_a_broken_model_is_400_with_the_reason(self):
        response = self.good.post(f"/v2/repository/models/{BROKEN_FOR_LOAD}/load", {})
        self.assert_error(response, 400)
        self.assertEqual(self.server.index_entry(BROKEN_FOR_LOAD, 1).get("state"), "UNAVAILABLE")
        self.assert_still_serving("loading a broken model")


GARBAGE_SEED = 7
FUZZ_SEED = 20261127
FUZZ_ROUNDS = 500


def interesting_tokens():
    return [b"null", b"true", b"-0", b"1e999", b"-1e999", b'"x"', b"[]", b"{}", b"[[[]]]",
            b"1" * 400, b'"\\u0000"', b'"\xc3\x28"', b"0.1e-400", b"-", b"9" * 30, b'"FP32"',
            b'"features"', b'"probability"', b'"contributions"', b"[1,20]", b"[-1,20]"]


def mutate_body(rng, body):
    """1-3 random edits of a JSON body (byte flips, inserts, deletes, token swaps, cuts)."""
    data = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(7)
        position = rng.randrange(len(data) + 1) if data else 0
        if choice == 0 and data:
            data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1:
            data[position:position] = bytes([rng.choice(b'{}[]",:0-.eE \\nul\x00\xff')])
        elif choice == 2 and data:
            end = min(len(data), position + rng.randint(1, 40))
            del data[position:end]
        elif choice == 3 and data:
            end = min(len(data), position + rng.randint(1, 60))
            data[position:position] = data[position:end]
        elif choice == 4:
            del data[position:]
        else:
            text = bytes(data)
            for token in (b"FP32", b"features", b"shape", b"data", b"inputs", b"name",
                          b"datatype", b"outputs"):
                if token in text and rng.random() < 0.3:
                    text = text.replace(token, rng.choice([b"fp32", b"feature", b"Shape",
                                                           token + token, b""]), 1)
            numbers = [i for i in range(len(text)) if text[i:i + 1].isdigit()]
            if numbers:
                at = rng.choice(numbers)
                text = text[:at] + rng.choice(interesting_tokens()) + text[at + 1:]
            data = bytearray(text)
    return bytes(data)


def mutate_head(rng, method, path):
    """A mutated method and path (no CR or LF, so the request stays framed)."""
    if rng.random() < 0.4:
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "P0ST",
                             "TRACE", "CONNECT", "post", "GETT", "X" * 300])
    if rng.random() < 0.7:
        pieces = ["%00", "%2e%2e", "../", "//", "?a=1", "#x", "%", "\x7f", "\xe9", " ", "\t",
                  "/versions/1", "/versions/", "/ready", "/infer", "A" * 5000, ";", "*"]
        at = rng.randrange(len(path) + 1)
        path = path[:at] + rng.choice(pieces) + path[at:]
    return method, path


class RobustnessTest(ServingCheckMixin, harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        repo = harness.Repository()
        repo.add_example(EXAMPLE, 1)
        cls.server = cls.start_class_server(repo, ["--header-timeout-ms", "1500",
                                                   "--max-header-bytes", "4096",
                                                   "--max-body-bytes", "65536"])
        cls.server.wait_ready(timeout=30)

    def exchange(self, data, what, allowed):
        """Sends raw bytes; the answer must be a status in `allowed` with a JSON error, or a
        closed connection when None is in `allowed`."""
        response = harness.raw_exchange(self.server.port, data, timeout=6)
        if response is None:
            self.assertIn(None, allowed, f"{what}: connection closed without a response")
        else:
            self.assertIn(response.status, allowed, f"{what}: {response.body[:200]!r}")
            self.assert_error(response, response.status, what)
        self.assert_still_serving(what)
        return response

    def test_garbage_bytes(self):
        rng = random.Random(GARBAGE_SEED)
        noise = bytes(rng.randrange(256) for _ in range(2000))
        terminated = {
            "random bytes": noise + b"\r\n\r\n",
            "NUL bytes": b"\x00" * 100 + b"\r\n\r\n",
            "no request line": b"GET\r\n\r\n",
            "header without a colon": b"GET /v2 HTTP/1.1\r\nBad Header Line\r\n\r\n",
            "negative Content-Length":
                b"POST /v2/models/machine-failure/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: -5\r\n\r\n",
            "non-numeric Content-Length":
                b"POST /v2/models/machine-failure/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: abc\r\n\r\n",
            "two different Content-Lengths":
                b"POST /v2/models/machine-failure/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 5\r\nContent-Length: 7\r\n\r\n{}{}{}{",
            "bad chunk size":
                b"POST /v2/models/machine-failure/infer HTTP/1.1\r\nHost: x\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            "request line with NUL": b"GET /v2\x00/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/0.9 style": b"GET /v2/health/live\r\n\r\n",
        }
        for what, data in terminated.items():
            allowed = (400, 501, None) if "chunk" in what else (400, None)
            with self.subTest(what):
                self.exchange(data, what, allowed)
        unterminated = {
            "TLS client hello": bytes.fromhex("16030100a5010000a10303") + noise[:150],
            "blank lines": b"\r\n" * 50,
            "SSH banner": b"SSH-2.0-OpenSSH_9.2\r\n",
        }
        for what, data in unterminated.items():
            with self.subTest(what):
                self.exchange(data, what, (400, 408, None))

    def test_fuzzed_requests(self):
        rng = random.Random(FUZZ_SEED)
        good = json.dumps(self.good_body).encode()
        with_contributions = json.dumps(dict(self.good_body,
                                             outputs=[{"name": "contributions"}])).encode()
        templates = [
            ("POST", harness.infer_path(EXAMPLE), good),
            ("POST", harness.infer_path(EXAMPLE, 1), with_contributions),
            ("POST", "/v2/repository/index", b"{}"),
            ("GET", f"/v2/models/{EXAMPLE}", b""),
            ("POST", f"/v2/repository/models/{EXAMPLE}/load", b"{}"),
        ]
        counts = {}
        for round_number in range(FUZZ_ROUNDS):
            method, path, body = rng.choice(templates)
            head_mutated = rng.random() < 0.25
            if head_mutated:
                method, path = mutate_head(rng, method, path)
            if body and (not head_mutated or rng.random() < 0.3):
                body = mutate_body(rng, body)
            data = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
            what = f"fuzz round {round_number}: {data[:300]!r}"
            try:
                response = harness.raw_exchange(self.server.port, data, timeout=6)
            except Exception as e:
                self.server.assert_alive()
                self.fail(f"{what}: {e!r}")
            if response is None:
                self.assertTrue(head_mutated, f"{what}: closed without a response")
                counts["closed"] = counts.get("closed", 0) + 1
                continue
            counts[response.status] = counts.get(response.status, 0) + 1
            self.assertNotEqual(response.status, 500, f"{what}: {response.body[:300]!r}")
            self.assertLess(response.status, 600, what)
            if response.status >= 300:
                self.assert_error(response, response.status, what)
            else:
                self.assertIsInstance(response.json, (dict, list), what)
            if not head_mutated:
                self.assertIn(response.status, (200, 400, 404, 405), what)
            if round_number % 50 == 0:
                self.assert_still_serving(what)
        self.assert_still_serving("the fuzz loop")
        self.assertGreater(counts.get(400, 0), 0, f"the fuzzer made no invalid request: {counts}")
        # No connection leaks: only the scraping connection stays open.
        harness.wait_until(
            lambda: self.server.metrics().value("edgeloop_http_connections") <= 2, 5,
            "edgeloop_http_connections to fall back to the open clients")


if __name__ == "__main__":
    unittest.main()
