"""Process lifecycle and command line: graceful shutdown on SIGTERM/SIGINT with requests in
flight, --help and version, bad usage, the --config file and its precedence, JSON logs.
"""
import json
import os
import select
import signal
import socket
import subprocess
import time
import unittest

import harness

SLOW = "slow"
QUEUE_CAPACITY = 4
QUEUE_DELAY_US = 1500000
SERVE_FLAGS = ["--model-repository", "--http-address", "--http-port", "--http-threads",
               "--max-body-bytes", "--max-header-bytes", "--header-timeout-ms",
               "--body-timeout-ms", "--idle-timeout-ms", "--max-connections",
               "--poll-interval-ms", "--drain-timeout-ms", "--api-token-file"]


def trained():
    return harness.train("binary:logistic", seed=71, rounds=10, max_depth=3)


def simple_repo():
    repo = harness.Repository()
    repo.add_version("m", 1, trained())
    return repo


def sized_body(size):
    """A valid single-row request of exactly `size` bytes."""
    body = json.dumps(harness.infer_body(harness.make_features(1, seed=3))).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


class ShutdownTest(harness.ServerTestCase):
    def slow_server(self, flags=(), delay_us=QUEUE_DELAY_US, capacity=QUEUE_CAPACITY):
        repo = harness.Repository()
        repo.add_version(SLOW, 1, trained(), batching={
            "max_batch_size": 64, "max_queue_delay_us": delay_us, "max_queue_size": capacity})
        server = self.start_server(repo, flags)
        server.wait_ready(timeout=30)
        server.close_admin()
        return server

    def fill_queue(self, server, rows):
        """Sends requests until one is refused with 503 (so the queue is full); returns the
        sockets whose requests were not answered (they are queued, in flight)."""
        pending = []
        deadline = time.monotonic() + harness.scaled(QUEUE_DELAY_US / 1e6 / 2)
        i = 0
        while True:
            sock = harness.connect(server.port, timeout=10)
            self.addCleanup(sock.close)
            sock.sendall(harness.build_request("POST", harness.infer_path(SLOW),
                                               harness.infer_body(rows[i % len(rows)],
                                                                  request_id=str(i))))
            i += 1
            if i <= QUEUE_CAPACITY:
                pending.append((i - 1, sock))
                continue
            if select.select([sock], [], [], 0.2)[0]:
                response, _ = harness.read_response(sock)
                self.assert_error(response, 503)
                return pending
            pending.append((i - 1, sock))
            self.assertLess(time.monotonic(), deadline, "the queue never filled up")

    def test_sigterm_lets_queued_requests_finish(self):
        server = self.slow_server()
        rows = harness.make_features(16, seed=4)
        expected = trained().predict(rows)
        pending = self.fill_queue(server, rows)
        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        # New connections stop being served soon after the signal (it is handled
        # asynchronously, so a connection made right after it may still be served).
        def new_connection_served():
            try:
                response = harness.raw_exchange(
                    server.port, harness.build_request("GET", "/v2/health/live"), timeout=2)
            except (ConnectionRefusedError, ConnectionResetError):
                return False
            return response is not None and response.status != 503

        harness.wait_until(lambda: not new_connection_served(), 1.0,
                           "new connections to go unserved after SIGTERM")

        answered = []
        for index, sock in pending:
            try:
                response, _ = harness.read_response(sock, timeout=10)
            except harness.ConnectionClosed:
                self.fail(f"queued request {index} was dropped at shutdown")
            self.assertIn(response.status, (200, 503), response.body[:200])
            if response.status == 200:
                answered.append(index)
                self.assertEqual(response.json.get("id"), str(index))
                harness.assert_close(harness.output_array(response.json, "probability", [1]),
                                     expected[index % len(rows):index % len(rows) + 1], 1e-6,
                                     f"request {index}")
            else:
                self.assert_error(response, 503)
        self.assertGreaterEqual(len(answered), QUEUE_CAPACITY,
                                f"only {answered} of {[i for i, _ in pending]} finished")
        code = server.wait_exit(10)
        self.assertEqual(code, 0, server.stderr_tail())
        self.assertLess(time.monotonic() - signalled,
                        harness.scaled(QUEUE_DELAY_US / 1e6 + 5))

    def test_drain_timeout_bounds_the_wait(self):
        server = self.slow_server(["--drain-timeout-ms", "500"], delay_us=10000000, capacity=1)
        rows = harness.make_features(2, seed=5)
        sockets = []
        for row in rows:
            sock = harness.connect(server.port)
            self.addCleanup(sock.close)
            sock.sendall(harness.build_request("POST", harness.infer_path(SLOW),
                                               harness.infer_body(row)))
            sockets.append(sock)
        # With room for one waiting request, one of the two is refused and the other waits.
        answered = select.select(sockets, [], [], harness.scaled(3))[0]
        self.assertTrue(answered, "neither request was refused")
        self.assert_error(harness.read_response(answered[0])[0], 503)
        server.send_signal(signal.SIGTERM)
        start = time.monotonic()
        code = server.wait_exit(8)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(code, 0, f"killed by a signal\n{server.stderr_tail()}")
        self.assertGreaterEqual(elapsed, 0.4, "did not wait for the in-flight request at all")
        self.assertLess(elapsed, harness.scaled(0.5 + 2.5), "drain timeout not honoured")

    def test_sigterm_with_idle_keep_alive_connections_exits_promptly(self):
        server = self.start_server(simple_repo())
        server.wait_ready()
        clients = [server.client() for _ in range(3)]
        for client in clients:
            self.addCleanup(client.close)
            self.assertEqual(client.get("/v2/health/live").status, 200)
        server.send_signal(signal.SIGTERM)
        start = time.monotonic()
        self.assertEqual(server.wait_exit(5), 0, server.stderr_tail())
        self.assertLess(time.monotonic() - start, harness.scaled(3))

    def test_sigint_exits_zero(self):
        server = self.start_server(simple_repo())
        server.wait_ready()
        server.close_admin()
        server.send_signal(signal.SIGINT)
        self.assertEqual(server.wait_exit(10), 0, server.stderr_tail())


class CommandLineTest(harness.ServerTestCase):
    def test_help_lists_subcommands(self):
        result = harness.run_cli(["--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        output = result.stdout + result.stderr
        for word in ("serve", "version"):
            self.assertIn(word, output)

    def test_serve_help_lists_the_documented_flags(self):
        result = harness.run_cli(["serve", "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        output = result.stdout + result.stderr
        missing = [flag for flag in SERVE_FLAGS if flag not in output]
        self.assertEqual(missing, [])

    def test_version_prints_the_version(self):
        result = harness.run_cli(["version"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("0.1.0", result.stdout)

    def check_usage_error(self, args, *needles):
        try:
            result = harness.run_cli(args, timeout=10)
        except subprocess.TimeoutExpired:
            self.fail(f"edgeloop {' '.join(args)} kept running instead of failing")
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertGreater(result.returncode, 0, f"killed by a signal: {output}")
        self.assertTrue(output.strip(), "no message")
        for needle in needles:
            self.assertIn(needle, output)
        return output

    def test_missing_model_repository(self):
        self.check_usage_error(["serve", "--http-address", "127.0.0.1", "--http-port", "0"],
                               "model-repository")

    def test_unknown_flag(self):
        self.check_usage_error(["serve", "--model-repository", simple_repo().root,
                                "--bogus-flag", "1"], "bogus-flag")

    def test_unknown_subcommand(self):
        self.check_usage_error(["frobnicate"], "frobnicate")

    def test_nonexistent_repository(self):
        missing = os.path.join(harness.make_temp_dir(), "no-such-dir")
        self.check_usage_error(["serve", "--model-repository", missing, "--http-address",
                                "127.0.0.1", "--http-port", "0"], missing)

    def test_invalid_flag_values(self):
        repo = simple_repo().root
        for flag, value in (("--http-port", "abc"), ("--http-port", "70000"),
                            ("--max-body-bytes", "-1"), ("--header-timeout-ms", "soon"),
                            ("--poll-interval-ms", "-5")):
            args = ["serve", "--model-repository", repo, "--http-address", "127.0.0.1"]
            if flag != "--http-port":
                args += ["--http-port", "0"]
            with self.subTest(flag=flag, value=value):
                self.check_usage_error(args + [flag, value], flag.lstrip("-"))
        with self.subTest(flag="--log-format"):
            self.check_usage_error(["--log-format", "xml", "serve", "--model-repository", repo,
                                    "--http-address", "127.0.0.1", "--http-port", "0"],
                                   "log-format")

    def test_port_in_use(self):
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        output = self.check_usage_error(["serve", "--model-repository", simple_repo().root,
                                         "--http-address", "127.0.0.1", "--http-port",
                                         str(port)])
        self.assertRegex(output, rf"(?i)in use|{port}")

    def test_missing_config_file(self):
        missing = os.path.join(harness.make_temp_dir(), "absent.yaml")
        self.check_usage_error(["--config", missing, "serve"], missing)

    def test_invalid_config_file(self):
        path = os.path.join(harness.make_temp_dir(), "bad.yaml")
        with open(path, "w") as f:
            f.write("serve: [unclosed\n")
        self.check_usage_error(["--config", path, "serve"])


class ConfigFileTest(harness.ServerTestCase):
    def write_config(self, text):
        path = os.path.join(harness.make_temp_dir("config-"), "edgeloop.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def post_size(self, server, size):
        response = harness.raw_exchange(server.port, harness.build_request(
            "POST", harness.infer_path("m"), sized_body(size)))
        self.assertIsNotNone(response, f"{size}-byte body: connection closed")
        return response.status

    def test_config_file_options_apply(self):
        repo = simple_repo()
        config = self.write_config(
            f"log-format: json\nserve:\n  model-repository: {repo.root}\n"
            f"  http-address: 127.0.0.1\n  http-port: 0\n  max-body-bytes: 2048\n")
        server = self.start_server(None, global_flags=["--config", config],
                                   add_listen_flags=False)
        server.wait_ready()
        self.assertEqual(self.post_size(server, 2000), 200)
        self.assertEqual(self.post_size(server, 3000), 413)
        lines = server.stderr_lines()
        self.assertTrue(lines)
        for line in lines:
            self.assertIsInstance(json.loads(line), dict, line)

    def test_command_line_flags_override_the_config_file(self):
        repo = simple_repo()
        missing = os.path.join(harness.make_temp_dir(), "not-there")
        config = self.write_config(
            f"log-format: json\nserve:\n  model-repository: {missing}\n"
            f"  http-address: 127.0.0.1\n  http-port: 1\n  max-body-bytes: 2048\n")
        server = self.start_server(repo, ["--max-body-bytes", "4096"],
                                   global_flags=["--config", config, "--log-format", "text"])
        server.wait_ready()
        self.assertEqual(self.post_size(server, 3000), 200)
        self.assertEqual(self.post_size(server, 5000), 413)
        listening = [line for line in server.stderr_lines() if harness.listening_port(line)]
        self.assertTrue(listening)
        self.assertFalse(listening[0].lstrip().startswith("{"),
                         f"--log-format text did not override the file: {listening[0]}")


class ControlTokenTest(harness.ServerTestCase):
    """--api-token-file: the repository load/unload API needs the bearer token; the token never
    appears in the logs; a bad token file is a usage error."""

    TOKEN = "tok-3f9a1c77e2b04d51a8c6"

    def token_file(self, text):
        path = os.path.join(harness.make_temp_dir("token-"), "token")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_load_and_unload_need_the_token(self):
        path = self.token_file(self.TOKEN + "\n")
        server = self.start_server(simple_repo(), ["--api-token-file", path],
                                   global_flags=["--log-level", "debug"])
        client = server.client()
        self.addCleanup(client.close)
        unload = "/v2/repository/models/m/unload"
        self.assert_error(client.post(unload, {}), 401, "no token")
        self.assertEqual(client.post(unload, {}).header("WWW-Authenticate"),
                         'Bearer realm="edgeloop"')
        self.assert_error(client.post(unload, {}, headers={"Authorization": "Bearer nope"}),
                          401, "wrong token")
        self.assertEqual(client.get("/v2/models/m/ready").status, 200)
        good = {"Authorization": "Bearer " + self.TOKEN}
        self.assertEqual(client.post(unload, {}, headers=good).status, 200)
        self.assertEqual(client.get("/v2/models/m/ready").status, 503)
        self.assertEqual(client.post("/v2/repository/models/m/load", {}, headers=good).status,
                         200)
        self.assertEqual(client.get("/v2/models/m/ready").status, 200)
        server.stop()
        self.assertNotIn(self.TOKEN, "\n".join(server.stderr_lines()))

    def test_short_or_missing_token_file_is_a_usage_error(self):
        for path in (self.token_file("short\n"), "/nonexistent/token"):
            with self.subTest(path=path):
                result = subprocess.run(
                    [harness.require_binary(), "serve", "--model-repository",
                     simple_repo().root, "--http-address", "127.0.0.1", "--http-port", "0",
                     "--api-token-file", path],
                    capture_output=True, timeout=harness.scaled(20))
                self.assertNotEqual(result.returncode, 0)
                self.assertIn(b"token", result.stderr.lower() + result.stdout.lower())


class LogFormatTest(harness.ServerTestCase):
    def test_json_log_lines_are_json_objects(self):
        repo = simple_repo()
        repo.add_raw_version("broken", 1, {"model.yaml": "framework: [\n"})
        server = self.start_server(repo, global_flags=["--log-format", "json"])
        server.wait_model_ready("m")
        server.wait_state("broken", 1, "UNAVAILABLE")
        client = server.client()
        self.addCleanup(client.close)
        self.assertEqual(client.infer("m", harness.infer_body(
            harness.make_features(1, seed=1))).status, 200)
        self.assertEqual(client.post("/v2/models/m/infer", b"{nope").status, 400)
        self.assertEqual(client.get("/nope").status, 404)
        client.close()
        server.stop()
        lines = server.stderr_lines()
        self.assertGreaterEqual(len(lines), 2, lines)
        records = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                self.fail(f"stderr line {number} is not JSON: {line!r}")
            self.assertIsInstance(record, dict, line)
            self.assertIsInstance(record.get("msg"), str, line)
            records.append(record)
        listening = [r for r in records if r.get("msg") == "listening"]
        self.assertEqual(len(listening), 1, records)
        self.assertEqual(listening[0].get("port"), server.port)
        self.assertEqual(listening[0].get("address"), "127.0.0.1")

    def test_text_listening_line(self):
        server = self.start_server(simple_repo())
        lines = [line for line in server.stderr_lines() if harness.listening_port(line)]
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0],
                         rf"\blistening\b.*\baddress=127\.0\.0\.1\b.*\bport={server.port}\b")


if __name__ == "__main__":
    unittest.main()
