"""Browser test of the hub dashboard: a real hub (SQLite store) with uploaded events, loaded in
Debian's headless Chromium through playwright-core. Skips (exit 77) with a message when node,
chromium or playwright-core are missing. Screenshots go to $EDGELOOP_ARTIFACTS_DIR or
tests/browser/artifacts/."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "blackbox"))
import hub_util as hu  # noqa: E402

import browser_env  # noqa: E402

SKIP = 77


def main():
    node, why_not = browser_env.prepare()
    if node is None:
        print("SKIP: " + why_not)
        return SKIP
    artifacts = browser_env.artifacts_dir()
    work = tempfile.mkdtemp(prefix="edgeloop-browser-")
    store = "sqlite://" + os.path.join(work, "hub.db")
    hub = None
    try:
        tokens = {site: hu.run_cli("hub", "site", "add", site, "--store", store).stdout.strip()
                  for site in ("north-plant", "south-plant")}
        reader = hu.run_cli("hub", "token", "add", "browser", "--role", "read", "--store", store).stdout.strip()
        hub = hu.Hub(store)
        now = int(time.time() * 1000)
        counts = {"north-plant": 30, "south-plant": 12}
        top = None
        anomalies = 0
        for site, count in counts.items():
            events = []
            for i in range(count):
                anomalous = i % 5 == 0
                score = 0.5 + i / 100 if anomalous else i / 200
                e = hu.event(site, kind="anomaly" if anomalous else "insight", score=score,
                             version="3" if i % 2 else "4", ts_ms=now - (count - i) * 60_000)
                events.append(e)
                if anomalous:
                    anomalies += 1
                    if top is None or score > top[0]:
                        top = (score, e["id"])
            events.append(hu.event(site, kind="feedback", feedback={"event_id": events[0]["id"], "label": "fail"}))
            status, _, body = hub.request("POST", "/api/v1/ingest", hu.zstd(hu.jsonl(events)),
                                          {"Authorization": f"Bearer {tokens[site]}", "Content-Encoding": "zstd"})
            assert status == 200, body
        expectations = {
            # events_total counts every stored event, the feedback one included.
            "sites": [{"name": s, "sync": "ok", "events": n + 1} for s, n in counts.items()],
            "anomalies": anomalies,
            "top_anomaly": top[1],
            "versions": ["3", "4"],
            "events": sum(counts.values()),
        }
        result = subprocess.run([node, str(HERE / "dashboard.mjs"), f"http://127.0.0.1:{hub.port}", reader,
                                 str(artifacts), json.dumps(expectations)], cwd=HERE, timeout=180)
        return result.returncode
    finally:
        if hub is not None:
            hub.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
