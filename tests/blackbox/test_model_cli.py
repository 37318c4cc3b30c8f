"""`edgeloop model`: the CLI end to end on OCI image layouts, its exit codes and error messages
for bad input, signatures travelling with copies, tampering caught on pull, promotions.
(Registry round trips with docker-registry are in test_deploy.py and the C++ registry tests.)
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import unittest

import harness


def model_cli(*args, check=None, timeout=60):
    """Runs `edgeloop model ARGS`; returns CompletedProcess (text). check=N asserts the exit."""
    result = subprocess.run([harness.require_binary(), "model", *map(str, args)],
                            capture_output=True, text=True, timeout=harness.scaled(timeout))
    if check is not None and result.returncode != check:
        raise AssertionError(f"edgeloop model {' '.join(map(str, args))}: exit "
                             f"{result.returncode}, expected {check}\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def model_json(*args):
    return json.loads(model_cli(*args, "--json", check=0).stdout)


class ModelCliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.make_temp_dir("model-cli-")
        self.model = os.path.join(self.tmp, "fraud", "3")
        shutil.copytree(harness.EXAMPLE_MODEL_DIR, self.model)
        self.key = os.path.join(self.tmp, "release")
        model_cli("keygen", "--out", self.key, check=0)
        self.layout = os.path.join(self.tmp, "store", "fraud")
        self.ref = f"layout://{self.layout}:v3"

    def package(self, ref=None):
        return model_json("package", self.model, ref or self.ref)

    def test_keygen_writes_a_private_secret_and_refuses_to_overwrite(self):
        mode = stat.S_IMODE(os.stat(self.key + ".key").st_mode)
        self.assertEqual(mode, 0o600)
        with open(self.key + ".pub") as f:
            self.assertNotIn("secret", f.read())
        result = model_cli("keygen", "--out", self.key, check=2)
        self.assertIn("refusing to overwrite", result.stderr)

    def test_packaging_is_reproducible_across_copies(self):
        first = self.package()
        copy = os.path.join(self.tmp, "elsewhere", "fraud", "3")
        shutil.copytree(self.model, copy)
        os.utime(os.path.join(copy, "model.json"), (0, 0))
        second = model_json("package", copy, f"layout://{self.tmp}/store2/fraud:v3")
        self.assertEqual(first["digest"], second["digest"])
        self.assertEqual(first["name"], "fraud")
        self.assertEqual(first["version"], "3")

    def test_sign_verify_and_the_refusals(self):
        digest = self.package()["digest"]
        result = model_cli("verify", self.ref, "--trusted-key", self.key + ".pub", check=3)
        self.assertIn("unsigned", result.stderr)
        model_cli("sign", self.ref, "--key", self.key + ".key", check=0)
        verified = model_json("verify", self.ref, "--trusted-key", self.key + ".pub")
        self.assertEqual(verified["digest"], digest)
        self.assertEqual(verified["repository"], "fraud")
        other = os.path.join(self.tmp, "other")
        model_cli("keygen", "--out", other, check=0)
        result = model_cli("verify", self.ref, "--trusted-key", other + ".pub", check=3)
        self.assertIn("untrusted_key", result.stderr)
        result = model_cli("verify", self.ref, "--trusted-key", self.key + ".pub",
                           "--repository", "models/other", check=3)
        self.assertIn("wrong_subject", result.stderr)
        result = model_cli("verify", self.ref, "--trusted-key", self.key + ".pub",
                           "--min-counter", str(verified["counter"] + 1), check=3)
        self.assertIn("rollback", result.stderr)

    def test_push_carries_signatures_and_pull_verifies_first(self):
        self.package()
        model_cli("sign", self.ref, "--key", self.key + ".key", check=0)
        usb = f"layout://{self.tmp}/usb/fraud"
        model_cli("push", self.ref, usb, check=0)
        model_json("verify", usb + ":v3", "--trusted-key", self.key + ".pub")
        out = os.path.join(self.tmp, "pulled")
        pulled = model_json("pull", usb + ":v3", out, "--trusted-key", self.key + ".pub")
        self.assertEqual(pulled["signature"]["repository"], "fraud")
        with open(os.path.join(out, "model.json"), "rb") as a, \
                open(os.path.join(self.model, "model.json"), "rb") as b:
            self.assertEqual(a.read(), b.read())
        # Without signatures, a verifying pull refuses and creates nothing.
        bare = f"layout://{self.tmp}/bare/fraud"
        model_cli("push", self.ref, bare, "--no-referrers", check=0)
        refused = os.path.join(self.tmp, "refused")
        result = model_cli("pull", bare + ":v3", refused, "--trusted-key", self.key + ".pub",
                           check=3)
        self.assertIn("unsigned", result.stderr)
        self.assertFalse(os.path.exists(refused))

    def test_tampered_blobs_are_caught_on_pull(self):
        self.package()
        manifest = model_json("inspect", self.ref)["manifest"]
        weights = [layer for layer in manifest["layers"]
                   if layer["annotations"]["org.opencontainers.image.title"] == "model.json"][0]
        blob = os.path.join(self.layout, "blobs", "sha256", weights["digest"].split(":")[1])
        os.chmod(blob, 0o644)
        with open(blob, "r+b") as f:
            f.seek(100)
            f.write(b"X")
        out = os.path.join(self.tmp, "tampered")
        result = model_cli("pull", self.ref, out)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("digest", result.stderr)
        self.assertFalse(os.path.exists(out))

    def test_tag_ls_inspect_promote_history(self):
        digest = self.package()["digest"]
        model_cli("tag", self.ref, "stable", check=0)
        tags = {t["tag"]: t["digest"] for t in model_json("ls", self.ref)}
        self.assertEqual(tags, {"v3": digest, "stable": digest})
        inspected = model_json("inspect", self.ref)
        self.assertEqual(inspected["card"]["framework"], "xgboost")
        self.assertEqual(inspected["card"]["inputs"][0]["shape"], [-1, 20])
        model_cli("promote", self.ref, "champion", "--key", self.key + ".key", "--reason",
                  "first release", "--by", "ana", check=0)
        model_cli("promote", self.ref, "champion", "--key", self.key + ".key", "--reason",
                  "re-signed", "--by", "bo", check=0)
        history = model_json("history", self.ref, "champion", "--trusted-key",
                             self.key + ".pub")
        self.assertEqual([h["by"] for h in history], ["ana", "bo"])
        self.assertEqual(history[1]["from"], digest)
        self.assertEqual(model_json("resolve", f"layout://{self.layout}:champion")["digest"],
                         digest)

    def test_bad_input_exits_with_a_message(self):
        cases = [
            (("ls", "fraud:v1"), 2, "must start with oci://"),
            (("ls", "oci://host/Bad_Name"), 2, "invalid repository"),
            (("resolve", "oci://127.0.0.1:1/fraud@sha256:123"), 2, "digest"),
            (("package", self.model, "layout://x:bad tag"), 2, "invalid tag"),
            (("resolve", f"layout://{self.tmp}/nothing:v1"), 4, "not an OCI image layout"),
            (("sign", self.ref, "--key", self.key + ".pub"), None, ""),
            (("verify", self.ref), 109, ""),  # CLI11: --trusted-key is required
        ]
        self.package()
        for args, code, message in cases:
            with self.subTest(args=args):
                result = model_cli(*args)
                self.assertNotEqual(result.returncode, 0, result.stdout)
                if code is not None and code != 109:
                    self.assertEqual(result.returncode, code, result.stderr)
                self.assertIn(message, result.stderr)
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(empty)
        result = model_cli("package", empty, self.ref, check=4)
        self.assertIn("model.yaml", result.stderr)
        out = os.path.join(self.tmp, "exists")
        os.makedirs(out)
        result = model_cli("pull", self.ref, out)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("already exists", result.stderr)

    def test_unreachable_registry_fails_fast(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = model_cli("resolve", f"oci://127.0.0.1:{port}/fraud:v1", timeout=20, check=5)
        self.assertIn(f"127.0.0.1:{port}", result.stderr)


if __name__ == "__main__":
    unittest.main()
