"""Dynamic batching: concurrent requests are run together yet each gets its own rows' answers;
a full queue answers 503 with Retry-After.

Concurrency comes from raw sockets: every request is written before any response is read, so
the server sees them all within well under a millisecond.
"""
import unittest

import numpy as np

import harness

BATCHED = "batched"
TINY_QUEUE = "tiny-queue"
MAX_BATCH = 8


def trained():
    return harness.train("binary:logistic", seed=61, rounds=30, max_depth=4)


class BatchingTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        repo = harness.Repository()
        repo.add_version(BATCHED, 1, trained(), batching={
            "max_batch_size": MAX_BATCH, "max_queue_delay_us": 2000, "max_queue_size": 1024})
        repo.add_version(TINY_QUEUE, 1, trained(), batching={
            "max_batch_size": MAX_BATCH, "max_queue_delay_us": 300000, "max_queue_size": 2})
        cls.server = cls.start_class_server(repo)
        cls.server.wait_ready(timeout=30)

    def concurrent(self, model, bodies):
        """Sends every body on its own connection, then reads every response (in order)."""
        sockets = [harness.connect(self.server.port, timeout=10) for _ in bodies]
        try:
            requests = [harness.build_request("POST", harness.infer_path(model), body)
                        for body in bodies]
            for sock, request in zip(sockets, requests):
                sock.sendall(request)
            return [harness.read_response(sock, timeout=10)[0] for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()

    def histogram_delta(self, before, after, name, model):
        return {suffix: after.value(name + suffix, model=model) -
                before.value(name + suffix, model=model) for suffix in ("_count", "_sum")}

    def test_concurrent_single_row_requests_are_batched_and_answered_row_by_row(self):
        rows = harness.make_features(32, seed=77)
        expected = trained().predict(rows)
        before = self.server.metrics()
        responses = self.concurrent(BATCHED, [harness.infer_body(rows[i], request_id=f"r{i}")
                                              for i in range(len(rows))])
        after = self.server.metrics()
        for i, response in enumerate(responses):
            with self.subTest(request=i):
                self.assertEqual(response.status, 200, response.body[:200])
                self.assertEqual(response.json.get("id"), f"r{i}")
                harness.assert_close(harness.output_array(response.json, "probability", [1]),
                                     expected[i:i + 1], 1e-6, f"row {i}")
        batches = self.histogram_delta(before, after, "edgeloop_inference_batch_size", BATCHED)
        self.assertEqual(batches["_sum"], 32, "rows run")
        self.assertLess(batches["_count"], 32, "no run had more than one row")
        self.assertGreaterEqual(batches["_count"], 32 / MAX_BATCH,
                                "a run had more than max_batch_size rows")
        queued = self.histogram_delta(before, after, "edgeloop_inference_queue_duration_seconds",
                                      BATCHED)
        self.assertEqual(queued["_count"], 32, "queue durations observed")
        self.assertEqual(after.value("edgeloop_inference_requests_total", model=BATCHED,
                                     code="200") -
                         before.value("edgeloop_inference_requests_total", model=BATCHED,
                                      code="200"), 32)

    def test_requests_of_different_sizes_get_their_own_rows(self):
        rng = np.random.default_rng(5)
        sizes = [int(rng.integers(1, 4)) for _ in range(16)]
        rows = harness.make_features(sum(sizes), seed=78, nan_fraction=0.05)
        expected = trained().predict(rows)
        offsets = np.cumsum([0] + sizes)
        before = self.server.metrics()
        responses = self.concurrent(BATCHED, [
            harness.infer_body(rows[offsets[i]:offsets[i + 1]], request_id=str(i))
            for i in range(len(sizes))])
        after = self.server.metrics()
        for i, response in enumerate(responses):
            with self.subTest(request=i, rows=sizes[i]):
                self.assertEqual(response.status, 200, response.body[:200])
                self.assertEqual(response.json.get("id"), str(i))
                harness.assert_close(
                    harness.output_array(response.json, "probability", [sizes[i]]),
                    expected[offsets[i]:offsets[i + 1]], 1e-6, f"request {i}")
        batches = self.histogram_delta(before, after, "edgeloop_inference_batch_size", BATCHED)
        self.assertEqual(batches["_sum"], sum(sizes), "rows run")

    def test_contributions_through_the_batcher(self):
        rows = harness.make_features(8, seed=79)
        expected = trained().predict(rows, pred_contribs=True)
        responses = self.concurrent(BATCHED, [
            harness.infer_body(rows[i], outputs=["contributions"]) for i in range(len(rows))])
        for i, response in enumerate(responses):
            with self.subTest(request=i):
                self.assertEqual(response.status, 200, response.body[:200])
                self.assertEqual([o.get("name") for o in response.json["outputs"]],
                                 ["contributions"])
                harness.assert_close(
                    harness.output_array(response.json, "contributions", [1, 21]),
                    expected[i:i + 1], 1e-5, f"request {i}")

    def test_full_queue_answers_503_with_retry_after(self):
        rows = harness.make_features(12, seed=80)
        expected = trained().predict(rows)
        before = self.server.metrics()
        responses = self.concurrent(TINY_QUEUE, [
            harness.infer_body(rows[i], request_id=str(i)) for i in range(len(rows))])
        after = self.server.metrics()
        statuses = [r.status for r in responses]
        self.assertEqual(set(statuses) - {200, 503}, set(), statuses)
        self.assertGreaterEqual(statuses.count(200), 2, f"the queue holds 2: {statuses}")
        self.assertGreaterEqual(statuses.count(503), 1, statuses)
        for i, response in enumerate(responses):
            with self.subTest(request=i, status=response.status):
                if response.status == 200:
                    self.assertEqual(response.json.get("id"), str(i))
                    harness.assert_close(
                        harness.output_array(response.json, "probability", [1]),
                        expected[i:i + 1], 1e-6, f"request {i}")
                else:
                    self.assert_error(response, 503)
                    retry_after = response.header("Retry-After")
                    self.assertIsNotNone(retry_after, "503 without Retry-After")
                    self.assertRegex(retry_after, r"^\d+$")

        def delta(code):
            return (after.value("edgeloop_inference_requests_total", model=TINY_QUEUE,
                                code=code) -
                    before.value("edgeloop_inference_requests_total", model=TINY_QUEUE,
                                 code=code))
        self.assertEqual(delta("503"), statuses.count(503))
        self.assertEqual(delta("200"), statuses.count(200))

        # Once the queue drained, requests are accepted again.
        response = self.server.admin.infer(TINY_QUEUE, harness.infer_body(rows[0]))
        self.assertEqual(response.status, 200, response.body[:200])


if __name__ == "__main__":
    unittest.main()
