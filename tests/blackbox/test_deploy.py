"""Edge deployment from a registry: `edgeloop serve --deployment FILE` (docs/serve.md).

The real Debian `docker-registry` (Distribution 2.8.2) runs on a free 127.0.0.1 port in a
temporary directory, and models are published to it with the `edgeloop model` CLI (keygen,
package, promote, sign, tag, push), as a release pipeline would. The server follows `:champion`:

  - a promotion is served within the poll interval while two client threads send requests, with
    zero failed requests and every answer equal to the one of the version it names;
  - an unsigned push, a signature by a key the edge does not trust, an expired signature and a
    rollback (the alias moved back to an older model without a new signature) are refused: each
    shows in GET /v2/deployment and in edgeloop_deploy_refusals_total, nothing of it reaches the
    model repository, and the old version keeps serving;
  - with the registry stopped, the server restarts at once and serves from its cache, reports the
    registry unreachable, and catches up when the registry is back;
  - invalid deployment files stop `serve` with a message.

The expired signature is made here, in an OCI layout, with libsodium through ctypes (the CLI
refuses to sign for less than a day), following the format in src/registry/signing.h; the CLI
then pushes it to the registry with the model.
"""
import atexit
import base64
import ctypes
import ctypes.util
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import unittest

import harness

MODEL = "mf"
POLL_MS = 300
SWAP_SLACK_S = 3.0
REGISTRY_BIN = "/usr/bin/docker-registry"

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
SIGNATURE_ARTIFACT = "application/vnd.edgeloop.signature.v1"
SIGNATURE_PAYLOAD = "application/vnd.edgeloop.signature.payload.v1+json"


# ----------------------------------------------------------------------------------------------
# The registry


_registries = []


def _stop_registries():
    for proc in _registries:
        if proc.poll() is None:
            proc.kill()


atexit.register(_stop_registries)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((harness.HOST, 0))
        return sock.getsockname()[1]


class DockerRegistry:
    """docker-registry on 127.0.0.1 with its storage in a temporary directory.

    stop() and start() again keep the storage and the port.
    """

    def __init__(self):
        self.dir = harness.make_temp_dir("registry-")
        self.port = free_port()
        self.config = os.path.join(self.dir, "config.yml")
        self.log_path = os.path.join(self.dir, "registry.log")
        with open(self.config, "w") as f:
            f.write("version: 0.1\n"
                    "log:\n  level: warn\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/storage\n"
                    "  delete:\n    enabled: true\n"
                    f"http:\n  addr: {harness.HOST}:{self.port}\n")
        self.proc = None

    def start(self, timeout=20.0):
        if not os.access(REGISTRY_BIN, os.X_OK):
            raise AssertionError(f"{REGISTRY_BIN} is missing; run scripts/bootstrap")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", self.config],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        _registries.append(self.proc)
        harness.wait_until(self._answers, timeout, "docker-registry answering GET /v2/")
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            with open(self.log_path, errors="replace") as f:
                raise AssertionError(f"docker-registry exited ({self.proc.returncode}):\n"
                                     f"{f.read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(harness.HOST, self.port, timeout=2)
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            conn.close()
            return status == 200
        except OSError:
            return False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(harness.scaled(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def ref(self, repository, tag):
        return f"oci://{harness.HOST}:{self.port}/{repository}:{tag}"


# ----------------------------------------------------------------------------------------------
# Publishing


def model_cli(*args):
    """Runs `edgeloop model ARGS`; AssertionError with its output when it fails."""
    result = harness.run_cli(["model"] + [str(a) for a in args], timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"edgeloop model {' '.join(str(a) for a in args)} failed "
                             f"({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def version_model(version):
    return harness.train("binary:logistic", seed=70 + version, rounds=15, max_depth=3)


def probe_row():
    return harness.example_rows()[4:5]


def model_dir(version):
    """A model folder DIR/mf/<version> holding version_model(version) (packaged as mf, N)."""
    directory = os.path.join(harness.session_dir(), "deploy-models", MODEL, str(version))
    if not os.path.isdir(directory):
        harness.Repository(harness.session_dir()).write_version(directory, version_model(version))
    return directory


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def ed25519_sign(secret_key, message):
    """libsodium's crypto_sign_detached (the library the project links)."""
    sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
    if sodium.sodium_init() < 0:
        raise AssertionError("libsodium failed to initialise")
    sodium.crypto_sign_detached.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p,
                                            ctypes.c_ulonglong, ctypes.c_char_p]
    signature = ctypes.create_string_buffer(64)
    if sodium.crypto_sign_detached(signature, None, message, len(message), secret_key) != 0:
        raise AssertionError("crypto_sign_detached failed")
    return signature.raw


def add_expired_signature(layout, tag, key_file, repository):
    """Signs `tag` of an OCI layout as `edgeloop model sign` would, except that the signature
    expired an hour ago (and carries a counter above any the edge has seen)."""
    with open(key_file) as f:
        key = json.load(f)
    secret = base64.b64decode(key["secret_key"])

    def blob(media_type, data, **extra):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(layout, "blobs", "sha256", digest[7:]), "wb") as f:
            f.write(data)
        return dict({"mediaType": media_type, "digest": digest, "size": len(data)}, **extra)

    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    subject = next(m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == tag)
    now = int(time.time())
    claims = canonical({"type": "edgeloop.signature.v1", "repository": repository,
                        "manifest_digest": subject["digest"], "counter": now + 3600,
                        "expires": rfc3339(now - 3600), "key_id": key["key_id"],
                        "signed_at": rfc3339(now - 7200)})
    manifest = canonical({
        "schemaVersion": 2, "mediaType": IMAGE_MANIFEST, "artifactType": SIGNATURE_ARTIFACT,
        "config": blob(EMPTY, b"{}"),
        "layers": [blob(SIGNATURE_PAYLOAD, claims)],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
        "annotations": {"dev.edgeloop.signature":
                        base64.b64encode(ed25519_sign(secret, claims)).decode(),
                        "dev.edgeloop.key-id": key["key_id"]}})
    referrers = canonical({"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": [
        blob(IMAGE_MANIFEST, manifest, artifactType=SIGNATURE_ARTIFACT,
             annotations={"dev.edgeloop.key-id": key["key_id"]})]})
    index["manifests"].append(blob(IMAGE_INDEX, referrers,
                                   annotations={REF_NAME: "sha256-" + subject["digest"][7:]}))
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


# ----------------------------------------------------------------------------------------------
# Tests


class DeployTestBase(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.keys = harness.make_temp_dir("keys-")
        model_cli("keygen", "--out", os.path.join(cls.keys, "release"))
        model_cli("keygen", "--out", os.path.join(cls.keys, "stranger"))
        cls.expected = {str(v): float(version_model(v).predict(probe_row())[0])
                        for v in (1, 2)}
        if abs(cls.expected["1"] - cls.expected["2"]) < 1e-3:
            raise AssertionError(f"the test models are not distinguishable: {cls.expected}")

    def key(self, name):
        return os.path.join(self.keys, name)

    def write_deployment(self, registry, repository, extra=""):
        directory = harness.make_temp_dir("deployment-")
        path = os.path.join(directory, "deployment.yaml")
        with open(path, "w") as f:
            f.write(f"cache_dir: cache\n"
                    f"poll_interval_s: 60\n"
                    f"trusted_keys: [{self.key('release.pub')}]\n"
                    f"models:\n"
                    f"  - name: {MODEL}\n"
                    f"    ref: {registry.ref(repository, 'champion')}\n" + extra)
        return path

    def start_deployed(self, deployment, timeout=20.0):
        # The file says 60 s; the flag makes the test fast (and is what it tests as well).
        server = harness.Server(None, ["--deployment", deployment,
                                       "--deployment-poll-interval-ms", str(POLL_MS)])
        self.addCleanup(server.stop)
        return server.start(timeout)

    def report(self, server):
        response = server.admin.get("/v2/deployment")
        self.assertEqual(response.status, 200, response.body[:300])
        models = response.json["models"]
        self.assertEqual([m["name"] for m in models], [MODEL])
        return models[0]

    def infer_version(self, server):
        response = server.admin.post(harness.infer_path(MODEL), harness.infer_body(probe_row()))
        self.assertEqual(response.status, 200, response.body[:300])
        return response.json["model_version"]

    def wait_report(self, server, predicate, what, timeout=10.0):
        def check():
            server.assert_alive()
            report = self.report(server)
            return report if predicate(report) else None
        try:
            return harness.wait_until(check, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nreport: {self.report(server)}") from None


class FollowChampionTest(DeployTestBase):
    REPOSITORY = "models/follow"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = DockerRegistry().start()
        cls.addClassCleanup(cls.registry.stop)

    def ref(self, tag):
        return self.registry.ref(self.REPOSITORY, tag)

    @staticmethod
    def version_of(outcome):
        body = outcome[4]
        return body.get("model_version") if isinstance(body, dict) else None

    def check_outcomes(self, outcomes):
        self.assertGreater(len(outcomes), 50, "too little load to judge")
        failures = []
        newest = {}
        for thread, sent, received, status, body, error in outcomes:
            if status != 200:
                failures.append(f"status {status} error {error} body {str(body)[:200]}")
                continue
            version = body.get("model_version")
            if version not in self.expected:
                failures.append(f"answered by unexpected version {version!r}")
                continue
            got = harness.output_array(body, "probability")[0]
            if abs(got - self.expected[version]) > 1e-6:
                failures.append(f"version {version} answered {got}, want {self.expected[version]}")
            if int(version) < newest.get(thread, 0):
                failures.append(f"thread {thread} went back to version {version}")
            newest[thread] = max(newest.get(thread, 0), int(version))
        self.assertEqual(failures[:10], [], f"{len(failures)} bad outcomes of {len(outcomes)}")

    def wait_refusal(self, server, reason, served="2"):
        """The report shows `reason`, the metric counted it once, and version `served` serves."""
        report = self.wait_report(
            server,
            lambda r: r["last_refusal"] is not None and r["last_refusal"]["reason"] == reason,
            f"a '{reason}' refusal in /v2/deployment")
        self.assertEqual(report["local_version"], int(served))
        self.assertTrue(report["last_refusal"]["message"])
        self.assertEqual(server.metrics().value("edgeloop_deploy_refusals_total", model=MODEL,
                                                reason=reason), 1)
        self.assertEqual(self.infer_version(server), served)
        return report

    def test_follows_champion_under_load_and_refuses_bad_pushes(self):
        model_cli("package", model_dir(1), self.ref("v1"))
        model_cli("promote", self.ref("v1"), "champion", "--key", self.key("release.key"),
                  "--reason", "first release")
        first_promotion = int(time.time())
        deployment = self.write_deployment(self.registry, self.REPOSITORY)
        server = self.start_deployed(deployment)
        server.wait_model_ready(MODEL, timeout=30)
        server.wait_ready()
        self.assertEqual(self.infer_version(server), "1")
        report = self.wait_report(server, lambda r: r["local_version"] == 1, "version 1 recorded")
        self.assertEqual(report["ref"], self.ref("champion"))
        self.assertEqual(report["repository"], self.REPOSITORY)
        self.assertEqual(self.wait_report(server, lambda r: r["checks"] >= 2, "a second check")
                         ["last_result"], "unchanged")
        self.assertEqual(self.report(server)["last_refusal"], None)

        model_cli("package", model_dir(2), self.ref("v2"))
        # Signature counters count seconds: the second promotion must be in a later second
        # than the first for the rollback below to be one.
        harness.wait_until(lambda: int(time.time()) > first_promotion, 2, "the next second")
        with harness.LoadGenerator(server.port, harness.infer_path(MODEL),
                                   harness.infer_body(probe_row()), threads=2) as load:
            start = len(load.snapshot())
            harness.wait_until(lambda: len(load.snapshot()) >= start + 20, 10, "load")
            model_cli("promote", self.ref("v2"), "champion", "--key", self.key("release.key"),
                      "--reason", "better AUC")
            promoted = time.monotonic()
            outcome = harness.wait_until(
                lambda: load.first(lambda o: self.version_of(o) == "2"),
                POLL_MS / 1000 + SWAP_SLACK_S, "a response from version 2")
            self.assertLessEqual(outcome[2] - promoted,
                                 harness.scaled(POLL_MS / 1000 + SWAP_SLACK_S))
            start = len(load.snapshot())
            harness.wait_until(lambda: len(load.snapshot()) >= start + 20, 10, "load after")
        self.check_outcomes(load.snapshot())
        self.wait_report(server, lambda r: r["local_version"] == 2, "version 2 recorded")
        self.assertEqual(server.metrics().value("edgeloop_deploy_checks_total", model=MODEL,
                                                result="updated"), 2)
        server.wait_state(MODEL, 1, "UNAVAILABLE")  # replaced (the folder is kept, unloaded)

        # An unsigned model pushed straight onto the alias.
        model_cli("package", model_dir(1), self.ref("champion"), "--version", "3")
        self.wait_refusal(server, "unsigned")

        # Signed, but by a key this edge does not trust.
        model_cli("package", model_dir(1), self.ref("v4"), "--version", "4")
        model_cli("sign", self.ref("v4"), "--key", self.key("stranger.key"))
        model_cli("tag", self.ref("v4"), "champion")
        self.wait_refusal(server, "untrusted_key")

        # Signed by the trusted key, but expired.
        stage = os.path.join(harness.make_temp_dir("stage-"), "follow")
        model_cli("package", model_dir(1), f"layout://{stage}:v5", "--version", "5")
        add_expired_signature(stage, "v5", self.key("release.key"), self.REPOSITORY)
        # Pushed under its own tag first: `push` moves the destination tag before it copies the
        # signatures, and an edge looking in between would (rightly) call it unsigned.
        model_cli("push", f"layout://{stage}:v5", self.ref("v5"))
        model_cli("tag", self.ref("v5"), "champion")
        self.wait_refusal(server, "expired")

        # The alias moved back to version 1 without a new signature: a rollback.
        model_cli("tag", self.ref("v1"), "champion")
        self.wait_refusal(server, "rollback")

        # None of it reached the model repository; every check still answers.
        cache_repository = os.path.join(os.path.dirname(deployment), "cache", "repository", MODEL)
        self.assertEqual(sorted(os.listdir(cache_repository)), ["1", "2"])
        self.assertEqual([e["version"] for e in server.index() if e["name"] == MODEL], ["1", "2"])
        self.assertEqual(server.metrics().value("edgeloop_deploy_refusals_total", model=MODEL), 4)


class DisconnectedSiteTest(DeployTestBase):
    REPOSITORY = "models/site"

    def test_restarts_and_serves_from_cache_with_the_registry_stopped(self):
        registry = DockerRegistry().start()
        self.addCleanup(registry.stop)
        model_cli("package", model_dir(1), registry.ref(self.REPOSITORY, "v1"))
        model_cli("promote", registry.ref(self.REPOSITORY, "v1"), "champion", "--key",
                  self.key("release.key"), "--reason", "first release")
        deployment = self.write_deployment(registry, self.REPOSITORY)
        server = self.start_deployed(deployment)
        server.wait_model_ready(MODEL, timeout=30)
        self.assertEqual(self.infer_version(server), "1")
        server.stop()

        registry.stop()
        started = time.monotonic()
        server = self.start_deployed(deployment, timeout=10)
        server.wait_ready(timeout=10)  # from the cache, without waiting for the registry
        self.assertLess(time.monotonic() - started, harness.scaled(10))
        self.assertEqual(self.infer_version(server), "1")
        report = self.wait_report(server, lambda r: r["last_result"] == "unreachable",
                                  "the registry reported unreachable")
        self.assertEqual(report["local_version"], 1)
        self.assertTrue(report["last_error"])
        self.assertGreaterEqual(server.metrics().value("edgeloop_deploy_checks_total",
                                                       model=MODEL, result="unreachable"), 1)
        self.assertEqual(self.infer_version(server), "1")

        # The registry comes back (same storage and port): the edge catches up.
        registry.start()
        model_cli("package", model_dir(2), registry.ref(self.REPOSITORY, "v2"))
        model_cli("promote", registry.ref(self.REPOSITORY, "v2"), "champion", "--key",
                  self.key("release.key"), "--reason", "back online")
        self.wait_report(server, lambda r: r["local_version"] == 2, "version 2 deployed")
        harness.wait_until(lambda: self.infer_version(server) == "2", 5, "version 2 serving")
        self.assertIsNone(self.report(server)["last_error"])


class DeploymentFileTest(DeployTestBase):
    def check_fails(self, text, needle):
        directory = harness.make_temp_dir("bad-deployment-")
        path = os.path.join(directory, "deployment.yaml")
        with open(path, "w") as f:
            f.write(text)
        result = harness.run_cli(["serve", "--deployment", path, "--http-address", harness.HOST,
                                  "--http-port", "0"], timeout=10)
        output = result.stdout + result.stderr
        self.assertGreater(result.returncode, 0, output)
        self.assertIn(needle, output)
        self.assertFalse(os.path.exists(os.path.join(directory, "cache")), output)

    def test_invalid_deployment_files_stop_the_server(self):
        models = "models:\n  - {name: mf, ref: 'oci://127.0.0.1:1/models/mf:champion'}\n"
        keys = f"trusted_keys: [{self.key('release.pub')}]\n"
        self.check_fails("cache_dir: cache\n" + keys + models + "colour: blue\n",
                         "unknown key 'colour'")
        self.check_fails("cache_dir: cache\n" + models, "trusted_keys")
        self.check_fails("cache_dir: cache\ntrusted_keys: [absent.pub]\n" + models,
                         "trusted_keys[0]")
        self.check_fails("cache_dir: cache\n" + keys + "models:\n  - {name: mf}\n",
                         "'ref' is required")
        self.check_fails(keys + models, "'cache_dir' is required")

    def test_help_lists_the_deployment_flags(self):
        result = harness.run_cli(["serve", "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("--deployment ", result.stdout)
        self.assertIn("--deployment-poll-interval-ms", result.stdout)

    def test_a_repository_or_a_deployment_is_required(self):
        result = harness.run_cli(["serve", "--http-address", harness.HOST, "--http-port", "0"],
                                 timeout=10)
        self.assertGreater(result.returncode, 0)
        self.assertIn("--model-repository", result.stderr)
        self.assertIn("--deployment", result.stderr)


if __name__ == "__main__":
    unittest.main()
