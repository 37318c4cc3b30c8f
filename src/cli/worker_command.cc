#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "common/logging.h"
#include "functions/run_worker.h"

namespace edgeloop::cli {

Command AddWorkerCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand(
      "worker",
      "Run functions on queued insight events: compliance, store-and-forward upload, custom "
      "functions (docs/worker.md)");
  auto options = std::make_shared<functions::RunWorkerOptions>();
  auto visibility_ms = std::make_shared<int64_t>(60'000);
  auto lease_wait_ms = std::make_shared<int64_t>(500);
  auto probe_initial_ms = std::make_shared<int64_t>(1'000);
  auto probe_max_ms = std::make_shared<int64_t>(60'000);
  auto drain_ms = std::make_shared<int64_t>(30'000);
  auto retry_initial_ms = std::make_shared<int64_t>(1'000);
  auto retry_max_ms = std::make_shared<int64_t>(300'000);

  app->add_option("--queue", options->queue_url,
                  "Queue URL: file:///dir (embedded) or redis://host:port/stream")
      ->required();
  app->add_option("--function", options->function_file,
                  "Function chain file (YAML): exec, compliance and upload stages")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--consumer", options->consumer,
                  "Consumer name in the queue (default: <hostname>-<pid>)");
  app->add_option("--batch-size", options->batch_size, "Events leased per batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  app->add_option("--concurrency", options->concurrency, "Batches processed at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app->add_option("--visibility-ms", *visibility_ms,
                  "How long a leased batch may take before it is delivered again")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{100}, int64_t{86'400'000}));
  app->add_option("--lease-wait-ms", *lease_wait_ms, "How long one lease waits for new events")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{60'000}));
  app->add_option("--max-attempts", options->retry.max_attempts,
                  "Deliveries of an event before it goes to the dead-letter queue")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000));
  app->add_option("--retry-initial-ms", *retry_initial_ms, "First retry backoff (doubles)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86'400'000}));
  app->add_option("--retry-max-ms", *retry_max_ms, "Longest retry backoff")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86'400'000}));
  app->add_option("--probe-initial-ms", *probe_initial_ms,
                  "While a destination is down: first probe delay (doubles)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  app->add_option("--probe-max-ms", *probe_max_ms, "While a destination is down: longest delay")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  app->add_option("--drain-timeout-ms", *drain_ms,
                  "On SIGTERM, how long batches in flight may finish before they are handed back")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{3'600'000}));
  app->add_option("--metrics-address", options->metrics_address, "Address of /metrics")
      ->capture_default_str();
  app->add_option("--metrics-port", options->metrics_port,
                  "Port of /metrics and /healthz; 0 picks a free port, -1 turns it off")
      ->capture_default_str()
      ->check(CLI::Range(-1, 65'535));

  return {app, [=] {
            options->visibility = std::chrono::milliseconds(*visibility_ms);
            options->lease_wait = std::chrono::milliseconds(*lease_wait_ms);
            options->probe_initial = std::chrono::milliseconds(*probe_initial_ms);
            options->probe_max = std::chrono::milliseconds(*probe_max_ms);
            options->drain_timeout = std::chrono::milliseconds(*drain_ms);
            options->retry.initial_backoff = std::chrono::milliseconds(*retry_initial_ms);
            options->retry.max_backoff = std::chrono::milliseconds(*retry_max_ms);
            if (options->probe_max < options->probe_initial) {
              std::cerr << "edgeloop worker: --probe-max-ms must be at least --probe-initial-ms\n";
              return 2;
            }
            const Status status = functions::RunWorker(*options);
            if (!status.ok()) {
              log::Error("worker failed", {{"error", status}});
              std::cerr << "edgeloop worker: " << status.message() << "\n";
              return 1;
            }
            return 0;
          }};
}

}  // namespace edgeloop::cli
