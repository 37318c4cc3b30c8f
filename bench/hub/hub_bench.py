"""Benchmark: many sites uploading to the hub concurrently over loopback, against the limit of
raw COPY (PostgreSQL) or raw batched inserts (SQLite) of the same rows, measured in the same run.

For each store: a fresh database with the hub's schema; first the limit (the same rows, the same
batches, one transaction per batch, as many clients as the hub has store connections, no HTTP,
no JSON, no dedupe), then the hub (`edgeloop hub serve`) with N sites each uploading its batches
(gzip JSON Lines) over its own keep-alive connection, all at once. Prints accepted events per
second for both, their ratio, and upload latency percentiles. Both databases are durable
(PostgreSQL fsync on, synchronous_commit on; SQLite WAL synchronous=FULL).
"""
import argparse
import asyncio
import gzip
import json
import os
import pathlib
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "blackbox"))
import hub_util as hu  # noqa: E402

COLUMNS = ("id, site, type, ts, received_at, model, model_version, model_digest, request_id, "
           "anomaly, score, latency_ms, prediction, inputs, outputs")


def make_batches(sites, batches_per_site, events_per_batch, seed):
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    plan = []  # (site, [event dicts])
    for s in range(sites):
        site = f"site-{s:04d}"
        for b in range(batches_per_site):
            events = []
            for i in range(events_per_batch):
                anomalous = rng.random() < 0.05
                score = rng.random()
                events.append({
                    "id": str(uuid.UUID(int=rng.getrandbits(128) & ~(0xF << 76) | (0x7 << 76))),
                    "type": "anomaly" if anomalous else "insight",
                    "site": site,
                    "timestamp": now - rng.randrange(3_600_000),
                    "model": {"name": "machine-failure", "version": str(1 + b % 2), "digest": "sha256:" + "ab" * 32},
                    "request_id": f"r-{s}-{b}-{i}",
                    "latency_ms": round(rng.uniform(0.5, 5.0), 3),
                    "inputs": {"features": [round(rng.gauss(0, 1), 4) for _ in range(8)]},
                    "outputs": {"probability": round(score, 4)},
                    "anomaly": {"verdict": anomalous, "score": round(score, 4)},
                    "prediction": "fail" if score > 0.5 else "ok",
                })
            plan.append((site, events))
    return plan


def row_values(e, received):
    return (e["id"], e["site"], e["type"], e["timestamp"], received, e["model"]["name"], e["model"]["version"],
            e["model"]["digest"], e["request_id"], 1 if e["anomaly"]["verdict"] else 0, e["anomaly"]["score"],
            e["latency_ms"], e["prediction"], json.dumps(e["inputs"], separators=(",", ":")),
            json.dumps(e["outputs"], separators=(",", ":")))


def copy_line(values):
    return "\t".join(str(v) for v in values) + "\n"


def split(items, n):
    return [items[i::n] for i in range(n)]


def raw_postgres(pg, db, plan, clients):
    """One psql per client, one COPY (its own transaction) per batch."""
    received = int(time.time() * 1000)
    scripts = []
    tmp = tempfile.mkdtemp(prefix="hub-bench-copy-")
    for c, share in enumerate(split(plan, clients)):
        path = os.path.join(tmp, f"client{c}.sql")
        with open(path, "w") as f:
            for _, events in share:
                f.write(f"COPY events ({COLUMNS}) FROM STDIN;\n")
                for e in events:
                    f.write(copy_line(row_values(e, received)))
                f.write("\\.\n")
        scripts.append(path)
    start = time.perf_counter()
    procs = [subprocess.Popen([f"{pg.bin}/psql", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                               "-d", db, "-v", "ON_ERROR_STOP=1", "-f", path], stdout=subprocess.DEVNULL)
             for path in scripts]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("raw COPY failed")
    elapsed = time.perf_counter() - start
    subprocess.run(["rm", "-rf", tmp])
    return elapsed


def raw_sqlite(path, plan):
    """One connection (SQLite has one writer), one transaction per batch, executemany."""
    received = int(time.time() * 1000)
    rows = [[row_values(e, received) for e in events] for _, events in plan]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    sql = f"INSERT INTO events ({COLUMNS}) VALUES ({','.join('?' * 15)})"
    start = time.perf_counter()
    for batch in rows:
        conn.execute("BEGIN")
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


async def upload_site(port, token, bodies, latencies, results):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for body in bodies:
            request = (f"POST /api/v1/ingest HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n"
                       f"Content-Encoding: gzip\r\nContent-Type: application/x-ndjson\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            while True:
                t0 = time.perf_counter()
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
                status = int(status_line.split()[1])
                length = 0
                retry_after = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "retry-after":
                        retry_after = int(value)
                payload = await reader.readexactly(length)
                if status == 429:
                    results["throttled"] += 1
                    await asyncio.sleep(retry_after)
                    continue
                if status != 200:
                    raise RuntimeError(f"upload failed: {status} {payload[:200]}")
                latencies.append(time.perf_counter() - t0)
                results["accepted"] += json.loads(payload)["accepted"]
                break
    finally:
        writer.close()


async def load(port, tokens, bodies_by_site):
    latencies = []
    results = {"accepted": 0, "throttled": 0}
    start = time.perf_counter()
    await asyncio.gather(*(upload_site(port, tokens[site], bodies, latencies, results)
                           for site, bodies in bodies_by_site.items()))
    return time.perf_counter() - start, latencies, results


def run_hub(store, plan, workers, connections):
    admin = hu.run_cli("hub", "token", "add", "bench-admin", "--role", "admin", "--store", store).stdout.strip()
    hub = hu.Hub(store, "--workers", str(workers), "--store-connections", str(connections),
                 "--max-queue", "100000", "--max-connections", "10000")
    try:
        sites = sorted({site for site, _ in plan})
        tokens = {}
        for site in sites:
            status, _, data = hub.request("POST", "/api/v1/sites", json.dumps({"name": site}).encode(),
                                          {"Authorization": f"Bearer {admin}"})
            assert status == 201, data
            tokens[site] = json.loads(data)["token"]
        bodies_by_site = {}
        for site, events in plan:
            body = ("\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n").encode()
            bodies_by_site.setdefault(site, []).append(gzip.compress(body, 6))
        elapsed, latencies, results = asyncio.run(load(hub.port, tokens, bodies_by_site))
    finally:
        hub.stop()
    return elapsed, latencies, results


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * (len(values) - 1)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--batches-per-site", type=int, default=2)
    parser.add_argument("--events-per-batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stores", default="postgresql,sqlite")
    args = parser.parse_args()
    total = args.sites * args.batches_per_site * args.events_per_batch
    print(f"{args.sites} sites x {args.batches_per_site} uploads x {args.events_per_batch} events = {total} events "
          f"per run; hub workers/connections {args.workers}; {args.runs} runs; medians")
    pg = hu.Postgres(durable=True) if "postgresql" in args.stores else None
    rows = {}
    try:
        for run in range(args.runs):
            plan = make_batches(args.sites, args.batches_per_site, args.events_per_batch, seed=run)
            for store_kind in args.stores.split(","):
                if store_kind == "postgresql":
                    raw_db = pg.create_database(f"raw{run}")
                    hu.run_cli("hub", "migrate", "--store", raw_db)
                    raw_s = raw_postgres(pg, f"raw{run}", plan, args.workers)
                    hub_db = pg.create_database(f"hub{run}")
                    count = lambda: int(pg.psql(f"hub{run}", "SELECT count(*) FROM events").stdout)  # noqa: E731
                else:
                    tmp = tempfile.mkdtemp(prefix="hub-bench-sqlite-")
                    raw_db = "sqlite://" + os.path.join(tmp, "raw.db")
                    hu.run_cli("hub", "migrate", "--store", raw_db)
                    raw_s = raw_sqlite(os.path.join(tmp, "raw.db"), plan)
                    hub_db = "sqlite://" + os.path.join(tmp, "hub.db")
                    path = os.path.join(tmp, "hub.db")
                    count = lambda: sqlite3.connect(path).execute("SELECT count(*) FROM events").fetchone()[0]  # noqa: E731
                hub_s, latencies, results = run_hub(hub_db, plan, args.workers, args.workers)
                stored = count()
                if results["accepted"] != total or stored != total:
                    raise SystemExit(f"{store_kind}: accepted {results['accepted']}, stored {stored}, sent {total}")
                r = rows.setdefault(store_kind, {"raw": [], "hub": [], "ratio": [], "p50": [], "p99": [], "throttled": []})
                r["raw"].append(total / raw_s)
                r["hub"].append(total / hub_s)
                r["ratio"].append(raw_s / hub_s)
                r["p50"].append(percentile(latencies, 0.50) * 1000)
                r["p99"].append(percentile(latencies, 0.99) * 1000)
                r["throttled"].append(results["throttled"])
                print(f"run {run + 1} {store_kind:10s} raw {total / raw_s:9.0f} ev/s  hub {total / hub_s:9.0f} ev/s  "
                      f"ratio {raw_s / hub_s:5.2f}  upload p50 {r['p50'][-1]:7.1f} ms  p99 {r['p99'][-1]:7.1f} ms", flush=True)
    finally:
        if pg:
            pg.stop()
    print()
    print("| store | raw limit (events/s) | hub (events/s) | hub / limit | upload p50 (ms) | upload p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for kind, r in rows.items():
        m = statistics.median
        print(f"| {kind} | {m(r['raw']):.0f} | {m(r['hub']):.0f} | {m(r['ratio']):.2f} | {m(r['p50']):.1f} | "
              f"{m(r['p99']):.1f} |")


if __name__ == "__main__":
    main()
