"""Machinery for the black-box tests of `edgeloop up`: starts it in a temp dir, reads the URLs
from its banner, talks to the edge server, the hub and the worker, and finds its children."""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import harness
from harness import HOST, scaled, wait_until

# The data set of the tests: small, so the whole loop runs in a couple of minutes.
SMALL = ["--machines", "6", "--history-rows", "3000", "--live-rows", "6000", "--drift-at", "0.2",
         "--feed-rate", "60", "--time-scale", "720", "--status-interval-s", "5"]


def http_json(port, method, path, body=None, token=None, timeout=10):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers)
        response = conn.getresponse()
        data = response.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors="replace")
        return response.status, parsed
    finally:
        conn.close()


def children_of(pid):
    """Pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class Up:
    """`edgeloop up --dir DIR --port-base 0 ...`; stdout and stderr collected by threads."""

    def __init__(self, state_dir, *flags):
        self.dir = state_dir
        self.argv = [harness.require_binary(), "up", "--dir", state_dir, "--port-base", "0",
                     *flags]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.stdout = []
        self.stderr = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout),
                                         daemon=True),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr),
                                         daemon=True)]
        for t in self.threads:
            t.start()
        self.edge_port = self.hub_port = self.worker_port = None
        self.dashboard_token = None

    def _pump(self, stream, sink):
        for line in stream:
            with self.lock:
                sink.append(line)

    def out(self):
        with self.lock:
            return "".join(self.stdout)

    def err(self):
        with self.lock:
            return "".join(self.stderr)

    def wait_ready(self, timeout=120):
        def banner():
            if self.proc.poll() is not None:
                raise AssertionError(f"edgeloop up exited with {self.proc.returncode}:\n"
                                     f"{self.out()}\n{self.err()[-4000:]}")
            text = self.out()
            edge = re.search(r"Edge server\s+http://127\.0\.0\.1:(\d+)/", text)
            hub = re.search(r"Hub dashboard\s+http://127\.0\.0\.1:(\d+)/#(?:range=\d+&)?token=(\S+)", text)
            worker = re.search(r"Worker metrics\s+http://127\.0\.0\.1:(\d+)/metrics", text)
            if edge and hub and worker:
                return int(edge.group(1)), int(hub.group(1)), hub.group(2), int(worker.group(1))
            return None
        self.edge_port, self.hub_port, self.dashboard_token, self.worker_port = wait_until(
            banner, timeout, "the banner of edgeloop up")
        return self

    def feed_state(self):
        try:
            with open(os.path.join(self.dir, "feed.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def stop(self, sig=signal.SIGINT, timeout=30):
        children = children_of(self.proc.pid)
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"edgeloop up did not stop in {timeout}s:\n{self.err()[-4000:]}")
        self.close()
        return code, children

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def close(self):
        for t in self.threads:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


def metric_sum(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def get_text(port, path, timeout=10):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def read_live_rows(state_dir):
    """The live readings (header, rows as dicts) the feed replays."""
    with open(os.path.join(state_dir, "data", "live.csv")) as f:
        header = f.readline().strip().split(",")
        return [dict(zip(header, line.strip().split(","))) for line in f if line.strip()]


FEATURES = ["temperature_c", "vibration_rms", "pressure_bar", "rpm", "current_a",
            "oil_particles_ppm", "humidity_pct", "runtime_h"]


def auc(scored):
    """ROC AUC with ties counted half (scikit-learn's definition)."""
    ordered = sorted(scored)
    positives = sum(1 for _, y in ordered if y == 1)
    negatives = len(ordered) - positives
    rank_sum, i = 0.0, 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j][0] == ordered[i][0]:
            j += 1
        average = (i + 1 + j) / 2.0
        rank_sum += average * sum(1 for k in range(i, j) if ordered[k][1] == 1)
        i = j
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def score(edge_port, rows, version=None):
    """Probabilities of `rows` from the edge (one batched request per 500 rows)."""
    path = "/v2/models/machine-failure" + (f"/versions/{version}" if version else "") + "/infer"
    out = []
    for start in range(0, len(rows), 500):
        chunk = rows[start:start + 500]
        body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [len(chunk), 8],
                            "data": [[float(r[f]) for f in FEATURES] for r in chunk]}]}
        status, answer = http_json(edge_port, "POST", path, body, timeout=30)
        if status != 200:
            raise AssertionError(f"infer {path}: {status} {answer}")
        out.extend(harness.find_output(answer, "probability")["data"])
    return out


def browser_check(up, attempts=3):
    """Runs tests/browser/loop.mjs against a running `edgeloop up`: the edge web app and the hub
    dashboard must show the version the edge serves (a retrained one). Returns its
    {"version", "digest"}, or None (with a note) when node, chromium or playwright-core are
    missing. Retries when a new rollout started while the pages loaded; fails after `attempts`."""
    browser_dir = harness.REPO_ROOT / "tests" / "browser"
    sys.path.insert(0, str(browser_dir))
    import browser_env  # noqa: E402
    node, why_not = browser_env.prepare()
    if node is None:
        print("\nSKIP browser check: " + why_not, flush=True)
        return None
    artifacts = str(browser_env.artifacts_dir())
    config = {"edge_url": f"http://{HOST}:{up.edge_port}", "hub_url": f"http://{HOST}:{up.hub_port}",
              "hub_token": up.dashboard_token, "site": "plant-1", "artifacts": artifacts}
    output = ""
    for _ in range(attempts):
        result = subprocess.run([node, str(browser_dir / "loop.mjs"), json.dumps(config)],
                                cwd=browser_dir, capture_output=True, text=True,
                                timeout=scaled(240))
        if result.returncode == 0:
            return json.loads(result.stdout.strip().splitlines()[-1])
        output = result.stdout + result.stderr
    raise AssertionError("the pages do not show the served version:\n" + output[-4000:])
