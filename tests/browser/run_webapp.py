"""Browser test of the edge web app (`edgeloop serve` with --web-users): a real serve with the
example model and a streaming detector, a worker that forwards the insight queue to a real hub,
and Debian's headless Chromium through playwright-core (webapp.mjs). Checks afterwards that the
feedback given in the page reached the hub (while online) and waits in the queue (after the hub
was stopped), with `edgeloop queue peek`. Skips (exit 77) when node, chromium or playwright-core
are missing. Screenshots go to $EDGELOOP_ARTIFACTS_DIR or tests/browser/artifacts/."""
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "blackbox"))
import harness  # noqa: E402
import hub_util as hu  # noqa: E402

import browser_env  # noqa: E402

SKIP = 77
HOST = "127.0.0.1"
FEATURES = ("temperature_c,vibration_rms,vibration_peak,pressure_bar,rpm,current_a,voltage_v,power_kw,"
            "oil_temp_c,oil_quality,humidity_pct,ambient_temp_c,load_pct,cycle_time_s,tool_wear_min,"
            "acoustic_db,torque_nm,flow_lpm,hours_since_service,error_count_24h").split(",")


def cli(*args, stdin=None):
    result = subprocess.run([hu.binary(), *args], input=stdin, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"edgeloop {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def write_inputs(work):
    """The CSV files the page uploads: 1,000 good rows, wrong columns, wrong types, garbage, 100 MB."""
    sample = (harness.REPO_ROOT / "examples/data/machine_failure_sample.csv").read_text().splitlines()
    rows = [[float(v) for v in line.split(",")] for line in sample[1:]]
    rng = random.Random(7)
    lines = [",".join(FEATURES)]
    for i in range(1000):
        base = rows[i % len(rows)]
        lines.append(",".join(f"{v * (1 + rng.uniform(-0.05, 0.05)):.4f}" for v in base))
    files = {"good.csv": "\n".join(lines) + "\n",
             "wrong_columns.csv": "id,temperature,pressure\n1,70.1,3.2\n",
             "wrong_types.csv": lines[0] + "\n" + lines[1] + "\n" + lines[2].replace(lines[2].split(",")[4], "fast", 1) + "\n"}
    paths = {}
    for name, text in files.items():
        paths[name] = os.path.join(work, name)
        with open(paths[name], "w") as f:
            f.write(text)
    paths["garbage.csv"] = os.path.join(work, "garbage.csv")
    with open(paths["garbage.csv"], "wb") as f:
        garbage = random.Random(1)  # one generator: a new Random(1) per byte repeats one byte
        f.write(bytes(garbage.getrandbits(8) for _ in range(4096)))
    paths["huge.csv"] = os.path.join(work, "huge.csv")
    with open(paths["huge.csv"], "wb") as f:
        block = ("\n".join(lines[1:]) + "\n").encode()
        f.write((lines[0] + "\n").encode())
        while f.tell() < 100 * 1024 * 1024:
            f.write(block)
    return paths


def main():
    node, why_not = browser_env.prepare()
    if node is None:
        print("SKIP: " + why_not)
        return SKIP
    os.environ.setdefault("EDGELOOP_BIN", hu.binary())
    artifacts = browser_env.artifacts_dir()
    work = tempfile.mkdtemp(prefix="edgeloop-webapp-")
    started = time.monotonic()
    hub = worker = serve = None
    try:
        # The model repository: the XGBoost example and the streaming detector.
        repo = os.path.join(work, "models")
        for model in ("machine-failure", "sensor-anomaly"):
            shutil.copytree(harness.REPO_ROOT / "examples/models" / model, os.path.join(repo, model))
        # Users, with passwords from files (never on the command line).
        users = os.path.join(work, "users")
        for name, role, password in (("ana", "operator", "operator-pass-1"), ("eli", "user", "user-pass-12")):
            path = os.path.join(work, name + ".password")
            with open(path, "w") as f:
                f.write(password + "\n")
            cli("webapp", "users", "add", name, "--role", role, "--users-file", users, "--password-file", path)
        # The hub, a site token, a read token.
        store = "sqlite://" + os.path.join(work, "hub.db")
        site_token = cli("hub", "site", "add", "plant-7", "--store", store).strip()
        read_token = cli("hub", "token", "add", "browser", "--role", "read", "--store", store).strip()
        hub = hu.Hub(store)
        with open(os.path.join(work, "hub.token"), "w") as f:
            f.write(site_token + "\n")
        with open(os.path.join(work, "hub.yaml"), "w") as f:
            f.write("version: 1\ndestination: hub\n"
                    "allow: [id, type, site, model, timestamp, anomaly, outputs.probability, label, comment, request_id]\n")
        with open(os.path.join(work, "chain.yaml"), "w") as f:
            f.write("functions:\n"
                    "  - compliance: {policy: hub.yaml, audit_log: audit/hub.jsonl}\n"
                    f"  - upload: {{destination: hub, url: 'http://{HOST}:{hub.port}/api/v1/ingest', "
                    "token_file: hub.token, timeout_ms: 2000}\n")
        queue_url = "file://" + os.path.join(work, "queue")
        worker = harness.Server(repo=None, add_listen_flags=False, name="worker")
        worker.argv = [hu.binary(), "worker", "--queue", queue_url, "--function", os.path.join(work, "chain.yaml"),
                       "--metrics-address", HOST, "--metrics-port", "0", "--lease-wait-ms", "100",
                       "--probe-initial-ms", "200", "--probe-max-ms", "500"]
        worker.workdir = work
        worker.start(timeout=30)
        os.environ["EDGELOOP_STATE_DIR"] = os.path.join(work, "state")
        serve = harness.Server(repo=repo, flags=[
            "--queue", queue_url, "--site", "plant-7", "--sample-rate", "0", "--anomaly-threshold", "0.5",
            "--web-users", users, "--uplink-status-url", f"http://{HOST}:{worker.port}/metrics",
            "--poll-interval-ms", "0"], name="serve")
        serve.start(timeout=30)
        base = f"http://{HOST}:{serve.port}"
        # A streaming series with a spike, so that the Recent anomalies page has something.
        client = harness.Client(serve.port)
        now = int(time.time() * 1000) - 200_000
        values = [20.0 + (i % 5) * 0.1 for i in range(150)] + [95.0] + [20.0] * 10
        body = {"inputs": [
            {"name": "timestamp", "datatype": "INT64", "shape": [len(values)], "data": [now + i * 1000 for i in range(len(values))]},
            {"name": "value", "datatype": "FP64", "shape": [len(values)], "data": values},
            {"name": "series", "datatype": "BYTES", "shape": [len(values)], "data": ["pump-3"] * len(values)}]}
        response = client.post("/v2/models/sensor-anomaly/infer", json.dumps(body), headers={"Content-Type": "application/json"})
        assert response.status == 200, response.body[:300]
        files = write_inputs(work)
        config = {"url": base, "artifacts": str(artifacts), "files": files, "hub_pid": hub.proc.pid,
                  "operator": ["ana", "operator-pass-1"], "user": ["eli", "user-pass-12"]}
        result = subprocess.run([node, str(HERE / "webapp.mjs"), json.dumps(config)], cwd=HERE, timeout=180,
                                capture_output=True, text=True)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.returncode != 0:
            print("--- serve stderr ---\n" + serve.stderr_tail(30))
            return result.returncode
        report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
        failures = []
        # The feedback given while the hub was down waits in the queue.
        peek = json.loads(cli("queue", "peek", "--queue", queue_url, "--limit", "100", "--json"))
        events = peek if isinstance(peek, list) else peek.get("events", [])
        waiting = [e for e in events if (e.get("event") or e).get("id") == report["offline_feedback_id"]]
        if not waiting:
            failures.append(f"feedback {report['offline_feedback_id']} is not in the queue: {json.dumps(events)[:600]}")
        elif (waiting[0].get("event") or waiting[0]).get("type") != "feedback":
            failures.append(f"event {report['offline_feedback_id']} is not a feedback event: {waiting[0]}")
        # The feedback given while online reached the hub (it is stopped now: read its database).
        hub.stop()
        hub = hu.Hub(store)
        status, _, data = hub.request("GET", "/api/v1/events?type=feedback&limit=100",
                                      headers={"Authorization": f"Bearer {read_token}"})
        if status != 200 or report["online_feedback_id"].encode() not in data:
            failures.append(f"feedback {report['online_feedback_id']} did not reach the hub ({status}): {data[:400]!r}")
        if not serve.alive():
            failures.append("serve died")
        serve.stop()
        worker.stop()
        if failures:
            print("\n".join(failures))
            return 1
        print(f"webapp browser test ok in {time.monotonic() - started:.1f} s; screenshots in {artifacts}")
        return 0
    finally:
        for process in (serve, worker):
            if process is not None and process.alive():
                process.proc.kill()
                process.proc.wait()
        if hub is not None:
            hub.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
