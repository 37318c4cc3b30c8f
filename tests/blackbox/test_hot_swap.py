"""Hot swap under load, load failures and retries, and version policies.

While client threads send requests without a version, a new version is installed atomically
(`.staging-2` renamed to `2`), by a plain recursive copy, or by a slow in-place copy. Every
response must be a 200 whose outputs are exactly the answer of the version it names; version 2
must answer within 2 s of the copy finishing; with the default policy (latest 1) version 1 is
then unloaded and shown so in the index.
"""
import os
import shutil
import time
import unittest

import numpy as np
import xgboost as xgb

import harness

MODEL = "swap"
POLL_MS = 100
SWAP_DEADLINE_S = 2.0


def version_model(version):
    return harness.train("binary:logistic", seed=40 + version, rounds=15, max_depth=3)


def probe_row():
    return harness.example_rows()[2:3]


class SwapTestBase(harness.ServerTestCase):
    def setUp(self):
        self.repo = harness.Repository()
        self.expected = {str(v): float(version_model(v).predict(probe_row())[0])
                         for v in (1, 2, 3)}
        self.expected_example = float(harness.example_model().predict(
            xgb.DMatrix(probe_row()))[0])
        values = sorted(list(self.expected.values()) + [self.expected_example])
        self.assertGreater(min(np.diff(values)), 1e-3, "test models are not distinguishable")

    def start(self, flags=()):
        server = self.start_server(self.repo, ["--poll-interval-ms", str(POLL_MS)] + list(flags))
        server.wait_ready(timeout=30)
        return server

    def load(self, server, threads=2):
        return harness.LoadGenerator(server.port, harness.infer_path(MODEL),
                                     harness.infer_body(probe_row()), threads=threads)

    @staticmethod
    def version_of(outcome):
        body = outcome[4]
        return body.get("model_version") if isinstance(body, dict) else None

    def wait_for_traffic(self, load, count=20):
        start = len(load.snapshot())
        harness.wait_until(lambda: len(load.snapshot()) >= start + count, 10,
                           f"{count} more load requests")

    def wait_for_version(self, load, version, since):
        """Waits for a response from `version` sent after `since`; returns its delay."""
        outcome = harness.wait_until(
            lambda: load.first(lambda o: o[1] >= since and self.version_of(o) == version),
            SWAP_DEADLINE_S + 3, f"a response from version {version}")
        return outcome[2] - since

    def wait_for_metric(self, server, name, minimum, timeout=5, **labels):
        """Polls /metrics until `name`{labels} reaches `minimum`; returns those Metrics."""
        def check():
            metrics = server.metrics()
            return metrics if metrics.value(name, **labels) >= minimum else None
        return harness.wait_until(check, timeout, f"{name}{labels} >= {minimum}")

    def check_outcomes(self, outcomes, expected):
        """Every outcome is a 200 with the right answer for the version it names, and no
        thread goes back to an older version once it saw a newer one."""
        self.assertGreater(len(outcomes), 50, "too little load to judge")
        failures = []
        for outcome in outcomes:
            thread, sent, received, status, body, error = outcome
            version = self.version_of(outcome)
            if error or status != 200:
                failures.append(f"status {status} error {error} body {str(body)[:200]}")
                continue
            if version not in expected:
                failures.append(f"unexpected model_version {version!r}")
                continue
            try:
                values = harness.output_array(body, "probability", [1])
                harness.assert_close(values, [expected[version]], 1e-6, f"version {version}")
            except AssertionError as e:
                failures.append(str(e))
        self.assertEqual(failures[:5], [], f"{len(failures)} of {len(outcomes)} requests failed")
        for thread in {o[0] for o in outcomes}:
            mine = sorted((o for o in outcomes if o[0] == thread), key=lambda o: o[1])
            newest = None
            for outcome in mine:
                version = int(self.version_of(outcome))
                if newest is not None and version < newest[0] and outcome[1] > newest[1]:
                    self.fail(f"thread {thread} got version {version} after version {newest[0]}")
                if newest is None or version > newest[0]:
                    newest = (version, outcome[2])

    def check_swapped(self, server, old="1", new="2"):
        """The old version is unloaded (index, gauge); the new one is READY."""
        entry = server.wait_state(MODEL, old, "UNAVAILABLE", timeout=5)
        self.assertIsInstance(entry.get("reason"), str)
        self.assertEqual(server.index_entry(MODEL, new).get("state"), "READY")
        metrics = server.metrics()
        self.assertEqual(metrics.value("edgeloop_model_loaded", model=MODEL, version=old), 0)
        self.assertEqual(metrics.value("edgeloop_model_loaded", model=MODEL, version=new), 1)
        body = server.admin.get(f"/v2/models/{MODEL}").json
        self.assertEqual(body.get("versions"), [new])


class HotSwapTest(SwapTestBase):
    def test_atomic_rename_swaps_without_failures(self):
        self.repo.add_version(MODEL, 1, version_model(1))
        server = self.start()
        with self.load(server) as load:
            self.wait_for_traffic(load)
            staging = self.repo.write_version(self.repo.path(MODEL, ".staging-2"),
                                              version_model(2))
            os.rename(staging, self.repo.path(MODEL, 2))
            done = time.monotonic()
            delay = self.wait_for_version(load, "2", done)
            self.check_swapped(server)
            self.wait_for_traffic(load)
        self.assertLessEqual(delay, harness.scaled(SWAP_DEADLINE_S))
        self.check_outcomes(load.snapshot(), self.expected)

    def test_plain_recursive_copy_swaps_without_failures(self):
        self.repo.add_version(MODEL, 1, version_model(1))
        server = self.start()
        expected = {"1": self.expected["1"], "2": self.expected_example}
        with self.load(server) as load:
            self.wait_for_traffic(load)
            shutil.copytree(harness.EXAMPLE_MODEL_DIR, self.repo.path(MODEL, 2))
            done = time.monotonic()
            delay = self.wait_for_version(load, "2", done)
            self.check_swapped(server)
            self.wait_for_traffic(load)
        self.assertLessEqual(delay, harness.scaled(SWAP_DEADLINE_S))
        self.check_outcomes(load.snapshot(), expected)
        self.assertEqual(server.metrics().value("edgeloop_model_load_failures_total",
                                                model=MODEL), 0)

    def test_slow_in_place_copy_is_loaded_only_when_complete(self):
        self.repo.add_version(MODEL, 1, version_model(1))
        server = self.start()
        expected = {"1": self.expected["1"], "2": self.expected_example}
        with open(harness.EXAMPLE_MODEL_DIR / "model.json", "rb") as f:
            model_bytes = f.read()
        target = self.repo.path(MODEL, 2)
        with self.load(server) as load:
            self.wait_for_traffic(load)
            os.makedirs(target)
            shutil.copyfile(harness.EXAMPLE_MODEL_DIR / "model.yaml",
                            os.path.join(target, "model.yaml"))
            chunks = 12
            step = len(model_bytes) // chunks + 1
            with open(os.path.join(target, "model.json"), "wb") as out:
                for i in range(0, len(model_bytes), step):
                    out.write(model_bytes[i:i + step])
                    out.flush()
                    # The subject: a copy slower than one scan, changing between scans.
                    time.sleep(POLL_MS / 1000 * 0.3)
            done = time.monotonic()
            delay = self.wait_for_version(load, "2", done)
            self.check_swapped(server)
            self.wait_for_traffic(load)
        self.assertLessEqual(delay, harness.scaled(SWAP_DEADLINE_S))
        self.check_outcomes(load.snapshot(), expected)
        self.assertEqual(server.metrics().value("edgeloop_model_load_failures_total",
                                                model=MODEL), 0,
                         "a half-copied version was loaded")

    def test_corrupt_new_version_keeps_the_old_one_and_is_retried_when_fixed(self):
        self.repo.add_version(MODEL, 1, version_model(1))
        server = self.start()
        good_file = version_model(2).file("json")
        with open(good_file, "rb") as f:
            model_bytes = f.read()
        with self.load(server) as load:
            self.wait_for_traffic(load)
            staging = self.repo.add_raw_version(MODEL, ".staging-2", {
                "model.yaml": harness.model_yaml("model.json",
                                                 harness.default_outputs("binary:logistic")),
                "model.json": model_bytes[:len(model_bytes) // 3]})
            os.rename(staging, self.repo.path(MODEL, 2))
            metrics = self.wait_for_metric(server, "edgeloop_model_load_failures_total", 1,
                                           model=MODEL, version="2")
            self.assertEqual(metrics.value("edgeloop_model_load_failures_total", model=MODEL,
                                           version="2"), 1)
            entry = server.index_entry(MODEL, 2)
            self.assertEqual(entry and entry.get("state"), "UNAVAILABLE", entry)
            self.assertIsInstance(entry.get("reason"), str)
            self.assertTrue(entry["reason"].strip(), entry)
            self.assertEqual(metrics.value("edgeloop_model_loaded", model=MODEL, version="1"), 1)
            self.assertEqual(server.index_entry(MODEL, 1).get("state"), "READY")
            self.wait_for_traffic(load)
            self.assertEqual({self.version_of(o) for o in load.snapshot()}, {"1"})

            # Fix the folder: replace the file atomically with the complete one.
            fixed = os.path.join(harness.make_temp_dir("fix-"), "model.json")
            shutil.copyfile(good_file, fixed)
            os.replace(fixed, self.repo.path(MODEL, 2, "model.json"))
            done = time.monotonic()
            delay = self.wait_for_version(load, "2", done)
            self.check_swapped(server)
            self.wait_for_traffic(load)
        self.assertLessEqual(delay, harness.scaled(SWAP_DEADLINE_S))
        self.check_outcomes(load.snapshot(), self.expected)
        self.assertEqual(server.metrics().value("edgeloop_model_load_failures_total",
                                                model=MODEL, version="2"), 1)

    def test_removing_a_version_folder_unloads_it(self):
        self.repo.add_version(MODEL, 1, version_model(1))
        self.repo.add_version(MODEL, 2, version_model(2))
        self.repo.set_policy(MODEL, "all")
        server = self.start()
        with self.load(server) as load:
            self.wait_for_traffic(load)
            self.assertEqual({self.version_of(o) for o in load.snapshot()}, {"2"})
            shutil.rmtree(self.repo.path(MODEL, 2))
            done = time.monotonic()
            delay = self.wait_for_version(load, "1", done)
            self.wait_for_traffic(load)
        self.assertLessEqual(delay, harness.scaled(SWAP_DEADLINE_S))
        # Going back from 2 to 1 is the point here, so check_outcomes' ordering rule is off.
        outcomes = load.snapshot()
        failed = [o for o in outcomes if o[3] != 200]
        self.assertEqual(failed[:3], [], f"{len(failed)} of {len(outcomes)} requests failed")
        for outcome in outcomes:
            version = self.version_of(outcome)
            harness.assert_close(harness.output_array(outcome[4], "probability", [1]),
                                 [self.expected[version]], 1e-6, f"version {version}")
        response = server.admin.infer(MODEL, harness.infer_body(probe_row()), version=2)
        self.assertIn(response.status, (404, 503), response.body[:200])
        self.assertEqual(server.metrics().value("edgeloop_model_loaded", model=MODEL,
                                                version="2"), 0)
        entry = server.index_entry(MODEL, 2)
        self.assertTrue(entry is None or entry.get("state") == "UNAVAILABLE", entry)

    def test_ignored_folder_names_are_not_loaded(self):
        self.repo.add_version(MODEL, 1, version_model(1))
        server = self.start()
        for name in (".staging-3", "3.tmp", "tmp-3", "03", "0", "-3", "3a"):
            self.repo.add_version(MODEL, name, version_model(3))
        # The subject: several scans see the folders and must ignore them.
        deadline = time.monotonic() + 5 * POLL_MS / 1000
        while time.monotonic() < deadline:
            body = server.admin.infer(MODEL, harness.infer_body(probe_row())).json
            self.assertEqual(body.get("model_version"), "1")
        versions = sorted(e.get("version") for e in server.index() if e.get("name") == MODEL)
        self.assertEqual(versions, ["1"])
        self.assertEqual(server.admin.get(f"/v2/models/{MODEL}").json.get("versions"), ["1"])


POLICIES = {
    # model: (serving.yaml policy or None, served versions)
    "p-default": (None, ["3"]),
    "p-latest2": ("{latest: 2}", ["2", "3"]),
    "p-specific": ("{specific: [1]}", ["1"]),
    "p-specific2": ("{specific: [1, 3]}", ["1", "3"]),
    "p-all": ("all", ["1", "2", "3"]),
}


class VersionPolicyTest(SwapTestBase):
    def setUp(self):
        super().setUp()
        for model, (policy, _) in POLICIES.items():
            for version in (1, 2, 3):
                self.repo.add_version(model, version, version_model(version))
            if policy:
                self.repo.set_policy(model, policy)
        self.server = self.start()
        self.client = self.server.client()
        self.addCleanup(self.client.close)

    def test_policies(self):
        for model, (policy, served) in POLICIES.items():
            with self.subTest(model=model, policy=policy):
                metadata = self.client.get(f"/v2/models/{model}").json
                self.assertEqual(sorted(metadata.get("versions", [])), served)
                body = self.client.infer(model, harness.infer_body(probe_row())).json
                self.assertEqual(body.get("model_version"), served[-1])
                harness.assert_close(harness.output_array(body, "probability", [1]),
                                     [self.expected[served[-1]]], 1e-6, "unversioned")
                for version in ("1", "2", "3"):
                    response = self.client.infer(model, harness.infer_body(probe_row()),
                                                 version=version)
                    entry = self.server.index_entry(model, version)
                    if version in served:
                        self.assertEqual(response.status, 200, response.body[:200])
                        self.assertEqual(response.json.get("model_version"), version)
                        harness.assert_close(
                            harness.output_array(response.json, "probability", [1]),
                            [self.expected[version]], 1e-6, f"{model}/{version}")
                        self.assertEqual(entry and entry.get("state"), "READY")
                    else:
                        self.assertIn(response.status, (404, 503), response.body[:200])
                        self.assert_error(response, response.status)
                        self.assertTrue(entry is None or entry.get("state") == "UNAVAILABLE",
                                        entry)
        self.assertEqual(self.client.get("/v2/health/ready").status, 200)


if __name__ == "__main__":
    unittest.main()
