"""Machinery for the black-box tests of `edgeloop hub`: a real PostgreSQL cluster in a temp dir,
the hub process, and a small HTTP client. Used by test_hub.py and tests/browser."""
import gzip
import http.client
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def binary():
    path = os.environ.get("EDGELOOP_BIN") or str(REPO_ROOT / "build" / "edgeloop")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError(f"edgeloop binary not found at {path}; build it or set EDGELOOP_BIN")
    return os.path.abspath(path)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def postgres_bin_dir():
    root = pathlib.Path("/usr/lib/postgresql")
    found = sorted(p / "bin" for p in root.glob("*") if (p / "bin" / "initdb").exists()) if root.exists() else []
    return str(found[-1]) if found else None


class Postgres:
    """A PostgreSQL cluster on 127.0.0.1 on a free port, in a temp dir, stopped by PID. As root
    the server runs as the `postgres` user (PostgreSQL refuses root)."""

    def __init__(self, durable=False):
        self.bin = postgres_bin_dir()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL is not installed")
        self.dir = tempfile.mkdtemp(prefix="edgeloop-hub-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = open(os.path.join(self.dir, "postgres.log"), "wb")
        self.preexec = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

            def drop():
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            self.preexec = drop
        subprocess.run([f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-sync"], check=True, stdout=self.log, stderr=self.log,
                       preexec_fn=self.preexec)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [f"{self.bin}/postgres", "-D", self.data, "-p", str(self.port), "-k", self.dir,
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
             "-c", "fsync=" + ("on" if durable else "off")],
            stdout=self.log, stderr=self.log, preexec_fn=self.preexec)
        wait_until(lambda: self.psql("postgres", "SELECT 1", check=False).returncode == 0, 30,
                   "PostgreSQL to accept connections")

    def psql(self, db, sql, check=True):
        return subprocess.run([f"{self.bin}/psql", "-h", HOST, "-p", str(self.port), "-U", "postgres",
                               "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              capture_output=True, text=True, check=check)

    def create_database(self, name):
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@{HOST}:{self.port}/{name}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_cli(*args, check=True):
    result = subprocess.run([binary(), *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"edgeloop {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


class Hub:
    """`edgeloop hub serve` on 127.0.0.1, port 0; stopped by PID."""

    def __init__(self, store, *flags):
        self.stderr_path = tempfile.mktemp(prefix="edgeloop-hub-", suffix=".log")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([binary(), "hub", "serve", "--store", store, "--http-address", HOST,
                                      "--http-port", "0", *flags],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.port = wait_until(self._port, 30, "the hub's listening line")

    def _port(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"hub exited with {self.proc.returncode}: {self.log()}")
        for line in self.log().splitlines():
            if "listening" in line and "port=" in line:
                return int(line.split("port=")[1].split()[0])
        return None

    def log(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, dict(response.getheaders()), data
        finally:
            conn.close()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        code = self.proc.returncode
        os.unlink(self.stderr_path)
        return code


def uuid7():
    """A UUIDv7 string (48-bit Unix ms, version 7, variant bits, random)."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def event(site=None, kind="insight", score=0.1, version="3", ts_ms=None, event_id=None, **extra):
    e = {
        "id": event_id or uuid7(),
        "type": kind,
        "timestamp": ts_ms if ts_ms is not None else int(time.time() * 1000),
        "model": {"name": "machine-failure", "version": version, "digest": "sha256:" + "ab" * 32},
        "request_id": uuid7(),
        "latency_ms": 1.5,
        "inputs": {"features": [0.1, 0.2]},
        "outputs": {"probability": score},
        "anomaly": {"verdict": kind == "anomaly", "score": score},
        "prediction": "fail" if score > 0.5 else "ok",
    }
    if site is not None:
        e["site"] = site
    e.update(extra)
    return e


def jsonl(events):
    return ("\n".join(json.dumps(e) for e in events) + "\n").encode()


def gzipped(data):
    return gzip.compress(data)


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
