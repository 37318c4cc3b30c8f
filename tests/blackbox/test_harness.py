"""Self-tests of harness.py that need no edgeloop binary.

A small stand-in server (Python's http.server, written to a temp file) exercises process start,
the listening-line handshake, the HTTP clients and the crash detection; the model and
repository helpers are checked against XGBoost directly.
"""
import json
import os
import sys
import textwrap
import unittest

import numpy as np

import harness

FAKE_SERVER = textwrap.dedent(r'''
    import json, signal, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    args = sys.argv[1:]
    mode = "json" if "--log-format" in args and args[args.index("--log-format") + 1] == "json" \
        else "text"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, body, content_type="application/json"):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/v2/health/ready":
                self.reply(200, {"ready": True})
            elif self.path == "/metrics":
                self.reply(200, "# TYPE edgeloop_http_requests_total counter\n"
                                'edgeloop_http_requests_total{code="200"} 7\n', "text/plain")
            elif self.path == "/crash":
                self.reply(200, {})
                sys.stderr.write("crashing now\n")
                sys.stderr.flush()
                import os
                os._exit(3)
            else:
                self.reply(404, {"error": "unknown path"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path == "/v2/repository/index":
                self.reply(200, [{"name": "m", "version": "1", "state": "READY", "reason": ""}])
            else:
                self.reply(200, {"echo": json.loads(body or b"null")})

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
    if mode == "json":
        sys.stderr.write(json.dumps({"msg": "listening", "address": "127.0.0.1", "port": port})
                         + "\n")
    else:
        sys.stderr.write(f"2026-01-01 info listening address=127.0.0.1 port={port}\n")
    sys.stderr.flush()
    server.serve_forever()
    sys.stderr.write("bye\n")
''')


def fake_command():
    path = os.path.join(harness.session_dir(), "fake_server.py")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(FAKE_SERVER)
    return [sys.executable, path]


class FakeServerTest(unittest.TestCase):
    def start(self, global_flags=()):
        server = harness.Server(harness.Repository(), command=fake_command(),
                                global_flags=global_flags, name="fake")
        self.addCleanup(server.stop)
        return server.start()

    def test_reads_port_from_text_listening_line(self):
        server = self.start()
        self.assertGreater(server.port, 0)
        server.wait_ready()
        self.assertEqual(server.admin.get("/v2/health/ready").json, {"ready": True})

    def test_reads_port_from_json_listening_line(self):
        server = self.start(global_flags=["--log-format", "json"])
        self.assertEqual(server.admin.get("/v2/health/ready").status, 200)

    def test_client_keeps_the_connection_alive(self):
        server = self.start()
        client = server.client()
        self.addCleanup(client.close)
        for i in range(5):
            response = client.post("/echo", {"i": i})
            self.assertEqual(response.json, {"echo": {"i": i}})
        self.assertEqual(client.connections_opened, 1)

    def test_raw_exchange_and_metrics_and_index(self):
        server = self.start()
        response = harness.raw_exchange(server.port, harness.build_request("GET", "/nope"))
        self.assertEqual(response.status, 404)
        self.assertEqual(response.json, {"error": "unknown path"})
        self.assertEqual(server.metrics().value("edgeloop_http_requests_total", code="200"), 7)
        self.assertEqual(server.index_entry("m", 1)["state"], "READY")

    def test_stop_reports_a_crash_with_the_stderr_tail(self):
        server = harness.Server(harness.Repository(), command=fake_command(), name="fake")
        server.start()
        server.admin.get("/crash")
        harness.wait_until(lambda: not server.alive(), 10, "the fake server to exit")
        client = server.client()
        with self.assertRaises(AssertionError) as caught:
            client.get("/v2/health/live")
        self.assertIn("died (exit code 3) during a request", str(caught.exception))
        with self.assertRaises(AssertionError) as caught:
            server.stop()
        self.assertIn("died before it was stopped", str(caught.exception))
        self.assertIn("crashing now", str(caught.exception))

    def test_stop_terminates_cleanly(self):
        server = harness.Server(harness.Repository(), command=fake_command(), name="fake")
        server.start()
        self.assertEqual(server.stop(), 0)
        self.assertIn("bye", server.stderr_lines())

    def test_wait_for_listening_fails_when_the_process_exits(self):
        server = harness.Server(harness.Repository(), command=[sys.executable, "-c",
                                                               "import sys; sys.exit(2)"])
        with self.assertRaises(AssertionError) as caught:
            server.start(timeout=10)
        self.assertIn("exit code 2", str(caught.exception))


class HelperTest(unittest.TestCase):
    def test_wait_until_times_out_with_message(self):
        with self.assertRaises(AssertionError) as caught:
            harness.wait_until(lambda: 0, 0.05, "nothing")
        self.assertIn("nothing", str(caught.exception))

    def test_trained_models_match_their_saved_files(self):
        for objective in ("binary:logistic", "multi:softprob", "reg:squarederror"):
            trained = harness.train(objective)
            self.assertIs(trained, harness.train(objective))
            x = harness.make_features(50, 3, nan_fraction=0.1)
            in_memory = trained.booster.predict(harness.xgb.DMatrix(x, missing=np.nan))
            for fmt in ("json", "ubj"):
                np.testing.assert_array_equal(trained.predict(x, fmt=fmt), in_memory)
            self.assertTrue(trained.split_conditions())

    def test_repository_layout(self):
        repo = harness.Repository()
        trained = harness.train("binary:logistic")
        repo.add_version("m", 1, trained, fmt="ubj", backend="capi",
                         batching={"max_batch_size": 8})
        repo.set_policy("m", "{latest: 2}")
        repo.add_example("ex", 3)
        self.assertEqual(sorted(os.listdir(repo.path("m", 1))), ["model.ubj", "model.yaml"])
        with open(repo.path("m", 1, "model.yaml")) as f:
            text = f.read()
        for expected in ("framework: xgboost", "backend: capi", "model_file: model.ubj",
                         "shape: [-1, 20]", "kind: contributions", "max_batch_size: 8"):
            self.assertIn(expected, text)
        with open(repo.path("m", "serving.yaml")) as f:
            self.assertEqual(f.read(), "version_policy: {latest: 2}\n")
        self.assertTrue(os.path.isfile(repo.path("ex", 3, "model.json")))

    def test_infer_body_and_output_array(self):
        rows = np.array([[1.5, np.nan], [0.1, -2.0]], dtype=np.float32)
        body = harness.infer_body(rows, outputs=["p"], request_id="x")
        self.assertEqual(body["inputs"][0]["shape"], [2, 2])
        self.assertEqual(body["inputs"][0]["data"], [1.5, None, float(np.float32(0.1)), -2.0])
        self.assertEqual(body["outputs"], [{"name": "p"}])
        nested = harness.infer_body(rows, nested=True)
        self.assertEqual(nested["inputs"][0]["data"][1], [float(np.float32(0.1)), -2.0])
        response = {"outputs": [{"name": "p", "datatype": "FP32", "shape": [2, 2],
                                 "data": [[1, 2], [3, 4]]}]}
        np.testing.assert_array_equal(harness.output_array(response, "p", [2, 2]),
                                      [[1, 2], [3, 4]])
        with self.assertRaises(AssertionError):
            harness.output_array(response, "p", [4])

    def test_assert_close(self):
        harness.assert_close([1.0, 5.0], [1.0 + 5e-7, 5.0 + 4e-6], 1e-6)
        with self.assertRaises(AssertionError):
            harness.assert_close([1.0], [1.0 + 2e-6], 1e-6)
        with self.assertRaises(AssertionError):
            harness.assert_close([float("nan")], [1.0], 1e-6)

    def test_metrics_parser(self):
        metrics = harness.Metrics(textwrap.dedent('''\
            # HELP edgeloop_inference_requests_total Requests.
            # TYPE edgeloop_inference_requests_total counter
            edgeloop_inference_requests_total{model="a",version="1",code="200"} 3
            edgeloop_inference_requests_total{model="a",version="2",code="200"} 4
            edgeloop_inference_requests_total{code="400",model="a",version="1"} 1
            # TYPE edgeloop_inference_batch_size histogram
            edgeloop_inference_batch_size_bucket{model="a",version="1",le="1"} 2
            edgeloop_inference_batch_size_bucket{model="a",version="1",le="+Inf"} 5
            edgeloop_inference_batch_size_sum{model="a",version="1"} 9
            edgeloop_http_connections 2
            weird{label="a \\"quoted\\" value"} 1.5e3
            '''))
        self.assertEqual(metrics.value("edgeloop_inference_requests_total", model="a"), 8)
        self.assertEqual(metrics.value("edgeloop_inference_requests_total", code="200"), 7)
        self.assertEqual(metrics.value("edgeloop_inference_requests_total", model="b"), 0)
        self.assertEqual(metrics.bucket("edgeloop_inference_batch_size", 1.0, model="a"), 2)
        self.assertEqual(metrics.bucket("edgeloop_inference_batch_size", float("inf")), 5)
        self.assertEqual(metrics.types["edgeloop_inference_batch_size"], "histogram")
        self.assertEqual(metrics.value("edgeloop_http_connections"), 2)
        self.assertEqual(metrics.find("weird")[0][1]["label"], 'a "quoted" value')
        with self.assertRaises(AssertionError):
            harness.Metrics("not a metric line at all {\n")

    def test_listening_port(self):
        self.assertEqual(harness.listening_port("I listening address=127.0.0.1 port=4242"), 4242)
        self.assertEqual(harness.listening_port(
            json.dumps({"msg": "listening", "address": "127.0.0.1", "port": 99})), 99)
        self.assertIsNone(harness.listening_port("loading model port=3"))
        self.assertIsNone(harness.listening_port('{"msg":"loaded","port":1}'))

    def test_read_response_chunked(self):
        import socket
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        right.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        response, rest = harness.read_response(left)
        self.assertEqual((response.status, response.body), (200, b"abcde"))
        response, rest = harness.read_response(left, buffered=rest)
        self.assertEqual(response.status, 204)
        right.close()
        with self.assertRaises(harness.ConnectionClosed):
            harness.read_response(left, buffered=rest)


if __name__ == "__main__":
    unittest.main()
