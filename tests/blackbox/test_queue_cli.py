"""`edgeloop queue`: the CLI end to end against the embedded queue (a folder) and the Redis
Streams queue (a real redis-server started here on 127.0.0.1, a free port, a temp dir, stopped by
PID): append, stats, peek, lease/ack/nack/release/dead-letter, priority order (anomalies first on
both backends), the dead-letter queue with its history and replay, the disk budget's drop order,
and clear errors with non-zero exits for bad input.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

import harness

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def queue_cli(*args, check=None, stdin=None, timeout=60):
    """Runs `edgeloop queue ARGS`; check=N asserts the exit code."""
    result = subprocess.run([harness.require_binary(), "queue", *map(str, args)],
                            capture_output=True, text=True, input=stdin,
                            timeout=harness.scaled(timeout))
    if check is not None and result.returncode != check:
        raise AssertionError(f"edgeloop queue {' '.join(map(str, args))}: exit "
                             f"{result.returncode}, expected {check}\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, AOF with appendfsync always, in a temp dir."""

    def __init__(self):
        self.dir = harness.make_temp_dir("queue-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def accepting():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False
        harness.wait_until(accepting, harness.scaled(20), "redis-server accepting")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=harness.scaled(10))
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class QueueCliCases:
    """Cases run against each backend; subclasses set self.url in setUp."""

    def json_cli(self, *args, stdin=None):
        out = json.loads(queue_cli(*args, "--queue", self.url, "--json", check=0,
                                   stdin=stdin).stdout)
        if args and args[0] == "stats":  # hide setUp's event (appended and acked) from totals
            out["appended_total"] -= 1
            out["acked_total"] -= 1
        return out

    def test_append_stats_peek(self):
        lines = "\n".join(json.dumps({"n": i, "model": "m"}) for i in range(3)) + "\n"
        out = self.json_cli("append", "--type", "insight", stdin=lines)
        self.assertEqual(len(out["ids"]), 3)
        self.assertEqual(out["rejected"], [])
        self.json_cli("append", "--type", "anomaly", "--payload", '{"score": 0.99}')
        stats = self.json_cli("stats")
        self.assertEqual(stats["ready"], 4)
        self.assertEqual(stats["depth_by_priority"], {"0": 3, "10": 1})
        self.assertEqual(stats["appended_total"], 4)
        self.assertEqual(stats["dlq"], 0)
        peek = self.json_cli("peek", "--limit", "10")
        self.assertEqual(len(peek), 4)
        payloads = [p["payload"] for p in peek]
        self.assertIn({"score": 0.99}, payloads)
        self.assertIn({"n": 0, "model": "m"}, payloads)
        # Peek leases nothing.
        self.assertEqual(self.json_cli("stats")["ready"], 4)
        text = queue_cli("stats", "--queue", self.url, check=0).stdout
        self.assertIn("ready     4", text)

    def test_poison_event_ends_in_dlq_with_history_and_replays(self):
        self.json_cli("append", "--payload", '{"poison": true}')
        for attempt in range(1, 4):
            leases = self.json_cli("lease", "--consumer", "w1", "--max-attempts", "3")
            self.assertEqual(len(leases), 1)
            lease = leases[0]
            self.assertEqual(lease["attempts"], attempt)
            out = self.json_cli("nack", "--handle", lease["handle"], "--fence", lease["fence"],
                                "--consumer", "w1", "--reason", f"boom {attempt}",
                                "--retry-after-ms", "0", "--max-attempts", "3")
            self.assertEqual(out["outcome"], "dead-lettered" if attempt == 3 else "retry")
            # A late ack with this (now old) fence is refused: exit 7.
            late = queue_cli("ack", "--queue", self.url, "--handle", lease["handle"],
                             "--fence", lease["fence"], check=7)
            self.assertIn("no longer current", late.stderr)
        self.assertEqual(self.json_cli("lease", "--consumer", "w1"), [])
        dead = self.json_cli("dlq", "ls")
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["reason"], "boom 3")
        self.assertEqual([h["reason"] for h in dead[0]["history"]], ["boom 1", "boom 2", "boom 3"])
        self.assertEqual({h["consumer"] for h in dead[0]["history"]}, {"w1"})
        self.assertEqual(dead[0]["payload"], {"poison": True})
        text = queue_cli("dlq", "ls", "--queue", self.url, check=0).stdout
        self.assertIn("reason=boom 3", text)
        self.assertEqual(self.json_cli("stats")["dlq"], 1)

        missing = queue_cli("dlq", "replay", "--queue", self.url, "--id", "nope", check=4)
        self.assertIn("not in the dead-letter queue", missing.stderr)
        out = self.json_cli("dlq", "replay", "--id", dead[0]["id"])
        self.assertEqual(out["replayed"], 1)
        self.assertEqual(self.json_cli("dlq", "ls"), [])
        leases = self.json_cli("lease", "--consumer", "w2")
        self.assertEqual(len(leases), 1)
        self.assertEqual(leases[0]["attempts"], 1)
        self.assertEqual(len(leases[0]["history"]), 3)
        self.json_cli("ack", "--handle", leases[0]["handle"], "--fence", leases[0]["fence"])
        stats = self.json_cli("stats")
        self.assertEqual(stats["ready"] + stats["leased"] + stats["retry"], 0)
        self.assertEqual(stats["acked_total"], 1)

    def test_disk_budget_drops_routine_first_and_counts(self):
        payload = json.dumps({"pad": "x" * 900})
        budget = ["--max-bytes", "10000"]
        self.json_cli("append", "--type", "anomaly", "--payload", payload, *budget)
        for _ in range(6):
            self.json_cli("append", "--type", "insight", "--payload", payload, *budget)
        for _ in range(3):
            self.json_cli("append", "--type", "anomaly", "--payload", payload, *budget)
        stats = self.json_cli("stats", *budget)
        self.assertLessEqual(stats["bytes"], 10000)
        self.assertGreater(stats["drops"].get("quota:insight", 0), 0)
        self.assertNotIn("quota:anomaly", stats["drops"])
        self.assertEqual(stats["depth_by_priority"]["10"], 4)

    def test_anomalies_are_leased_first_then_oldest_first(self):
        self.json_cli("append", "--type", "insight", "--payload", '{"n": 1}')
        self.json_cli("append", "--type", "anomaly", "--payload", '{"n": 2}')
        self.json_cli("append", "--type", "feedback", "--payload", '{"n": 3}')
        self.json_cli("append", "--type", "anomaly", "--payload", '{"n": 4}')
        peek = self.json_cli("peek", "--limit", "10")
        self.assertEqual([p["payload"]["n"] for p in peek], [2, 4, 1, 3])
        leases = self.json_cli("lease", "--consumer", "w", "--max", "10")
        self.assertEqual([lease["payload"]["n"] for lease in leases], [2, 4, 1, 3])
        self.assertEqual([lease["priority"] for lease in leases], [10, 10, 0, 0])

    def test_release_spends_no_attempt_and_dead_letter_is_immediate(self):
        self.json_cli("append", "--type", "anomaly", "--payload", '{"k": "v"}')
        for _ in range(4):  # more releases than --max-attempts: never dead
            leases = self.json_cli("lease", "--consumer", "w1", "--max-attempts", "2")
            self.assertEqual(len(leases), 1)
            self.assertEqual(leases[0]["attempts"], 1)
            out = self.json_cli("release", "--handle", leases[0]["handle"], "--fence",
                                leases[0]["fence"])
            self.assertEqual(out, {"released": True})
            # The released lease is no longer current: a second release is refused (exit 7).
            again = queue_cli("release", "--queue", self.url, "--handle", leases[0]["handle"],
                              "--fence", leases[0]["fence"], check=7)
            self.assertIn("no longer current", again.stderr)
        self.assertEqual(self.json_cli("stats")["dlq"], 0)

        leases = self.json_cli("lease", "--consumer", "w2")
        lease = leases[0]
        text = queue_cli("dead-letter", "--queue", self.url, "--handle", lease["handle"],
                         "--fence", lease["fence"], "--consumer", "w2", "--reason",
                         "unsupported schema", check=0).stdout
        self.assertIn("dead-lettered", text)
        queue_cli("ack", "--queue", self.url, "--handle", lease["handle"], "--fence",
                  lease["fence"], check=7)
        dead = self.json_cli("dlq", "ls")
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["reason"], "unsupported schema")
        self.assertEqual(dead[0]["attempts"], 1)
        self.assertEqual(dead[0]["priority"], 10)
        self.assertEqual([(h["consumer"], h["reason"]) for h in dead[0]["history"]],
                         [("w2", "unsupported schema")])
        stats = self.json_cli("stats")
        self.assertEqual(stats["ready"] + stats["leased"] + stats["retry"], 0)
        self.assertEqual(stats["dead_lettered_total"], 1)

        # Bad input: a negative delay, a missing reason.
        r = queue_cli("release", "--queue", self.url, "--handle", lease["handle"], "--fence",
                      lease["fence"], "--delay-ms", "-5", check=2)
        self.assertIn("--delay-ms", r.stderr)
        r = queue_cli("dead-letter", "--queue", self.url, "--handle", lease["handle"],
                      "--fence", lease["fence"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--reason", r.stderr)

    def test_bad_input_gives_a_clear_error(self):
        r = queue_cli("append", "--queue", self.url, stdin="not json\n", check=2)
        self.assertIn("not JSON", r.stderr)
        r = queue_cli("append", "--queue", self.url, "--type", "Bad Type", "--payload", "{}",
                      check=2)
        self.assertIn("type", r.stderr)
        r = queue_cli("dlq", "replay", "--queue", self.url, check=2)
        self.assertIn("--all", r.stderr)
        r = queue_cli("ack", "--queue", self.url, "--handle", "1-0", "--fence", "5", check=7)
        r = queue_cli("peek", "--queue", self.url, "--limit", "0", check=2)
        self.assertIn("--limit", r.stderr)


class EmbeddedQueueCliTest(QueueCliCases, unittest.TestCase):
    def setUp(self):
        self.tmp = harness.make_temp_dir("queue-cli-")
        self.url = "file://" + os.path.join(self.tmp, "q")
        # The embedded queue is created by its first writer.
        queue_cli("append", "--queue", self.url, "--payload", "{}", check=0)
        leases = json.loads(queue_cli("lease", "--queue", self.url, check=0).stdout)
        queue_cli("ack", "--queue", self.url, "--handle", leases[0]["handle"], "--fence",
                  leases[0]["fence"], check=0)

    def test_errors_without_a_queue(self):
        r = queue_cli("stats", check=2)
        self.assertIn("--queue", r.stderr)
        missing = "file://" + os.path.join(self.tmp, "missing")
        r = queue_cli("stats", "--queue", missing, check=4)
        self.assertIn("no queue", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "missing")))
        r = queue_cli("stats", "--queue", "ftp://x/y", check=2)
        self.assertIn("unsupported queue URL", r.stderr)
        r = queue_cli("stats", "--queue", f"redis://127.0.0.1:{free_port()}/s", check=5)
        self.assertIn("cannot reach redis", r.stderr)

    def test_corrupt_queue_is_reported(self):
        bad = os.path.join(self.tmp, "bad")
        os.makedirs(bad)
        with open(os.path.join(bad, "queue.db"), "wb") as f:
            f.write(b"\x5a" * 8192)
        r = queue_cli("stats", "--queue", "file://" + bad)
        self.assertNotEqual(r.returncode, 0)
        self.assertLess(r.returncode, 128, "crashed")
        self.assertIn("corrupt", r.stderr)


@unittest.skipUnless(os.path.exists(REDIS_SERVER), "redis-server is not installed")
class RedisQueueCliTest(QueueCliCases, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer()

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()

    def setUp(self):
        self.url = f"redis://127.0.0.1:{self.redis.port}/{self.id().split('.')[-1]}"
        # The stream and group are created by the first writer.
        queue_cli("append", "--queue", self.url, "--payload", "{}", check=0)
        leases = json.loads(queue_cli("lease", "--queue", self.url, check=0).stdout)
        queue_cli("ack", "--queue", self.url, "--handle", leases[0]["handle"], "--fence",
                  leases[0]["fence"], check=0)


if __name__ == "__main__":
    unittest.main()
