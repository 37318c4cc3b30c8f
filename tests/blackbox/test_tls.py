"""Black-box tests of native TLS (`--tls-cert/--tls-key/--tls-client-ca`) in `edgeloop hub serve`
and `edgeloop serve`, and of the worker uploading to an https:// hub with a private CA.

Certificates are made at test time with the openssl command line in a temp dir (nothing is
committed): a CA, a server certificate for 127.0.0.1 signed by it, a second CA nobody trusts, and
a client CA with one site certificate for mutual TLS."""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import hub_util as hu

HOST = "127.0.0.1"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return os.path.join(d, f"{name}.crt")


def make_leaf(d, name, ca):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    return os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")


def https_request(port, path, ca, token=None, cert=None, method="GET", body=None):
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(*cert)
    conn = http.client.HTTPSConnection(HOST, port, timeout=10, context=context)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def plain_exchange(port, data):
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out
            out += chunk


class Certs:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="edgeloop-tls-")
        self.ca = make_ca(self.dir, "ca")
        self.server = make_leaf(self.dir, "server", "ca")
        self.other_ca = make_ca(self.dir, "other-ca")
        self.client_ca = make_ca(self.dir, "client-ca")
        self.site = make_leaf(self.dir, "site-north", "client-ca")

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class HubTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.close()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="edgeloop-tls-hub-")
        self.store = "sqlite://" + os.path.join(self.tmp, "hub.db")
        self.north = hu.run_cli("hub", "site", "add", "north", "--store", self.store).stdout.strip()
        self.reader = hu.run_cli("hub", "token", "add", "dash", "--role", "read",
                                 "--store", self.store).stdout.strip()
        self.hubs = []
        self.workers = []

    def tearDown(self):
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for hub in self.hubs:
            self.assertEqual(hub.stop(), 0)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_hub(self, *flags):
        cert, key = self.certs.server
        hub = hu.Hub(self.store, "--tls-cert", cert, "--tls-key", key, *flags)
        self.hubs.append(hub)
        return hub

    def events_stored(self, hub):
        status, body = https_request(hub.port, "/api/v1/sites", self.certs.ca, self.reader)
        self.assertEqual(status, 200, body)
        return {s["site"]: s["events_total"] for s in json.loads(body)["rows"]}["north"]

    def test_https_plain_http_and_wrong_ca(self):
        hub = self.start_hub()
        self.assertIn("tls=true", hub.log())
        status, body = https_request(hub.port, "/api/v1/sites", self.certs.ca, self.reader)
        self.assertEqual(status, 200, body)
        # Plain HTTP to the TLS port: a readable 400, then the connection closes.
        answer = plain_exchange(hub.port, b"GET /api/v1/sites HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
        self.assertIn(b"use https://", answer)
        # A client that trusts another CA refuses the hub.
        with self.assertRaises(ssl.SSLCertVerificationError):
            https_request(hub.port, "/api/v1/sites", self.certs.other_ca, self.reader)
        # TLS 1.1 is refused by the hub.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.certs.ca)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError):
            with socket.create_connection((HOST, hub.port), timeout=10) as s:
                context.wrap_socket(s, server_hostname=HOST).close()
        self.assertNotIn("PRIVATE KEY", hub.log())

    def write_worker(self, ca, queue, extra=""):
        with open(os.path.join(self.tmp, "hub.token"), "w") as f:
            f.write(self.north + "\n")
        with open(os.path.join(self.tmp, "policy.yaml"), "w") as f:
            f.write("destination: hub\nallow: [id, type, site, timestamp, score, model]\n")
        chain = os.path.join(self.tmp, f"chain-{os.path.basename(ca)}.yaml")
        url = f"https://127.0.0.1:{self.hubs[-1].port}/api/v1/ingest"
        with open(chain, "w") as f:
            f.write("functions:\n"
                    "  - compliance: {policy: policy.yaml, audit_log: audit.jsonl}\n"
                    f"  - upload: {{destination: hub, url: '{url}', token_file: hub.token,\n"
                    f"              ca_file: '{ca}', timeout_ms: 5000{extra}}}\n")
        log = open(os.path.join(self.tmp, f"worker-{len(self.workers)}.log"), "wb")
        worker = subprocess.Popen(
            [hu.binary(), "worker", "--queue", queue, "--function", chain, "--metrics-port", "0",
             "--lease-wait-ms", "50", "--probe-initial-ms", "50", "--probe-max-ms", "200",
             "--visibility-ms", "3000", "--drain-timeout-ms", "3000"],
            stdout=subprocess.DEVNULL, stderr=log)
        self.workers.append(worker)
        return worker, log.name

    def test_worker_uploads_over_https_with_the_ca_file_and_refuses_a_wrong_ca(self):
        hub = self.start_hub()
        queue = "file://" + os.path.join(self.tmp, "queue")
        lines = "".join(json.dumps({"id": hu.uuid7(), "type": "insight", "site": "north",
                                    "timestamp": int(time.time() * 1000), "score": i / 10,
                                    "model": {"name": "m", "version": "1"}}) + "\n"
                        for i in range(10))
        subprocess.run([hu.binary(), "queue", "append", "--queue", queue], input=lines, text=True,
                       check=True, capture_output=True, timeout=30)

        # Trusting the wrong CA: nothing is delivered, the worker says why and holds back.
        worker, log = self.write_worker(self.certs.other_ca, queue)
        hu.wait_until(lambda: "certificate" in open(log, errors="replace").read().lower(), 20,
                      "the worker to report the untrusted certificate")
        worker.send_signal(signal.SIGTERM)
        self.assertEqual(worker.wait(20), 0)
        self.assertEqual(self.events_stored(hub), 0)

        # With the hub's CA every event arrives, once.
        worker, _ = self.write_worker(self.certs.ca, queue)
        hu.wait_until(lambda: self.events_stored(hub) == 10, 20, "the 10 events at the hub")
        worker.send_signal(signal.SIGTERM)
        self.assertEqual(worker.wait(20), 0)

    def test_mutual_tls_needs_a_site_certificate(self):
        hub = self.start_hub("--tls-client-ca", self.certs.client_ca)
        status, _ = https_request(hub.port, "/api/v1/sites", self.certs.ca, self.reader,
                                  cert=self.certs.site)
        self.assertEqual(status, 200)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            https_request(hub.port, "/api/v1/sites", self.certs.ca, self.reader)

    def test_sighup_reloads_a_renewed_certificate(self):
        d = os.path.join(self.tmp, "live")
        os.makedirs(d)
        shutil.copy(os.path.join(self.certs.dir, "ca.crt"), d)
        shutil.copy(os.path.join(self.certs.dir, "ca.key"), d)
        cert, key = make_leaf(d, "hub", "ca")
        hub = hu.Hub(self.store, "--tls-cert", cert, "--tls-key", key)
        self.hubs.append(hub)
        new_ca = make_ca(d, "new-ca")
        make_leaf(d, "renewed", "new-ca")
        os.replace(os.path.join(d, "renewed.key"), key)
        os.replace(os.path.join(d, "renewed.crt"), cert)
        hub.proc.send_signal(signal.SIGHUP)
        hu.wait_until(lambda: "TLS certificate loaded" in hub.log(), 10, "the reload")
        status, _ = https_request(hub.port, "/api/v1/sites", new_ca, self.reader)
        self.assertEqual(status, 200)

    def test_bad_tls_flags_fail_at_start_with_the_file_named(self):
        cert, key = self.certs.server
        other_key = os.path.join(self.certs.dir, "other-ca.key")
        result = subprocess.run([hu.binary(), "hub", "serve", "--store", self.store,
                                 "--http-address", HOST, "--http-port", "0", "--tls-cert", cert,
                                 "--tls-key", other_key], capture_output=True, text=True,
                                timeout=30)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("does not match", result.stderr)
        self.assertIn("other-ca.key", result.stderr)
        self.assertNotIn("PRIVATE KEY", result.stderr)
        result = subprocess.run([hu.binary(), "hub", "serve", "--store", self.store,
                                 "--tls-cert", cert], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--tls-key", result.stderr)


class ServeTlsTest(unittest.TestCase):
    def test_serve_over_https(self):
        certs = Certs()
        self.addCleanup(certs.close)
        repo = tempfile.mkdtemp(prefix="edgeloop-tls-repo-")
        self.addCleanup(shutil.rmtree, repo, True)
        shutil.copytree(os.path.join(hu.REPO_ROOT, "examples", "models", "machine-failure"),
                        os.path.join(repo, "machine-failure"))
        cert, key = certs.server
        log_path = os.path.join(repo, "serve.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([hu.binary(), "serve", "--model-repository", repo,
                                     "--http-address", HOST, "--http-port", "0",
                                     "--poll-interval-ms", "0", "--tls-cert", cert, "--tls-key", key],
                                    stdout=subprocess.DEVNULL, stderr=log)

        def port():
            if proc.poll() is not None:
                raise AssertionError(open(log_path).read())
            for line in open(log_path, errors="replace"):
                if "listening" in line and "port=" in line:
                    return int(line.split("port=")[1].split()[0])
            return None
        try:
            p = hu.wait_until(port, 30, "serve's listening line")
            hu.wait_until(lambda: https_request(p, "/v2/health/ready", certs.ca)[0] == 200, 30,
                          "the model to be ready")
            row = [0.5] * 20
            body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32",
                                           "shape": [1, 20], "data": row}]})
            status, data = https_request(p, "/v2/models/machine-failure/infer", certs.ca,
                                         method="POST", body=body)
            self.assertEqual(status, 200, data)
            answer = plain_exchange(p, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
        finally:
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(30), 0, open(log_path).read())


if __name__ == "__main__":
    unittest.main()
