"""Shared machinery for the black-box tests of `edgeloop serve`.

The tests drive the real binary on 127.0.0.1 and nothing else. This module:

  - finds the binary (`EDGELOOP_BIN`, default `<repo>/build/edgeloop`);
  - trains small seeded XGBoost models with python3-xgboost and writes model repositories
    (`Repository`);
  - starts the server on port 0 in a temporary directory, reads its stderr until the
    `listening ... port=N` line, and stops it by PID (SIGTERM, then SIGKILL after a deadline),
    failing with the stderr tail when it crashed or exited non-zero (`Server`);
  - talks HTTP: a keep-alive client on http.client (`Client`) and a raw-socket exchange for
    malformed traffic (`raw_exchange`, `read_response`);
  - parses the Prometheus text format (`Metrics`);
  - waits for conditions by polling with a deadline (`wait_until`), never by a blind sleep.

Environment:
  EDGELOOP_BIN                      the binary to test
  EDGELOOP_TEST_TIMEOUT_SCALE       multiplies every deadline (e.g. 3 for a sanitizer build)
  EDGELOOP_TEST_KEEP_TMP=1          keep the temporary directories (for debugging)

Nothing here is thread-safe unless its comment says so; `Client` objects belong to one thread.
"""
import atexit
import http.client
import json
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import numpy as np
import xgboost as xgb

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE_MODEL_DIR = REPO_ROOT / "examples" / "models" / "machine-failure" / "1"
NUM_FEATURES = 20
HOST = "127.0.0.1"


# ----------------------------------------------------------------------------------------------
# Configuration


def binary_path():
    """Absolute path of the binary under test (it need not exist)."""
    configured = os.environ.get("EDGELOOP_BIN")
    if configured:
        return os.path.abspath(configured)
    return str(REPO_ROOT / "build" / "edgeloop")


def require_binary():
    """Fails (does not skip: a misconfigured run must not pass) when the binary is missing."""
    path = binary_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError(
            f"edgeloop binary not found or not executable at {path}; build it or set EDGELOOP_BIN")
    return path


def scaled(seconds):
    """A deadline in seconds, multiplied by EDGELOOP_TEST_TIMEOUT_SCALE."""
    return seconds * float(os.environ.get("EDGELOOP_TEST_TIMEOUT_SCALE", "1"))


_session_dir = None


def session_dir():
    """A temporary directory for this test process, removed at exit."""
    global _session_dir
    if _session_dir is None:
        _session_dir = tempfile.mkdtemp(prefix="edgeloop-blackbox-")
        if os.environ.get("EDGELOOP_TEST_KEEP_TMP") != "1":
            atexit.register(shutil.rmtree, _session_dir, True)
    return _session_dir


def make_temp_dir(prefix="tmp-"):
    return tempfile.mkdtemp(prefix=prefix, dir=session_dir())


# ----------------------------------------------------------------------------------------------
# Waiting


def wait_until(predicate, timeout, message="condition", interval=0.02):
    """Polls `predicate` until it returns something truthy, and returns that.

    Raises AssertionError naming `message` and the last value seen when `timeout` (seconds,
    scaled) passes first. The interval is a polling period, not a wait for an effect.
    """
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {scaled(timeout):.1f}s waiting for {message}; last: {value!r}")
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------
# Data and models


def make_features(rows, seed, nan_fraction=0.0):
    """Seeded float32 feature rows (rows x NUM_FEATURES), with NaN in `nan_fraction` of cells."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(rows, NUM_FEATURES))
    x[:, 3] = rng.uniform(-5.0, 5.0, size=rows)
    x[:, 7] = np.round(rng.uniform(0, 6, size=rows))  # a few discrete values, ties at splits
    x[:, 11] = rng.exponential(50.0, size=rows)
    x = x.astype(np.float32)
    if nan_fraction > 0:
        mask = rng.random(x.shape) < nan_fraction
        x[mask] = np.nan
    return x


def _labels(objective, x, seed):
    rng = np.random.default_rng(seed + 1000)
    x = np.nan_to_num(x.astype(np.float64))
    score = (np.sin(x[:, 0] * 1.5) + 0.8 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3]
             - 0.4 * (x[:, 7] - 3) + 0.01 * x[:, 11] - 0.5 + rng.normal(0, 0.3, len(x)))
    if objective == "binary:logistic":
        return (rng.random(len(x)) < 1 / (1 + np.exp(-score))).astype(np.float64)
    if objective == "multi:softprob":
        return np.digitize(score, [-0.8, 0.6]).astype(np.float64)
    if objective == "reg:squarederror":
        return score * 0.5
    raise ValueError(objective)


_model_cache = {}


class TrainedModel:
    """A booster trained in this process, and its model files (cached per format)."""

    def __init__(self, objective, booster, key):
        self.objective = objective
        self.booster = booster
        self.num_class = 3 if objective == "multi:softprob" else 1
        self._key = key
        self._files = {}
        self._reloaded = {}

    def file(self, fmt):
        """Path of the saved model file in format `fmt` ("json" or "ubj")."""
        if fmt not in self._files:
            path = os.path.join(session_dir(), f"model-{self._key}.{fmt}")
            self.booster.save_model(path)
            self._files[fmt] = path
        return self._files[fmt]

    def reference(self, fmt="json"):
        """The booster as XGBoost loads it back from the saved file: the reference to compare to."""
        if fmt not in self._reloaded:
            self._reloaded[fmt] = xgb.Booster(model_file=self.file(fmt))
        return self._reloaded[fmt]

    def predict(self, x, fmt="json", **kwargs):
        """XGBoost's own prediction on float32 rows (NaN = missing), e.g. output_margin=True."""
        matrix = xgb.DMatrix(np.asarray(x, dtype=np.float32), missing=np.nan)
        return self.reference(fmt).predict(matrix, **kwargs)

    def split_conditions(self):
        """{feature index: sorted list of float32 split thresholds} over all trees."""
        with open(self.file("json")) as f:
            model = json.load(f)
        found = {}
        for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
            for left, feature, condition in zip(tree["left_children"], tree["split_indices"],
                                                tree["split_conditions"]):
                if left != -1:
                    found.setdefault(int(feature), set()).add(float(np.float32(condition)))
        return {feature: sorted(values) for feature, values in found.items()}


def train(objective, seed=1, rounds=40, max_depth=4, rows=2000):
    """Trains (once per argument set, cached) a booster on seeded data.

    `objective` is one of binary:logistic, multi:softprob (3 classes), reg:squarederror.
    """
    key = f"{objective.replace(':', '_')}-s{seed}-r{rounds}-d{max_depth}-n{rows}"
    if key not in _model_cache:
        x = make_features(rows, seed)
        y = _labels(objective, x, seed)
        params = {"objective": objective, "max_depth": max_depth, "eta": 0.3, "seed": seed,
                  "nthread": 1, "tree_method": "hist"}
        if objective == "multi:softprob":
            params["num_class"] = 3
        booster = xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan),
                            num_boost_round=rounds)
        _model_cache[key] = TrainedModel(objective, booster, key)
    return _model_cache[key]


def default_outputs(objective):
    """(name, shape, kind) of the outputs a model.yaml declares for `objective`."""
    contributions = ("contributions", [-1, NUM_FEATURES + 1], "contributions")
    if objective == "binary:logistic":
        return [("probability", [-1], "prediction"), ("margin", [-1], "margin"), contributions]
    if objective == "multi:softprob":
        return [("probability", [-1, 3], "prediction"), ("margin", [-1, 3], "margin")]
    if objective == "reg:squarederror":
        return [("prediction", [-1], "prediction"), ("margin", [-1], "margin"), contributions]
    raise ValueError(objective)


def prediction_output_name(objective):
    return "prediction" if objective == "reg:squarederror" else "probability"


def model_yaml(model_file, outputs, backend=None, batching=None, num_features=NUM_FEATURES,
               framework="xgboost"):
    """The text of a model.yaml. `outputs`: (name, shape, kind); `batching`: dict or None."""
    lines = [f"framework: {framework}"]
    if backend:
        lines.append(f"backend: {backend}")
    lines.append(f"model_file: {model_file}")
    lines.append("inputs:")
    lines.append(f"  - {{name: features, datatype: FP32, shape: [-1, {num_features}]}}")
    lines.append("outputs:")
    for name, shape, kind in outputs:
        dims = ", ".join(str(d) for d in shape)
        lines.append(f"  - {{name: {name}, datatype: FP32, shape: [{dims}], kind: {kind}}}")
    if batching:
        lines.append("batching:")
        for key, value in batching.items():
            lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"


class Repository:
    """A model repository in a temporary directory, built by the test."""

    def __init__(self, root=None):
        self.root = root or make_temp_dir("repo-")

    def path(self, *parts):
        return os.path.join(self.root, *[str(p) for p in parts])

    def write_version(self, directory, trained, fmt="json", backend=None, outputs=None,
                      batching=None, yaml_text=None):
        """Writes model.yaml and the model file of `trained` into `directory` (any path)."""
        os.makedirs(directory, exist_ok=True)
        file_name = f"model.{fmt}"
        shutil.copyfile(trained.file(fmt), os.path.join(directory, file_name))
        if yaml_text is None:
            yaml_text = model_yaml(file_name, outputs or default_outputs(trained.objective),
                                   backend=backend, batching=batching)
        with open(os.path.join(directory, "model.yaml"), "w") as f:
            f.write(yaml_text)
        return directory

    def add_version(self, model, version, trained, **kwargs):
        """DIR/model/version with `trained`'s file; kwargs as for write_version."""
        return self.write_version(self.path(model, version), trained, **kwargs)

    def add_example(self, model="machine-failure", version=1):
        """A copy of the bundled example model (XGBoost binary:logistic, batching on)."""
        destination = self.path(model, version)
        shutil.copytree(EXAMPLE_MODEL_DIR, destination)
        return destination

    def add_raw_version(self, model, version, files):
        """DIR/model/version holding `files` ({name: str or bytes}) verbatim."""
        directory = self.path(model, version)
        os.makedirs(directory, exist_ok=True)
        for name, content in files.items():
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(os.path.join(directory, name), mode) as f:
                f.write(content)
        return directory

    def set_policy(self, model, policy):
        """Writes DIR/model/serving.yaml with `version_policy: <policy>` (YAML text)."""
        os.makedirs(self.path(model), exist_ok=True)
        with open(self.path(model, "serving.yaml"), "w") as f:
            f.write(f"version_policy: {policy}\n")


def example_model():
    """The bundled example model as an XGBoost booster (for reference predictions).

    Its feature names are dropped so that it predicts on plain (unnamed) float32 matrices.
    """
    booster = xgb.Booster(model_file=str(EXAMPLE_MODEL_DIR / "model.json"))
    booster.feature_names = None
    return booster


def example_rows():
    """The 16 sample rows shipped with the example model, as float32."""
    path = REPO_ROOT / "examples" / "data" / "machine_failure_sample.csv"
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Inference request bodies and responses


def json_row(row):
    """A float32 row as JSON numbers (exact: every float32 is a double), NaN as null."""
    return [None if math.isnan(v) else float(v) for v in np.asarray(row, dtype=np.float32)]


def infer_body(rows, nested=False, outputs=None, request_id=None, input_name="features",
               datatype="FP32"):
    """An OIP inference request for float32 `rows` (2-D)."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows.reshape(1, -1)
    data = [json_row(r) for r in rows]
    if not nested:
        data = [v for r in data for v in r]
    body = {"inputs": [{"name": input_name, "datatype": datatype, "shape": list(rows.shape),
                        "data": data}]}
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    if request_id is not None:
        body["id"] = request_id
    return body


def flatten(data):
    """Flattens nested lists (row-major)."""
    if isinstance(data, list):
        out = []
        for item in data:
            out.extend(flatten(item))
        return out
    return [data]


def find_output(response_json, name):
    """The output named `name` of an inference response; AssertionError when absent."""
    outputs = response_json.get("outputs")
    if not isinstance(outputs, list):
        raise AssertionError(f"response has no outputs list: {response_json!r:.500}")
    for output in outputs:
        if output.get("name") == name:
            return output
    raise AssertionError(f"response has no output {name!r}; outputs: "
                         f"{[o.get('name') for o in outputs]}")


def output_array(response_json, name, shape=None):
    """The output's values as a float64 array of its declared shape.

    Checks the datatype is FP32, the shape is `shape` when given, and that the element count
    matches the shape. Nested data is accepted here (flatness is checked by its own test).
    """
    output = find_output(response_json, name)
    if output.get("datatype") != "FP32":
        raise AssertionError(f"output {name} datatype {output.get('datatype')!r}, want FP32")
    got_shape = output.get("shape")
    if shape is not None and got_shape != list(shape):
        raise AssertionError(f"output {name} shape {got_shape}, want {list(shape)}")
    values = flatten(output.get("data"))
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
        raise AssertionError(f"output {name} has non-numeric data: {values[:10]}")
    count = int(np.prod(got_shape)) if got_shape else 1
    if len(values) != count:
        raise AssertionError(f"output {name}: {len(values)} values for shape {got_shape}")
    return np.asarray(values, dtype=np.float64).reshape(got_shape)


def assert_close(actual, expected, atol, what="values"):
    """|actual - expected| <= atol * max(1, |expected|) element-wise, with a useful message."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, want {expected.shape}")
    limit = atol * np.maximum(1.0, np.abs(expected))
    diff = np.abs(actual - expected)
    bad = ~(diff <= limit)  # NaN in actual counts as bad
    if bad.any():
        index = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), bad.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} differ by more than {atol} (scaled); worst at "
            f"{tuple(int(i) for i in index)}: got {actual[index]!r}, want {expected[index]!r}")


# ----------------------------------------------------------------------------------------------
# HTTP


class Response:
    """A complete HTTP response: status, headers (case-insensitive get), body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self._headers = {}
        for name, value in headers:
            self._headers.setdefault(name.lower(), []).append(value)
        self.body = body
        self._json = None

    def header(self, name, default=None):
        values = self._headers.get(name.lower())
        return values[0] if values else default

    def header_values(self, name):
        return list(self._headers.get(name.lower(), []))

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        """The body parsed as JSON; AssertionError when it is not JSON."""
        if self._json is None:
            try:
                self._json = json.loads(self.body)
            except ValueError as e:
                raise AssertionError(
                    f"HTTP {self.status} body is not JSON ({e}): {self.body[:300]!r}") from None
        return self._json

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Client:
    """A keep-alive HTTP/1.1 client for one server (one connection; not thread-safe).

    A request that fails at the transport level closes the connection and raises; the next
    request opens a new one. Requests are never retried.
    """

    def __init__(self, port, timeout=10.0, host=HOST, retry_stale=False, server=None):
        self.port = port
        self.server = server  # when set, a transport error from a dead server says so
        self.host = host
        self.timeout = scaled(timeout)
        self.retry_stale = retry_stale
        self._conn = None
        self._used = False
        self.connections_opened = 0

    def _connection(self):
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._used = False
            self.connections_opened += 1
        return self._conn

    def request(self, method, path, body=None, headers=None):
        """Sends one request and reads the whole response.

        With retry_stale, a request that fails because the server had closed the idle
        keep-alive connection (no response byte at all) is sent once more on a new connection.
        """
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        reused = self._conn is not None and self._used
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
            self.close()
            if self.retry_stale and reused and self._server_alive():
                return self.request(method, path, body, headers)
            self._raise_if_server_died(e)
            raise
        except Exception as e:
            self.close()
            self._raise_if_server_died(e)
            raise
        self._used = True
        result = Response(response.status, response.getheaders(), data)
        if response.will_close:
            self.close()
        return result

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body, **kwargs)

    def infer(self, model, body, version=None):
        return self.post(infer_path(model, version), body)

    def _server_alive(self):
        return self.server is None or self.server.alive()

    def _raise_if_server_died(self, error):
        if self.server is not None and self.server.proc is not None:
            try:
                self.server.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                return
            raise AssertionError(
                f"{self.server.name} died ({describe_exit(self.server.proc.returncode)}) during "
                f"a request ({error!r})\n--- stderr tail ---\n{self.server.stderr_tail()}"
            ) from error

    @property
    def socket(self):
        return self._conn.sock if self._conn is not None else None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def infer_path(model, version=None):
    if version is None:
        return f"/v2/models/{model}/infer"
    return f"/v2/models/{model}/versions/{version}/infer"


def build_request(method, path, body=b"", headers=None, close=False):
    """Raw HTTP/1.1 request bytes with a correct Content-Length."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def connect(port, timeout=5.0):
    sock = socket.create_connection((HOST, port), timeout=scaled(timeout))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection before a complete response."""

    def __init__(self, partial):
        super().__init__(
            f"connection closed after {len(partial)} response bytes: {partial[:100]!r}")
        self.partial = partial


def read_response(sock, timeout=5.0, buffered=b""):
    """Reads one HTTP response from `sock`.

    Returns (Response, leftover bytes). Raises ConnectionClosed when the peer closes or resets
    before a complete response, socket.timeout when nothing completes within `timeout`.
    """
    sock.settimeout(scaled(timeout))
    data = buffered

    def more():
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            raise ConnectionClosed(data)
        return chunk

    while b"\r\n\r\n" not in data:
        data += more()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not match:
        raise AssertionError(f"not an HTTP response status line: {lines[0]!r}")
    status = int(match.group(1))
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    lowered = {n.lower(): v for n, v in headers}
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += more()
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += more()
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                break
        return Response(status, headers, body), rest
    if "content-length" in lowered:
        length = int(lowered["content-length"])
        while len(rest) < length:
            rest += more()
        return Response(status, headers, rest[:length]), rest[length:]
    if status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b""), rest
    body = rest  # no framing: the body runs to the end of the connection
    while True:
        try:
            body += more()
        except ConnectionClosed:
            return Response(status, headers, body), b""


def raw_exchange(port, data, timeout=5.0):
    """Sends `data` on a new connection and reads one response.

    Returns the Response, or None when the server closed the connection without one.
    """
    sock = connect(port, timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        try:
            response, _ = read_response(sock, timeout)
            return response
        except ConnectionClosed as closed:
            if closed.partial:
                raise AssertionError(f"truncated response: {closed.partial[:200]!r}") from None
            return None
    finally:
        sock.close()


def wait_closed(sock, timeout):
    """Reads (discarding) until the peer closes `sock`; returns seconds waited.

    Raises socket.timeout if it stays open for `timeout` seconds.
    """
    start = time.monotonic()
    sock.settimeout(scaled(timeout))
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            return time.monotonic() - start


# ----------------------------------------------------------------------------------------------
# Prometheus text format

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(value):
    return value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


class Metrics:
    """A parsed /metrics page: samples (name, labels, value) and declared types."""

    def __init__(self, text):
        self.text = text
        self.samples = []
        self.types = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3]
                continue
            match = _SAMPLE_RE.match(line)
            if not match:
                raise AssertionError(f"/metrics line {number} is not a sample: {line!r}")
            name, label_text, value = match.groups()
            labels = {}
            if label_text:
                position = 0
                label_text = label_text.strip()
                while position < len(label_text):
                    label = _LABEL_RE.match(label_text, position)
                    if not label or label.end() == position:
                        raise AssertionError(f"/metrics line {number} has bad labels: {line!r}")
                    labels[label.group(1)] = _unescape(label.group(2))
                    position = label.end()
            self.samples.append((name, labels, float(value)))

    def find(self, name, **labels):
        """Samples named `name` whose labels include `labels`."""
        return [s for s in self.samples
                if s[0] == name and all(s[1].get(k) == v for k, v in labels.items())]

    def value(self, name, **labels):
        """Sum of the matching samples; 0.0 when there are none (absent counter = 0)."""
        return sum(s[2] for s in self.find(name, **labels))

    def bucket(self, name, le, **labels):
        """The cumulative count of histogram `name` (base name) for bucket bound `le`."""
        total = 0.0
        found = False
        for sample_name, sample_labels, value in self.find(name + "_bucket", **labels):
            if float(sample_labels.get("le", "nan")) == le:
                total += value
                found = True
        if not found:
            raise AssertionError(f"no {name}_bucket with le={le} and labels {labels}")
        return total

    def names(self):
        return {s[0] for s in self.samples}


# ----------------------------------------------------------------------------------------------
# The server process

_live_processes = {}


def _kill_leftovers():
    for pid in list(_live_processes):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


atexit.register(_kill_leftovers)


def describe_exit(code):
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Server:
    """One `edgeloop serve` process on 127.0.0.1.

    `flags` are serve flags; `global_flags` go before the subcommand. By default the server
    listens on 127.0.0.1 port 0 (add_listen_flags=False leaves address and port to the
    caller, e.g. a config file). `command` replaces the binary (a list), for harness self-tests.
    """

    def __init__(self, repo=None, flags=(), global_flags=(), add_listen_flags=True, command=None,
                 name="edgeloop"):
        self.repo_root = repo.root if isinstance(repo, Repository) else repo
        self.name = name
        command = list(command) if command else [require_binary()]
        argv = command + list(global_flags) + ["serve"]
        if self.repo_root is not None:
            argv += ["--model-repository", self.repo_root]
        if add_listen_flags:
            argv += ["--http-address", HOST, "--http-port", "0"]
        self.argv = argv + list(flags)
        self.workdir = make_temp_dir("server-")
        self.proc = None
        self.port = None
        self.returncode = None
        self._lines = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = None
        self._stopped = False
        self._admin = None

    # -- process --------------------------------------------------------------------------------

    def start(self, timeout=20.0):
        """Starts the process and waits for the listening line; returns self."""
        with open(os.path.join(self.workdir, "stdout"), "wb") as stdout:
            self.proc = subprocess.Popen(self.argv, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=stdout, stderr=subprocess.PIPE)
        _live_processes[self.proc.pid] = self
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        try:
            self.port = self.wait_for_listening(timeout)
        except BaseException:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._finish()
            raise
        return self

    @property
    def pid(self):
        return self.proc.pid

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stderr_lines(self):
        with self._cond:
            return list(self._lines)

    def stderr_tail(self, count=40):
        lines = self.stderr_lines()[-count:]
        return "\n".join(lines) if lines else "(no stderr output)"

    def wait_for_log(self, predicate, timeout, what="log line"):
        """Waits for a stderr line for which predicate(line) is truthy; returns that value."""
        deadline = time.monotonic() + scaled(timeout)
        seen = 0
        with self._cond:
            while True:
                while seen < len(self._lines):
                    value = predicate(self._lines[seen])
                    seen += 1
                    if value:
                        return value
                if self._eof:
                    self.proc.wait()
                    raise AssertionError(
                        f"{self.name} exited ({describe_exit(self.proc.returncode)}) before "
                        f"{what}\n--- stderr tail ---\n{self.stderr_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {scaled(timeout):.1f}s\n"
                                         f"--- stderr tail ---\n{self.stderr_tail()}")
                self._cond.wait(remaining)

    def wait_for_listening(self, timeout):
        return self.wait_for_log(listening_port, timeout, "'listening ... port=N' line")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        if not self.alive():
            raise AssertionError(
                f"{self.name} (pid {self.proc.pid}) is not running: "
                f"{describe_exit(self.proc.poll())}\n--- stderr tail ---\n{self.stderr_tail()}")

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """Waits for the process to exit; returns its exit code (AssertionError on timeout)."""
        try:
            code = self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {scaled(timeout):.1f}s\n"
                                 f"--- stderr tail ---\n{self.stderr_tail()}") from None
        self._finish()
        return code

    def _finish(self):
        self.close_admin()
        self.returncode = self.proc.returncode
        _live_processes.pop(self.proc.pid, None)
        self._stopped = True
        if self._reader is not None:
            self._reader.join(scaled(5))
        if self.proc.stderr:
            self.proc.stderr.close()

    def stop(self, timeout=15.0, expect_code=0):
        """SIGTERM, then SIGKILL after `timeout`; fails if the server crashed or misbehaved.

        Safe to call twice. Returns the exit code.
        """
        if self.proc is None or self._stopped:
            return self.returncode
        self.close_admin()
        early = self.proc.poll()
        if early is not None:
            self._finish()
            raise AssertionError(f"{self.name} (pid {self.proc.pid}) died before it was stopped: "
                                 f"{describe_exit(early)}\n--- stderr tail ---\n"
                                 f"{self.stderr_tail()}")
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self._finish()
            raise AssertionError(f"{self.name} did not exit within {scaled(timeout):.1f}s of "
                                 f"SIGTERM; killed\n--- stderr tail ---\n{self.stderr_tail()}")
        self._finish()
        if expect_code is not None and code != expect_code:
            raise AssertionError(f"{self.name} exited with {describe_exit(code)} after SIGTERM, "
                                 f"want exit code {expect_code}\n--- stderr tail ---\n"
                                 f"{self.stderr_tail()}")
        return code

    # -- HTTP conveniences (main thread only) --------------------------------------------------

    def client(self, timeout=10.0):
        return Client(self.port, timeout, server=self)

    @property
    def admin(self):
        """A keep-alive client for checks made by the test's main thread."""
        if self._admin is None:
            self._admin = Client(self.port, retry_stale=True, server=self)
        return self._admin

    def close_admin(self):
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def metrics(self):
        response = self.admin.get("/metrics")
        if response.status != 200:
            raise AssertionError(f"GET /metrics: {response.status} {response.body[:200]!r}")
        return Metrics(response.text)

    def index(self, ready_only=False):
        response = self.admin.post("/v2/repository/index",
                                   {"ready": True} if ready_only else {})
        if response.status != 200:
            raise AssertionError(f"repository index: {response.status} {response.body[:200]!r}")
        if not isinstance(response.json, list):
            raise AssertionError(f"repository index is not a list: {response.json!r:.300}")
        return response.json

    def index_entry(self, model, version):
        """The index entry of model/version (version as a string), or None."""
        for entry in self.index():
            if entry.get("name") == model and entry.get("version") == str(version):
                return entry
        return None

    def wait_state(self, model, version, state, timeout=10.0):
        """Waits until the index shows model/version in `state`; returns the entry."""
        def check():
            self.assert_alive()
            entry = self.index_entry(model, version)
            return entry if entry and entry.get("state") == state else None
        try:
            return wait_until(check, timeout, f"{model}/{version} {state} in the index")
        except AssertionError as e:
            raise AssertionError(f"{e}\nindex entry: {self.index_entry(model, version)}")

    def wait_settled(self, models, timeout=30.0):
        """Waits until the index lists every model in `models` and none of their versions is
        LOADING or UNLOADING (each is READY or UNAVAILABLE); returns the index."""
        def check():
            self.assert_alive()
            index = self.index()
            listed = {e.get("name") for e in index}
            busy = [e for e in index if e.get("state") in ("LOADING", "UNLOADING")]
            return index if set(models) <= listed and not busy else None
        return wait_until(check, timeout, f"models {sorted(models)} loaded or failed")

    def wait_ready(self, timeout=20.0):
        """Waits for GET /v2/health/ready to answer 200."""
        def check():
            self.assert_alive()
            return self.admin.get("/v2/health/ready").status == 200
        wait_until(check, timeout, f"{self.name} ready")

    def wait_model_ready(self, model, version=None, timeout=20.0):
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/ready"

        def check():
            self.assert_alive()
            return self.admin.get(path).status == 200
        wait_until(check, timeout, f"{model} ready")


def listening_port(line):
    """The port of a `listening` log line (text or JSON format), else None."""
    line = line.strip()
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if isinstance(record, dict) and record.get("msg") == "listening":
            port = record.get("port")
            return int(port) if isinstance(port, (int, str)) and str(port).isdigit() else None
        return None
    match = re.search(r"\blistening\b.*\bport=(\d+)", line)
    return int(match.group(1)) if match else None


def run_cli(args, timeout=15.0, cwd=None):
    """Runs the binary with `args` to completion; returns CompletedProcess (text)."""
    return subprocess.run([require_binary()] + list(args), cwd=cwd or make_temp_dir("cli-"),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=scaled(timeout))


# ----------------------------------------------------------------------------------------------
# Load generation


class LoadGenerator:
    """Threads that send one request after another until stopped, recording every outcome.

    `body` is sent to `path`; each outcome is (thread, sent_at, received_at, status,
    parsed JSON or None, error text or None). Outcomes are appended under a lock.
    """

    def __init__(self, port, path, body, threads=2):
        self.port = port
        self.path = path
        self.body = json.dumps(body).encode()
        self.outcomes = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(scaled(15))

    def _run(self, index):
        client = Client(self.port, timeout=10.0)
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = client.post(self.path, self.body)
                try:
                    parsed = json.loads(response.body)
                except ValueError:
                    parsed = None
                outcome = (index, sent, time.monotonic(), response.status, parsed, None)
            except Exception as e:  # every transport failure is a recorded failure
                outcome = (index, sent, time.monotonic(), None, None, repr(e))
            with self._lock:
                self.outcomes.append(outcome)
        client.close()

    def snapshot(self):
        with self._lock:
            return list(self.outcomes)

    def first(self, predicate):
        """The first recorded outcome for which predicate(outcome) is true, or None."""
        for outcome in self.snapshot():
            if predicate(outcome):
                return outcome
        return None


# ----------------------------------------------------------------------------------------------
# Test case base


class ServerTestCase(unittest.TestCase):
    """Starts servers that are stopped (and checked for crashes) when the test or class ends."""

    maxDiff = 4000

    def start_server(self, repo, flags=(), **kwargs):
        server = Server(repo, flags, **kwargs)
        self.addCleanup(server.stop)
        return server.start()

    @classmethod
    def start_class_server(cls, repo, flags=(), **kwargs):
        server = Server(repo, flags, **kwargs)
        cls.addClassCleanup(server.stop)
        return server.start()

    def assert_error(self, response, status, what=""):
        """`response` has `status` and a JSON object body with a non-empty "error" string."""
        context = f"{what}: " if what else ""
        self.assertEqual(response.status, status, f"{context}body {response.body[:300]!r}")
        body = response.json
        self.assertIsInstance(body, dict, f"{context}error body is not an object: {body!r}")
        self.assertIsInstance(body.get("error"), str, f"{context}no error string: {body!r}")
        self.assertTrue(body["error"].strip(), f"{context}empty error: {body!r}")
