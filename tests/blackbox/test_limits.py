"""Connection and size limits: body and header sizes (413, 431), slow clients (408), idle
keep-alive connections, and --max-connections (503).

The slow-client tests wait in real time because time is their subject; the flags keep those
waits short (1.5 s timeouts).
"""
import json
import select
import threading
import time
import unittest

import xgboost as xgb

import harness

EXAMPLE = "machine-failure"
MAX_BODY = 4096
MAX_HEADER = 4096
TIMEOUT_MS = 1500
# How much later than the configured timeout an answer may come, and how much earlier not.
SLACK_S = 2.0
EARLY_S = 0.1


def padded_body(size):
    """A valid single-row inference request of exactly `size` bytes (trailing whitespace)."""
    body = json.dumps(harness.infer_body(harness.example_rows()[0])).encode()
    assert len(body) <= size, len(body)
    return body + b" " * (size - len(body))


class Background:
    """A thread that sends good requests in a loop and records (status, latency)."""

    def __init__(self, port):
        self.port = port
        self.results = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(harness.scaled(10))

    def _run(self):
        client = harness.Client(self.port, timeout=5)
        body = harness.infer_body(harness.example_rows()[1])
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                response = client.infer(EXAMPLE, body)
                self.results.append((response.status, time.monotonic() - start))
            except Exception as e:
                self.errors.append(repr(e))
                client.close()
        client.close()


class LimitsTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        repo = harness.Repository()
        repo.add_example(EXAMPLE, 1)
        cls.server = cls.start_class_server(repo, [
            "--max-body-bytes", str(MAX_BODY), "--max-header-bytes", str(MAX_HEADER),
            "--header-timeout-ms", str(TIMEOUT_MS), "--body-timeout-ms", str(TIMEOUT_MS),
            "--idle-timeout-ms", str(TIMEOUT_MS)])
        cls.server.wait_ready(timeout=30)
        cls.expected = harness.example_model().predict(
            xgb.DMatrix(harness.example_rows()[:1]))

    def assert_still_serving(self, context):
        self.server.assert_alive()
        client = self.server.client()
        try:
            response = client.infer(EXAMPLE, harness.infer_body(harness.example_rows()[0]))
        finally:
            client.close()
        self.assertEqual(response.status, 200, f"after {context}: {response.body[:200]!r}")
        harness.assert_close(harness.output_array(response.json, "probability", [1]),
                             self.expected, 1e-6, f"after {context}")

    def send(self, data, timeout=5.0):
        response = harness.raw_exchange(self.server.port, data, timeout)
        self.assertIsNotNone(response, "connection closed without a response")
        return response

    # -- sizes -----------------------------------------------------------------------------------

    def test_body_at_the_limit_is_accepted(self):
        response = self.send(harness.build_request("POST", harness.infer_path(EXAMPLE),
                                                   padded_body(MAX_BODY)))
        self.assertEqual(response.status, 200, response.body[:200])
        harness.assert_close(harness.output_array(response.json, "probability", [1]),
                             self.expected, 1e-6, "probability")

    def test_body_one_byte_over_the_limit_is_413(self):
        response = self.send(harness.build_request("POST", harness.infer_path(EXAMPLE),
                                                   padded_body(MAX_BODY + 1)))
        self.assert_error(response, 413)
        self.assert_still_serving("a 413")

    def test_announced_huge_body_is_413_without_waiting_for_it(self):
        data = (f"POST {harness.infer_path(EXAMPLE)} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: 100000000\r\n\r\n").encode()
        start = time.monotonic()
        response = self.send(data + b'{"inputs": [')
        elapsed = time.monotonic() - start
        self.assert_error(response, 413)
        self.assertLess(elapsed, TIMEOUT_MS / 1000 - 0.5,
                        "413 came only after the body timeout")
        self.assert_still_serving("an announced huge body")

    def test_headers_under_the_limit_are_accepted(self):
        data = harness.build_request("GET", "/v2/health/live", headers={"X-Pad": "a" * 3000})
        response = self.send(data)
        self.assertEqual(response.status, 200, response.body[:200])
        self.assertEqual(response.json, {"live": True})

    def test_headers_over_the_limit_are_431(self):
        for what, headers in (
                ("one long header", {"X-Pad": "a" * (MAX_HEADER + 100)}),
                ("many headers", {f"X-Pad-{i}": "b" * 40 for i in range(150)}),
                ("long request target", None)):
            with self.subTest(what):
                if headers is None:
                    data = harness.build_request("GET", "/v2/health/live?" + "q" * MAX_HEADER * 2)
                else:
                    data = harness.build_request("GET", "/v2/health/live", headers=headers)
                response = self.send(data)
                if what == "long request target":
                    self.assertIn(response.status, (414, 431), response.body[:200])
                    self.assert_error(response, response.status)
                else:
                    self.assert_error(response, 431, what)
                self.assert_still_serving(what)

    # -- slow clients ----------------------------------------------------------------------------

    def test_slow_headers_get_408_while_others_are_served(self):
        request = harness.build_request("POST", harness.infer_path(EXAMPLE),
                                        harness.infer_body(harness.example_rows()[0]))
        sock = harness.connect(self.server.port)
        self.addCleanup(sock.close)
        with Background(self.server.port) as background:
            start = time.monotonic()
            sent = 0
            # One byte a second (the subject of the test) until the server answers.
            while sent < len(request) and time.monotonic() - start < harness.scaled(10):
                sock.sendall(request[sent:sent + 1])
                sent += 1
                readable, _, _ = select.select([sock], [], [], 1.0)
                if readable:
                    break
            response, _ = harness.read_response(sock, timeout=5)
            elapsed = time.monotonic() - start
        self.assert_error(response, 408)
        self.assertGreaterEqual(elapsed, TIMEOUT_MS / 1000 - EARLY_S, "408 came too early")
        self.assertLessEqual(elapsed, TIMEOUT_MS / 1000 + harness.scaled(SLACK_S),
                             "408 came too late")
        self.assertEqual(background.errors, [])
        self.assertGreaterEqual(len(background.results), 5, "the other client was starved")
        self.assertEqual({status for status, _ in background.results}, {200})
        self.assertLess(max(latency for _, latency in background.results),
                        harness.scaled(0.5), "the other client was held up")
        self.assert_still_serving("a slow client")

    def test_slow_body_gets_408(self):
        body = json.dumps(harness.infer_body(harness.example_rows()[0])).encode()
        request = harness.build_request("POST", harness.infer_path(EXAMPLE), body)
        head_size = request.index(b"\r\n\r\n") + 4
        sock = harness.connect(self.server.port)
        self.addCleanup(sock.close)
        with Background(self.server.port) as background:
            sock.sendall(request[:head_size + 50])
            start = time.monotonic()
            response, _ = harness.read_response(sock, timeout=TIMEOUT_MS / 1000 + SLACK_S + 2)
            elapsed = time.monotonic() - start
        self.assert_error(response, 408)
        self.assertGreaterEqual(elapsed, TIMEOUT_MS / 1000 - EARLY_S, "408 came too early")
        self.assertLessEqual(elapsed, TIMEOUT_MS / 1000 + harness.scaled(SLACK_S),
                             "408 came too late")
        self.assertEqual(background.errors, [])
        self.assertEqual({status for status, _ in background.results}, {200})
        self.assert_still_serving("a slow body")

    def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(self):
        sock = harness.connect(self.server.port)
        self.addCleanup(sock.close)
        sock.sendall(harness.build_request("GET", "/v2/health/live"))
        response, rest = harness.read_response(sock)
        self.assertEqual(response.status, 200)
        self.assertNotEqual((response.header("Connection") or "").lower(), "close")
        self.assertEqual(rest, b"")
        waited = harness.wait_closed(sock, TIMEOUT_MS / 1000 + SLACK_S + 2)
        self.assertGreaterEqual(waited, TIMEOUT_MS / 1000 - EARLY_S, "closed too early")
        self.assertLessEqual(waited, TIMEOUT_MS / 1000 + harness.scaled(SLACK_S),
                             "closed too late")

    def test_busy_keep_alive_connection_is_not_closed(self):
        client = self.server.client()
        self.addCleanup(client.close)
        start = time.monotonic()
        # Requests every 0.2 s for longer than the idle timeout keep the connection open.
        while time.monotonic() - start < TIMEOUT_MS / 1000 + 0.5:
            self.assertEqual(client.get("/v2/health/live").status, 200)
            time.sleep(0.2)
        self.assertEqual(client.connections_opened, 1)


MAX_CONNECTIONS = 3


class MaxConnectionsTest(harness.ServerTestCase):
    def test_connections_beyond_the_limit_get_503_and_are_closed(self):
        repo = harness.Repository()
        repo.add_example(EXAMPLE, 1)
        server = self.start_server(repo, ["--max-connections", str(MAX_CONNECTIONS)])
        server.wait_ready(timeout=30)
        server.close_admin()
        rejected = 0
        live = harness.build_request("GET", "/v2/health/live")

        def open_accepted():
            """A connection on which a request succeeded (retrying while the server still
            counts a closed one); counts the rejections seen."""
            nonlocal rejected
            deadline = time.monotonic() + harness.scaled(5)
            while True:
                sock = harness.connect(server.port)
                sock.sendall(live)
                try:
                    response, _ = harness.read_response(sock)
                except harness.ConnectionClosed:
                    response = None
                if response is not None and response.status == 200:
                    return sock
                sock.close()
                if response is not None and response.status == 503:
                    rejected += 1
                self.assertLess(time.monotonic(), deadline,
                                f"no connection accepted; last {response!r}")

        held = [open_accepted() for _ in range(MAX_CONNECTIONS)]
        self.addCleanup(lambda: [s.close() for s in held])

        extra = harness.connect(server.port)
        self.addCleanup(extra.close)
        # The server may answer 503 at once or only after reading a request; sending only
        # when nothing came first keeps a reset from racing the early answer.
        if not select.select([extra], [], [], 0.5)[0]:
            try:
                extra.sendall(live)
            except (BrokenPipeError, ConnectionResetError):
                pass
        response, _ = harness.read_response(extra)
        self.assert_error(response, 503)
        rejected += 1
        harness.wait_closed(extra, 5)

        # The held connections still work.
        for sock in held:
            sock.sendall(live)
            self.assertEqual(harness.read_response(sock)[0].status, 200)

        held.pop().close()
        scrape = open_accepted()
        self.addCleanup(scrape.close)
        scrape.sendall(harness.build_request("GET", "/metrics"))
        metrics = harness.Metrics(harness.read_response(scrape)[0].text)
        self.assertEqual(metrics.value("edgeloop_http_connections_rejected_total"), rejected)
        self.assertEqual(metrics.value("edgeloop_http_connections"), MAX_CONNECTIONS)
        server.assert_alive()


if __name__ == "__main__":
    unittest.main()
