#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "common/logging.h"
#include "up/up.h"

namespace edgeloop::cli {

Command AddUpCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand(
      "up",
      "Run the whole loop on this machine with demo data: lake, training, registry, hub with "
      "retraining, edge server, worker and a live feed (docs/up.md)");
  auto options = std::make_shared<up::UpOptions>();
  auto dir = std::make_shared<std::string>(options->dir.string());
  app->add_option("--dir", *dir, "State folder; reused (resumed) on the next start")
      ->capture_default_str();
  app->add_option("--port-base", options->port_base,
                  "Hub on N, edge server on N+1, worker metrics on N+2; 0 picks free ports")
      ->capture_default_str();
  app->add_option("--time-scale", options->time_scale,
                  "Simulated time runs this many times faster than real time (feed and "
                  "retraining schedule)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--feed-rate", options->feed_rate,
                  "Readings per second of the live feed (0: machines x time-scale / 60)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--machines", options->data.machines, "Machines in the demo factory")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app->add_option("--history-rows", options->data.history_rows,
                  "Readings of history the first model trains on")
      ->capture_default_str()
      ->check(CLI::Range(100, 10'000'000));
  app->add_option("--live-rows", options->data.live_rows, "Readings the live feed replays")
      ->capture_default_str()
      ->check(CLI::Range(100, 10'000'000));
  app->add_option("--drift-at", options->data.drift_at,
                  "Share of the live readings before the concept drift starts")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--seed", options->data.seed, "Seed of the demo data")->capture_default_str();
  app->add_option("--status-interval-s", options->status_interval_s,
                  "Seconds between status lines on stdout (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  app->add_option("--exit-after-feed-s", options->exit_after_feed_s,
                  "Stop this many seconds after the feed replayed every reading (default: run "
                  "until Ctrl-C)");

  return {app, [options, dir, &root] {
            options->dir = *dir;
            // The children log like this process.
            for (auto [flag, target] : {std::pair{"--log-format", &options->log_format},
                                        std::pair{"--log-level", &options->log_level}}) {
              CLI::Option* option = root.get_option_no_throw(flag);
              if (option != nullptr && option->count() > 0) *target = option->as<std::string>();
            }
            const Status status = up::RunUp(*options);
            if (status.ok() || status.code() == StatusCode::kCancelled) return 0;
            std::cerr << "edgeloop up: " << status.message() << "\n";
            return status.code() == StatusCode::kInvalidArgument ||
                           status.code() == StatusCode::kFailedPrecondition
                       ? 2
                       : 1;
          }};
}

}  // namespace edgeloop::cli
