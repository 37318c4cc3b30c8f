"""The deployment artifacts (docs/deploy.md): the container image, the Kubernetes manifests and the
systemd units, checked against the real tools and the real binary.

  - scripts/build-image writes an OCI layout that `skopeo inspect` reads, with the labels, user,
    entrypoint and ports promised; the same inputs give the same digest; `skopeo copy` pushes it
    to the real docker-registry (Distribution) and so does `edgeloop model push`.
  - The image's root filesystem, extracted here, runs: every library the binary loads resolves
    inside the image (through the image's own ld-linux), and the entrypoint with the image's
    command answers /v2/health/live. `edgeloop model containerize` bakes a packaged model into
    that image; its root filesystem serves the model.
  - `kubectl kustomize` renders every overlay, and each object passes the `kubernetes-models`
    schema check (npm; installed into tests/deploy/node_modules on first use).
  - The manifests agree with the binary: every role they run exists (`edgeloop <role> --help`),
    every flag they pass is one of its flags, container ports are the ports the role listens on,
    EDGELOOP_* variables are ones the binary reads (or are expanded into the arguments), volume
    mounts name defined volumes, and every absolute path the roles are given lies under a mount
    (the root filesystem is read-only). The probe paths answer 200 on the running roles.
  - `systemd-analyze verify` accepts the units with no warning, and their ExecStart lines pass
    the same flag check.

Containers cannot be run on this machine (no cgroups): the image is tested by running its root
filesystem directly. A role the manifests use that the binary lacks fails the test, naming it.
"""
import gzip
import json
import os
import pathlib
import re
import shutil
import subprocess
import tarfile
import threading
import unittest

import harness
from test_deploy import DockerRegistry

REPO = harness.REPO_ROOT
BUILD_IMAGE = REPO / "scripts" / "build-image"
KUSTOMIZE_DIR = REPO / "deploy" / "kubernetes"
OVERLAYS = ["overlays/site", "overlays/cloud", "overlays/single-node"]
SYSTEMD_DIR = REPO / "deploy" / "systemd"
SCHEMA_DIR = REPO / "tests" / "deploy"
IMAGE_TAG = "test"
UID = 65532
LOADER = "lib64/ld-linux-x86-64.so.2"
LIB_DIR = "usr/lib/x86_64-linux-gnu"
CREATED = "2024-01-02T03:04:05Z"


def run(args, timeout=120, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=harness.scaled(timeout), stdin=subprocess.DEVNULL, **kwargs)


def check(args, timeout=120, **kwargs):
    result = run(args, timeout, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(str(a) for a in args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def build_image(out, tag=IMAGE_TAG):
    check(["/usr/bin/python3", BUILD_IMAGE, "--binary", harness.require_binary(), "--out", out,
           "--tag", tag, "--created", CREATED, "--revision", "0123abc"], timeout=300)


def layout_manifest(layout, tag):
    index = json.loads((pathlib.Path(layout) / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            blob = pathlib.Path(layout) / "blobs" / "sha256" / m["digest"].split(":")[1]
            return m["digest"], json.loads(blob.read_text())
    raise AssertionError(f"no tag {tag} in {layout}/index.json")


def extract_rootfs(layout, tag, root):
    """Applies the image's layers in order into `root`; returns the image config."""
    _, manifest = layout_manifest(layout, tag)
    blobs = pathlib.Path(layout) / "blobs" / "sha256"
    for layer in manifest["layers"]:
        path = blobs / layer["digest"].split(":")[1]
        opener = gzip.open if layer["mediaType"].endswith("+gzip") else open
        with opener(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            members = tar.getmembers()
            for m in members:
                # Debian's Python 3.11.2 predates extraction filters: refuse escapes here.
                parts = pathlib.PurePosixPath(m.name).parts
                if m.name.startswith("/") or ".." in parts or (m.islnk() and ".." in m.linkname):
                    raise AssertionError(f"unsafe layer entry {m.name}")
            tar.extractall(root, members=members)
    return json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())


def rootfs_command(root, config):
    """The image's entrypoint + command, run from `root` through the image's own loader."""
    argv = config["config"]["Entrypoint"] + config["config"].get("Cmd", [])
    in_root = [str(root) + a if a.startswith("/") and os.path.exists(str(root) + a) else a
               for a in argv]
    return [str(root / LOADER), "--library-path", str(root / LIB_DIR)] + in_root


# ----------------------------------------------------------------------------------------------
# What the binary says about itself


_help_cache = {}


def help_text(*command):
    if command not in _help_cache:
        result = run([harness.require_binary(), *command, "--help"], timeout=30)
        _help_cache[command] = result.stdout + result.stderr if result.returncode == 0 else None
    return _help_cache[command]


def subcommands(*command):
    text = help_text(*command) or ""
    section = text.split("Subcommands:", 1)
    if len(section) < 2:
        return set()
    return {m.group(1) for m in re.finditer(r"^  ([a-z][a-z0-9-]*)\s", section[1], re.M)}


def flags_of(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text or ""))


def flag_default(text, flag):
    m = re.search(re.escape(flag) + r" [A-Z]+(?::[^=\n]*)?=(\S+)", text or "")
    return m.group(1) if m else None


def split_command(args):
    """(global args, role path, role args) of an `edgeloop` argument list; AssertionError naming
    a role the binary does not have."""
    global_help = help_text()
    global_flags = flags_of(global_help)
    i = 0
    globals_ = []
    while i < len(args) and args[i].startswith("--"):
        if args[i] not in global_flags:
            raise AssertionError(f"unknown global flag {args[i]} in {args}")
        globals_ += args[i:i + 2]
        i += 2
    if i >= len(args):
        raise AssertionError(f"no role in {args}")
    role = [args[i]]
    if args[i] not in subcommands():
        raise AssertionError(f"the role '{args[i]}' used in {args} does not exist in the binary "
                             f"(`edgeloop --help` lists {sorted(subcommands())})")
    i += 1
    while i < len(args) and args[i] in subcommands(*role):
        role.append(args[i])
        i += 1
    return globals_, role, args[i:]


def check_role_args(args, where):
    """Problems with an `edgeloop ...` argument list; returns (role, role help, problems)."""
    try:
        globals_, role, rest = split_command(args)
    except AssertionError as e:
        return None, None, [f"{where}: {e}"]
    text = help_text(*role)
    if text is None:
        return role, None, [f"{where}: `edgeloop {' '.join(role)} --help` failed"]
    known = flags_of(text) | flags_of(help_text())
    problems = [f"{where}: `edgeloop {' '.join(role)}` has no flag {a}"
                for a in rest if a.startswith("--") and a.split("=")[0] not in known]
    return role, text, problems


# ----------------------------------------------------------------------------------------------
# The image


class ImageTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.layout = pathlib.Path(harness.make_temp_dir("image-")) / "edgeloop"
        build_image(cls.layout)
        cls.digest, cls.manifest = layout_manifest(cls.layout, IMAGE_TAG)

    def test_skopeo_reads_the_layout_with_labels_user_and_entrypoint(self):
        info = json.loads(check(["skopeo", "inspect", f"oci:{self.layout}:{IMAGE_TAG}"]).stdout)
        self.assertEqual(info["Digest"], self.digest)
        version = re.search(r"^edgeloop (\S+)",
                            check([harness.require_binary(), "version"]).stdout, re.M).group(1)
        self.assertEqual(info["Labels"]["org.opencontainers.image.version"], version)
        self.assertEqual(info["Labels"]["org.opencontainers.image.revision"], "0123abc")
        self.assertTrue(info["Labels"]["org.opencontainers.image.source"].startswith("https://"))
        config = json.loads(check(["skopeo", "inspect", "--config",
                                   f"oci:{self.layout}:{IMAGE_TAG}"]).stdout)["config"]
        self.assertEqual(config["User"], f"{UID}:{UID}")
        self.assertEqual(config["Entrypoint"], ["/usr/bin/edgeloop"])
        serve_port = flag_default(help_text("serve"), "--http-port")
        self.assertIn(f"{serve_port}/tcp", config["ExposedPorts"])

    def test_layer_holds_only_the_binary_libraries_certificates_and_user(self):
        blob = self.layout / "blobs" / "sha256" / self.manifest["layers"][0]["digest"][7:]
        with tarfile.open(blob, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
        self.assertIn("usr/bin/edgeloop", members)
        self.assertIn("etc/ssl/certs/ca-certificates.crt", members)
        self.assertTrue(members["lib64"].issym(), "the /lib64 link of the ELF interpreter")
        self.assertIn("usr/" + LOADER, members)
        tops = {name.split("/")[0] for name in members}
        self.assertLessEqual(tops, {"usr", "etc", "lib", "lib64", "tmp", "models", "var"})
        for name, m in members.items():
            self.assertEqual(m.mtime, 0, name)
            owner = UID if name in ("models", "var/lib/edgeloop") else 0
            self.assertEqual((m.uid, m.gid), (owner, owner), name)
        with tarfile.open(blob, "r:gz") as tar:
            passwd = tar.extractfile("etc/passwd").read().decode()
        self.assertIn(f"edgeloop:x:{UID}:{UID}:", passwd)

    def test_same_inputs_give_the_same_digest(self):
        again = pathlib.Path(harness.make_temp_dir("image-again-")) / "edgeloop"
        build_image(again)
        self.assertEqual(layout_manifest(again, IMAGE_TAG)[0], self.digest)

    def test_rootfs_runs_its_own_libraries_and_answers_live(self):
        root = pathlib.Path(harness.make_temp_dir("rootfs-"))
        config = extract_rootfs(self.layout, IMAGE_TAG, root)
        listing = check([root / LOADER, "--library-path", root / LIB_DIR, "--list",
                         root / "usr/bin/edgeloop"]).stdout
        for line in listing.splitlines():
            m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
            if m:
                self.assertTrue(m.group(1).startswith(str(root)),
                                f"{m.group(1)} is loaded from outside the image:\n{listing}")
        command = rootfs_command(root, config)
        self.assertEqual(command[3:], [str(root / "usr/bin/edgeloop"), "serve",
                                       "--model-repository", str(root / "models")])
        server = harness.Server(None, command=command[:4], flags=command[5:])
        self.addCleanup(server.stop)
        server.start()
        client = harness.Client(server.port)
        self.addCleanup(client.close)
        response = client.get("/v2/health/live")
        self.assertEqual(response.status, 200, response.text)
        self.assertEqual(response.json, {"live": True})

    def test_pushes_to_a_registry_with_skopeo_and_edgeloop(self):
        registry = DockerRegistry().start()
        self.addCleanup(registry.stop)
        dest = f"127.0.0.1:{registry.port}/edgeloop/edgeloop:{IMAGE_TAG}"
        check(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{self.layout}:{IMAGE_TAG}",
               f"docker://{dest}"], timeout=180)
        info = json.loads(check(["skopeo", "inspect", "--tls-verify=false",
                                 f"docker://{dest}"]).stdout)
        self.assertEqual(info["Digest"], self.digest)
        check([harness.require_binary(), "model", "push", f"layout://{self.layout}:{IMAGE_TAG}",
               registry.ref("edgeloop/copy", IMAGE_TAG)], timeout=180)
        raw = check(["skopeo", "inspect", "--tls-verify=false", "--raw",
                     f"docker://127.0.0.1:{registry.port}/edgeloop/copy:{IMAGE_TAG}"]).stdout
        self.assertEqual(json.loads(raw), self.manifest)

    def test_containerize_bakes_a_model_that_the_image_serves(self):
        work = pathlib.Path(harness.make_temp_dir("containerize-"))
        model_ref = f"layout://{work}/models:v1"
        check([harness.require_binary(), "model", "package", harness.EXAMPLE_MODEL_DIR, model_ref,
               "--name", "machine-failure", "--version", "1"])
        # The target is another layout: the base's blobs are copied there.
        image_ref = f"layout://{work}/served:v1"
        out = check([harness.require_binary(), "model", "containerize", model_ref, image_ref,
                     "--base", f"layout://{self.layout}:{IMAGE_TAG}", "--json"]).stdout
        result = json.loads(out)
        self.assertEqual((result["model"], result["version"]), ("machine-failure", "1"))
        info = json.loads(check(["skopeo", "inspect", f"oci:{work}/served:v1"]).stdout)
        self.assertEqual(info["Digest"], result["digest"])
        self.assertEqual(info["Labels"]["org.edgeloop.model.name"], "machine-failure")
        self.assertEqual(len(info["Layers"]), 2)
        # Reproducible: the same model and base give the same image.
        again = json.loads(check([harness.require_binary(), "model", "containerize", model_ref,
                                  f"layout://{work}/again:v1", "--base",
                                  f"layout://{self.layout}:{IMAGE_TAG}", "--json"]).stdout)
        self.assertEqual(again["digest"], result["digest"])

        root = pathlib.Path(harness.make_temp_dir("served-rootfs-"))
        config = extract_rootfs(work / "served", "v1", root)
        self.assertTrue((root / "models/machine-failure/1/model.yaml").is_file())
        command = rootfs_command(root, config)
        server = harness.Server(None, command=command[:4], flags=command[5:])
        self.addCleanup(server.stop)
        server.start()
        client = harness.Client(server.port)
        self.addCleanup(client.close)
        harness.wait_until(lambda: client.get("/v2/health/ready").status == 200, 20,
                           "the baked-in model ready")
        rows = harness.example_rows()[:2]
        response = client.infer("machine-failure", harness.infer_body(rows))
        self.assertEqual(response.status, 200, response.text)

    def test_containerize_refuses_a_base_that_is_not_an_image(self):
        work = pathlib.Path(harness.make_temp_dir("containerize-bad-"))
        model_ref = f"layout://{work}/models:v1"
        check([harness.require_binary(), "model", "package", harness.EXAMPLE_MODEL_DIR, model_ref,
               "--name", "machine-failure", "--version", "1"])
        result = run([harness.require_binary(), "model", "containerize", model_ref,
                      f"layout://{work}/out:v1", "--base", model_ref])
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("not a container image", result.stderr)
        result = run([harness.require_binary(), "model", "containerize", model_ref,
                      f"layout://{work}/out:v1", "--base", f"layout://{self.layout}:{IMAGE_TAG}",
                      "--model-version", "v1"])
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("positive integer", result.stderr)


# ----------------------------------------------------------------------------------------------
# Kubernetes


def render(overlay):
    import yaml  # python3-yaml, Debian's
    out = check(["kubectl", "kustomize", KUSTOMIZE_DIR / overlay]).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod_specs(objects):
    """(object, pod spec) for every workload."""
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj, spec["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield obj, spec["jobTemplate"]["spec"]["template"]["spec"]


def edgeloop_containers(pod):
    for c in pod.get("initContainers", []) + pod["containers"]:
        if c["image"].split("/")[-1].split(":")[0] == "edgeloop":
            yield c


class ManifestTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.rendered = {overlay: render(overlay) for overlay in OVERLAYS}

    def test_overlays_pass_the_schema_check(self):
        if not (SCHEMA_DIR / "node_modules" / "kubernetes-models").is_dir():
            check(["npm", "install", "--no-save", "--no-audit", "--no-fund"], timeout=300,
                  cwd=SCHEMA_DIR)
        for overlay, objects in self.rendered.items():
            with self.subTest(overlay=overlay):
                result = subprocess.run(["node", str(SCHEMA_DIR / "validate.mjs")],
                                        cwd=SCHEMA_DIR, input=json.dumps(objects),
                                        capture_output=True, text=True, timeout=120)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertEqual(result.stdout.count("ok   "), len(objects), result.stdout)

    def test_single_node_has_no_redis_and_one_pod(self):
        objects = self.rendered["overlays/single-node"]
        kinds = sorted(o["kind"] for o in objects)
        self.assertNotIn("StatefulSet", kinds)
        self.assertNotIn("HorizontalPodAutoscaler", kinds)
        deployments = [o for o in objects if o["kind"] == "Deployment"]
        self.assertEqual(len(deployments), 1)
        names = [c["name"] for c in deployments[0]["spec"]["template"]["spec"]["containers"]]
        self.assertEqual(sorted(names), ["serve", "worker"])

    def test_roles_flags_ports_env_and_volumes_match_the_binary(self):
        problems = []
        for overlay, objects in self.rendered.items():
            config_files = {}
            for obj in objects:
                if obj["kind"] == "ConfigMap":
                    config_files.update(obj.get("data", {}))
            for obj, pod in pod_specs(objects):
                volumes = {v["name"] for v in pod.get("volumes", [])}
                volumes |= {t["metadata"]["name"]
                            for t in obj["spec"].get("volumeClaimTemplates", [])}
                used = set()
                for c in pod.get("initContainers", []) + pod["containers"]:
                    used |= {m["name"] for m in c.get("volumeMounts", [])}
                for name in sorted(used - volumes):
                    problems.append(f"{overlay} {obj['kind']}/{obj['metadata']['name']}: mount "
                                    f"of undefined volume {name}")
                for name in sorted(volumes - used):
                    problems.append(f"{overlay} {obj['kind']}/{obj['metadata']['name']}: volume "
                                    f"{name} is never mounted")
                for c in edgeloop_containers(pod):
                    where = f"{overlay} {obj['metadata']['name']}/{c['name']}"
                    problems += self.check_container(where, c, config_files)
        self.assertEqual(problems, [], "\n".join(problems))

    def check_container(self, where, c, config_files):
        args = [str(a) for a in c.get("args", [])]
        role, text, problems = check_role_args(args, where)
        if text is None:
            return problems
        everything = (text or "") + (help_text() or "")
        # Ports: the container ports are exactly the ports the role listens on: the values (or
        # defaults) of its --http-port and --metrics-port flags.
        ports = [p["containerPort"] for p in c.get("ports", [])]
        port_names = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        listen = set()
        for flag in ("--http-port", "--metrics-port"):
            if flag in flags_of(text):
                value = (args[args.index(flag) + 1] if flag in args else flag_default(text, flag))
                if value not in (None, "0", "-1"):
                    listen.add(str(value))
        if {str(p) for p in ports} != listen:
            problems.append(f"{where}: containerPorts {sorted(ports)}, but the role listens on "
                            f"{sorted(listen)}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = c.get(probe, {}).get("httpGet")
            if get and get["port"] not in port_names and get["port"] not in ports:
                problems.append(f"{where}: {probe} port {get['port']} is not a container port")
        # Environment: read by the binary, or expanded into the arguments.
        names = [e["name"] for e in c.get("env", [])]
        shared = []  # from a ConfigMap several roles share: some role must use each key
        for ref in c.get("envFrom", []):
            cm = ref.get("configMapRef", {}).get("name")
            if cm:
                shared += [k for k in self.config_map(cm)]
        expanded = set(re.findall(r"\$\((\w+)\)", " ".join(args)))
        for name in names:
            if name.startswith("EDGELOOP_") and name not in everything and name not in expanded:
                problems.append(f"{where}: the binary does not read {name}")
        for name in shared:
            if (name.startswith("EDGELOOP_") and name not in everything and
                    name not in self.expanded_anywhere()):
                problems.append(f"{where}: no role reads {name}")
        names += shared
        for name in expanded - set(names):
            problems.append(f"{where}: $({name}) in the arguments is never set")
        # Paths: under a mount (the root filesystem is read-only), or in the image (/models).
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        paths = [a for a in args if a.startswith("/")]
        for a in args:
            if a.endswith(".yaml") and os.path.basename(a) in config_files:
                content = config_files[os.path.basename(a)]
                content = re.sub(r"#.*", "", content)  # comments are prose, not paths
                paths += [p.rstrip(".") for p in re.findall(r"(?<=\s)(/[\w./-]+)", content)]
        for path in paths:
            if path == "/models" or path.startswith("/models/"):
                continue
            if not any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts):
                problems.append(f"{where}: {path} is not under a volume mount {mounts}")
        if not c.get("securityContext", {}).get("readOnlyRootFilesystem"):
            problems.append(f"{where}: the root filesystem is not read-only")
        return problems

    def expanded_anywhere(self):
        """Every $(NAME) used in the arguments of any container of any rendered overlay."""
        found = set()
        for objects in self.rendered.values():
            for obj in objects:
                text = json.dumps(obj)
                found |= set(re.findall(r"\$\((\w+)\)", text))
        return found

    def config_map(self, name):
        for objects in self.rendered.values():
            for obj in objects:
                if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == name:
                    return obj.get("data", {})
        return {}

    def probe_paths(self, role):
        if role[0] not in subcommands():
            raise AssertionError(f"the role '{role[0]}' that the manifests run does not exist in "
                                 f"the binary (`edgeloop --help` lists {sorted(subcommands())})")
        paths = set()
        for objects in self.rendered.values():
            for _, pod in pod_specs(objects):
                for c in edgeloop_containers(pod):
                    try:
                        _, found, _ = split_command([str(a) for a in c.get("args", [])])
                    except AssertionError:
                        continue
                    if found == role:
                        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                            get = c.get(probe, {}).get("httpGet")
                            if get:
                                paths.add(get["path"])
        return paths

    def test_serve_answers_its_probe_paths(self):
        paths = self.probe_paths(["serve"])
        self.assertTrue(paths, "no serve probes in the manifests")
        repo = harness.Repository()
        repo.add_example()
        server = harness.Server(repo)
        self.addCleanup(server.stop)
        server.start()
        client = harness.Client(server.port)
        self.addCleanup(client.close)
        harness.wait_until(lambda: client.get("/v2/health/ready").status == 200, 20, "ready")
        for path in sorted(paths):
            self.assertEqual(client.get(path).status, 200, path)

    def test_hub_answers_its_probe_paths(self):
        paths = self.probe_paths(["hub", "serve"])
        self.assertTrue(paths, "no hub probes in the manifests")
        store = os.path.join(harness.make_temp_dir("hub-"), "hub.db")
        server = harness.Server(None, command=[harness.require_binary(), "hub"],
                                flags=["--store", f"sqlite://{store}"])
        self.addCleanup(server.stop)
        server.start()
        client = harness.Client(server.port)
        self.addCleanup(client.close)
        for path in sorted(paths):
            self.assertEqual(client.get(path).status, 200, path)


    def test_worker_starts_with_the_site_config_and_answers_its_probe_paths(self):
        """The worker's chain and policy from the edge ConfigMap load (the real parser and policy
        checks) with /etc/edgeloop/... and /var/lib/edgeloop moved into a temp dir, and the
        probe paths answer on the metrics port."""
        paths = self.probe_paths(["worker"])
        self.assertTrue(paths, "no worker probes in the manifests")
        data = self.config_map_with_prefix("edgeloop-edge-config")
        tmp = pathlib.Path(harness.make_temp_dir("worker-"))
        moves = {"/etc/edgeloop/config": tmp / "config", "/etc/edgeloop/secrets": tmp / "secrets",
                 "/var/lib/edgeloop": tmp / "state"}
        for folder in moves.values():
            folder.mkdir()
        for name, content in data.items():
            for old, new in moves.items():
                content = content.replace(old + "/", f"{new}/")
            (tmp / "config" / name).write_text(content)
        (tmp / "secrets" / "hub-token").write_text("t" * 40 + "\n")
        (tmp / "secrets" / "site-key").write_text("ab" * 32 + "\n")
        proc = subprocess.Popen(
            [harness.require_binary(), "worker", "--queue", f"file://{tmp}/state/queue",
             "--function", str(tmp / "config" / "worker.yaml"), "--metrics-address",
             harness.HOST, "--metrics-port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()

        def listening_port():
            for line in list(lines):
                m = re.search(r"listening.*port[=\":]+(\d+)", line)
                if m:
                    return int(m.group(1))
            if proc.poll() is not None:
                reader.join(5)
                raise AssertionError(f"the worker exited ({proc.returncode}):\n" +
                                     "".join(lines[-20:]))
            return None

        port = harness.wait_until(listening_port, 20, "the worker's listening line")
        client = harness.Client(port)
        self.addCleanup(client.close)
        for path in sorted(paths):
            self.assertEqual(client.get(path).status, 200, path)

    def config_map_with_prefix(self, prefix):
        for objects in self.rendered.values():
            for obj in objects:
                if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith(prefix + "-"):
                    return obj.get("data", {})
        raise AssertionError(f"no ConfigMap {prefix}")


# ----------------------------------------------------------------------------------------------
# systemd


class SystemdTest(unittest.TestCase):
    def test_units_verify_without_warnings(self):
        units = sorted(p for p in SYSTEMD_DIR.iterdir() if p.suffix in (".service", ".timer"))
        self.assertTrue(units)
        tmp = pathlib.Path(harness.make_temp_dir("units-"))
        for unit in units:
            # ExecStart must name an executable that exists: point it at the binary under test.
            (tmp / unit.name).write_text(
                unit.read_text().replace("/usr/bin/edgeloop", harness.require_binary()))
        result = run(["systemd-analyze", "verify"] + [tmp / u.name for u in units])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.strip(), "", "systemd-analyze warned")

    def test_exec_lines_use_existing_roles_and_flags(self):
        problems = []
        for unit in sorted(SYSTEMD_DIR.glob("*.service")):
            for line in unit.read_text().splitlines():
                m = re.match(r"(ExecStart|ExecStartPre)=(/usr/bin/edgeloop .*)", line)
                if m:
                    args = m.group(2).split()[1:]
                    problems += check_role_args(args, f"{unit.name} {m.group(1)}")[2]
        self.assertEqual(problems, [], "\n".join(problems))

    def test_serve_and_worker_share_the_state_directory_and_user(self):
        def settings(name):
            text = (SYSTEMD_DIR / name).read_text()
            return {k: v for k, v in re.findall(r"^(\w+)=(.*)$", text, re.M)}
        serve, worker = settings("edgeloop-serve.service"), settings("edgeloop-worker.service")
        for key in ("User", "StateDirectory", "DynamicUser", "ProtectSystem"):
            self.assertEqual(serve.get(key), worker.get(key), key)
        self.assertEqual(serve["ProtectSystem"], "strict")


if __name__ == "__main__":
    unittest.main()
