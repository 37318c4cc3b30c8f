"""Black-box tests of the edge web app behind `edgeloop serve` (docs/webapp.md): the users CLI,
logins, roles and CSRF over real HTTP, and bad uploads (wrong columns, wrong types, binary
garbage, 100 MB) that get a 4xx JSON message while the server stays healthy. The browser test
(tests/browser/run_webapp.py) drives the page itself."""
import json
import os
import subprocess
import unittest

import harness
from harness import HOST

FEATURES = ("temperature_c,vibration_rms,vibration_peak,pressure_bar,rpm,current_a,voltage_v,power_kw,"
            "oil_temp_c,oil_quality,humidity_pct,ambient_temp_c,load_pct,cycle_time_s,tool_wear_min,"
            "acoustic_db,torque_nm,flow_lpm,hours_since_service,error_count_24h")
ROW = "72.8,2.49,6.66,3.96,1681,13.3,394.6,9.16,62.2,0.83,45.3,24.2,58.9,29.2,91.1,78.6,40.3,18.8,143.6,1"


def cli(*args, stdin=None):
    return subprocess.run([harness.require_binary(), *args], input=stdin, capture_output=True, text=True,
                          timeout=harness.scaled(30))


def cookie_of(response):
    for value in response.header_values("Set-Cookie"):
        if value.startswith("edgeloop_session="):
            return value.split(";")[0]
    return None


class WebAppTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_temp_dir("webapp-")
        cls.users = os.path.join(cls.tmp, "users")
        for name, role, password in (("ana", "operator", "operator-pass"), ("eli", "user", "user-pass-1")):
            result = cli("webapp", "users", "add", name, "--role", role, "--users-file", cls.users,
                         stdin=password + "\n")
            assert result.returncode == 0, result.stderr
        cls.repo = harness.Repository()
        cls.repo.add_example()
        cls.server = harness.Server(cls.repo, flags=["--web-users", cls.users, "--poll-interval-ms", "0"]).start()
        cls.client = harness.Client(cls.server.port, server=cls.server)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.stop()

    def login(self, user, password):
        response = self.client.post("/ui/api/login", {"user": user, "password": password})
        self.assertEqual(response.status, 200, response.body)
        return {"Cookie": cookie_of(response), "X-CSRF-Token": response.json["csrf"]}

    def upload(self, headers, body):
        return self.client.post("/ui/api/models/machine-failure/score-csv", body,
                                headers={**headers, "Content-Type": "text/csv"})

    def test_users_cli_hashes_passwords_and_refuses_bad_input(self):
        with open(self.users) as f:
            text = f.read()
        self.assertIn("ana:operator:$argon2id$", text)
        self.assertNotIn("operator-pass", text)
        self.assertEqual(oct(os.stat(self.users).st_mode & 0o777), "0o600")
        listed = cli("webapp", "users", "ls", "--users-file", self.users)
        self.assertEqual(listed.stdout, "ana\toperator\neli\tuser\n")
        again = cli("webapp", "users", "add", "ana", "--users-file", self.users, stdin="another-pass\n")
        self.assertEqual(again.returncode, 3)
        self.assertIn("exists", again.stderr)
        short = cli("webapp", "users", "add", "bo", "--users-file", self.users, stdin="short\n")
        self.assertEqual(short.returncode, 2)
        self.assertIn("at least 8 characters", short.stderr)
        bad_name = cli("webapp", "users", "add", "a:b", "--users-file", self.users, stdin="long-enough\n")
        self.assertEqual(bad_name.returncode, 2)
        self.assertNotEqual(cli("webapp", "users", "add", "x", "--role", "admin", "--users-file", self.users,
                                stdin="long-enough\n").returncode, 0)
        missing = cli("webapp", "users", "rm", "nobody", "--users-file", self.users)
        self.assertEqual(missing.returncode, 4)

    def test_logins_roles_and_csrf(self):
        session = self.client.get("/ui/api/session").json
        self.assertEqual(session["mode"], "production")
        self.assertFalse(session["logged_in"])
        self.assertEqual(self.client.get("/ui/api/models").status, 401)
        wrong = self.client.post("/ui/api/login", {"user": "ana", "password": "nope-nope"})
        self.assertEqual(wrong.status, 401)
        self.assertEqual(wrong.json["error"], "wrong user name or password")
        user = self.login("eli", "user-pass-1")
        self.assertEqual(self.client.get("/ui/api/operator", headers={"Cookie": user["Cookie"]}).status, 403)
        no_csrf = self.upload({"Cookie": user["Cookie"]}, FEATURES + "\n" + ROW + "\n")
        self.assertEqual(no_csrf.status, 403)
        ok = self.upload(user, FEATURES + "\n" + ROW + "\n" + ROW + "\n")
        self.assertEqual(ok.status, 200, ok.body[:300])
        self.assertEqual(ok.json["rows"], 2)
        operator = self.login("ana", "operator-pass")
        view = self.client.get("/ui/api/operator", headers={"Cookie": operator["Cookie"]})
        self.assertEqual(view.status, 200)
        self.assertEqual(view.json["models"][0]["name"], "machine-failure")
        self.assertEqual(view.json["uplink"]["state"], "unknown")
        # The page itself is embedded and locked down.
        page = self.client.get("/ui/")
        self.assertEqual(page.status, 200)
        self.assertIn("default-src 'self'", page.header("Content-Security-Policy"))

    def test_bad_files_get_a_clear_message_and_the_server_stays_healthy(self):
        user = self.login("eli", "user-pass-1")
        cases = [
            ("id,temperature\n1,70\n", "wrong columns: the model 'machine-failure' needs 20 column(s)"),
            (FEATURES + "\n" + ROW.replace("1681", "fast") + "\n", "wrong type on line 2 (row 1), column 'rpm'"),
            (bytes(range(256)) * 64, "the file is not CSV text: binary data at byte 0"),
            ("", "the file is empty"),
            (FEATURES + "\n" + ROW + ",1\n", "line 2 has 21 fields; the header has 20"),
        ]
        for body, message in cases:
            response = self.upload(user, body)
            self.assertEqual(response.status, 400, response.body[:200])
            self.assertIn(message, response.json["error"])
        # 100 MB: refused from the declared length, with a JSON answer, before the body is read.
        sock = harness.connect(self.server.port)
        try:
            sock.sendall((f"POST /ui/api/models/machine-failure/score-csv HTTP/1.1\r\nHost: {HOST}\r\n"
                          f"Cookie: {user['Cookie']}\r\nX-CSRF-Token: {user['X-CSRF-Token']}\r\n"
                          f"Content-Type: text/csv\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n").encode())
            sock.sendall(b"x" * 65536)
            response, _ = harness.read_response(sock)
        finally:
            sock.close()
        self.assertEqual(response.status, 413)
        self.assertIn("error", json.loads(response.body))
        self.assertEqual(self.client.get("/v2/health/ready").status, 200)
        self.assertEqual(self.upload(user, FEATURES + "\n" + ROW + "\n").status, 200)
        self.server.assert_alive()


class WebAppStartupTest(unittest.TestCase):
    def test_dev_mode_on_loopback_and_bad_flags_stop_the_server(self):
        repo = harness.Repository()
        repo.add_example()
        server = harness.Server(repo, flags=["--poll-interval-ms", "0"]).start()
        try:
            client = harness.Client(server.port)
            session = client.get("/ui/api/session")
            self.assertEqual(session.json["mode"], "dev")
            self.assertEqual(session.json["role"], "operator")
            self.assertIn("Dev mode", session.json["notice"])
            self.assertIsNotNone(cookie_of(session))
            self.assertEqual(client.get("/").status, 302)
            client.close()
        finally:
            server.stop()
        tmp = harness.make_temp_dir("webapp-bad-")
        users = os.path.join(tmp, "users")
        with open(users, "w") as f:
            f.write("ana:operator:plaintext\n")
        for flags, message in ((["--web-users", users], "not an Argon2 string"),
                               (["--uplink-status-url", "ftp://x"], "--uplink-status-url must be an http")):
            result = subprocess.run([harness.require_binary(), "serve", "--model-repository", repo.root,
                                     "--http-address", HOST, "--http-port", "0", *flags],
                                    capture_output=True, text=True, timeout=harness.scaled(30))
            self.assertNotEqual(result.returncode, 0)
            self.assertIn(message, result.stderr)


if __name__ == "__main__":
    unittest.main()
