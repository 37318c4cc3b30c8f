"""Quick black-box tests of `edgeloop up`: bad flags, ports in use and a held state folder give a
clear message and a non-zero exit before anything starts. (The whole loop, Ctrl-C, restart and
kill -9 are in test_loop_e2e.py.)"""
import fcntl
import os
import socket
import subprocess
import unittest

import harness
from harness import HOST, scaled


def run_up(*args, timeout=30):
    return subprocess.run([harness.require_binary(), "up", *args], capture_output=True, text=True,
                          timeout=scaled(timeout))


class UpFlagsTest(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(harness.make_temp_dir("up-flags-"), "state")

    def test_help_lists_every_flag(self):
        result = subprocess.run([harness.require_binary(), "up", "--help"], capture_output=True,
                                text=True, timeout=scaled(10))
        self.assertEqual(result.returncode, 0)
        for flag in ["--dir", "--port-base", "--time-scale", "--feed-rate", "--machines",
                     "--history-rows", "--live-rows", "--drift-at", "--seed",
                     "--status-interval-s", "--exit-after-feed-s"]:
            self.assertIn(flag, result.stdout)

    def test_bad_flags_are_refused(self):
        for args, words in [(["--time-scale", "-3"], "time-scale"),
                            (["--time-scale", "fast"], "time-scale"),
                            (["--drift-at", "1.5"], "drift-at"),
                            (["--machines", "0"], "machines"),
                            (["--port-base", "80"], "--port-base"),
                            (["--port-base", "70000"], "--port-base"),
                            (["--nope"], "--nope")]:
            with self.subTest(args=args):
                result = run_up("--dir", self.dir, *args)
                self.assertNotEqual(result.returncode, 0)
                self.assertIn(words, result.stdout + result.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "data")))

    def test_a_port_in_use_is_named(self):
        # The edge server would take port-base + 1, which this test holds. The hub's port-base
        # is an arbitrary port that something else on the machine (a test running beside this
        # one) may hold too; then `up` rightly names that one, and the test tries another base.
        for _ in range(5):
            with socket.socket() as busy:
                busy.bind((HOST, 0))
                busy.listen()
                port = busy.getsockname()[1]
                result = run_up("--dir", self.dir, "--port-base", str(port - 1))
            self.assertEqual(result.returncode, 2, result.stderr)
            if f"port {port - 1} (hub) is in use" not in result.stderr:
                break
        self.assertIn(f"port {port} (edge server) is in use", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "data")))

    def test_a_folder_in_use_is_refused(self):
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "up.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            result = run_up("--dir", self.dir, "--port-base", "0")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("another edgeloop up is using", result.stderr)

    def test_an_unreadable_state_file_stops_the_start(self):
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "up.json"), "w") as f:
            f.write("{not json")
        result = run_up("--dir", self.dir, "--port-base", "0")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("up.json", result.stderr)


if __name__ == "__main__":
    unittest.main()
