#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "common/logging.h"
#include "serving/serve.h"
#include "webapp/web_app.h"

namespace edgeloop::cli {
namespace {

// The token is the file's first line, without surrounding whitespace. Its value is never logged.
StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) return InvalidArgumentError("cannot read " + path);
  const auto first = token.find_first_not_of(" \t\r");
  const auto last = token.find_last_not_of(" \t\r");
  token = first == std::string::npos ? "" : token.substr(first, last - first + 1);
  if (token.size() < 16) {
    return InvalidArgumentError("the token in " + path + " must be at least 16 characters");
  }
  return token;
}

}  // namespace

Command AddServeCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand(
      "serve", "Serve the models of a model repository (Open Inference Protocol v2 over HTTP)");
  auto options = std::make_shared<serving::ServeOptions>();
  auto poll_ms = std::make_shared<int64_t>(500);
  auto drain_ms = std::make_shared<int64_t>(30'000);
  auto header_ms = std::make_shared<int64_t>(10'000);
  auto body_ms = std::make_shared<int64_t>(30'000);
  auto idle_ms = std::make_shared<int64_t>(60'000);
  http::ServerOptions& http = options->http;

  app->add_option("--model-repository", options->model_repository,
                  "Model repository directory: <model>/<version>/model.yaml (required unless "
                  "--deployment is given)")
      ->check(CLI::ExistingDirectory);
  app->add_option("--deployment", options->deployment_file,
                  "Deployment file (YAML): models to follow in a registry, verified with trusted "
                  "keys, pulled into a local cache and hot-swapped")
      ->check(CLI::ExistingFile);
  auto deployment_poll_ms = std::make_shared<int64_t>(0);
  app->add_option("--deployment-poll-interval-ms", *deployment_poll_ms,
                  "How often to check the deployed references (0: the file's poll_interval_s)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86'400'000}));
  app->add_option("--http-address", http.address, "Address to listen on")->capture_default_str();
  app->add_option("--http-port", http.port, "Port to listen on; 0 picks a free port")
      ->capture_default_str();
  app->add_option("--http-threads", http.threads,
                  "I/O threads, which also run the models (0: one per available CPU)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  app->add_option("--max-body-bytes", http.max_body_bytes, "Largest request body (413 beyond)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 32));
  app->add_option("--max-header-bytes", http.max_header_bytes,
                  "Largest request header block (431 beyond)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{256}, size_t{1} << 24));
  app->add_option("--header-timeout-ms", *header_ms,
                  "Time allowed for a request's headers once its first byte arrived (408)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  app->add_option("--body-timeout-ms", *body_ms, "Time allowed for a request's body (408)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  app->add_option("--idle-timeout-ms", *idle_ms, "Keep-alive connections idle this long close")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{86'400'000}));
  app->add_option("--max-connections", http.max_connections,
                  "Open connections allowed; more get 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  CLI::Option* tls_cert =
      app->add_option("--tls-cert", http.tls.cert_file,
                      "Serve HTTPS with this PEM certificate (then its chain); reloaded when the "
                      "file changes")
          ->check(CLI::ExistingFile);
  CLI::Option* tls_key =
      app->add_option("--tls-key", http.tls.key_file, "The certificate's PEM private key")
          ->check(CLI::ExistingFile);
  app->add_option("--tls-client-ca", http.tls.client_ca_file,
                  "Require client certificates signed by these PEM CAs (mutual TLS)")
      ->check(CLI::ExistingFile)
      ->needs(tls_cert);
  tls_cert->needs(tls_key);
  tls_key->needs(tls_cert);
  app->add_option("--poll-interval-ms", *poll_ms,
                  "How often to scan the repository for new versions (0: only at start)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86'400'000}));
  auto token_file = std::make_shared<std::string>();
  app->add_option("--api-token-file", *token_file,
                  "File holding the bearer token that the repository load/unload API requires "
                  "(without it, that API is open on loopback and closed otherwise)")
      ->envname("EDGELOOP_API_TOKEN_FILE")
      ->check(CLI::ExistingFile);
  serving::InsightOptions& insights = options->insights;
  auto threshold = std::make_shared<double>(-1);
  app->add_option("--queue", insights.queue_url,
                  "Emit insight events to this queue: file:///dir or redis://host:port/stream "
                  "(off when empty)");
  app->add_option("--site", insights.site, "Site name carried by every insight event")
      ->capture_default_str();
  app->add_option("--sample-rate", insights.sample_rate,
                  "Fraction of normal predictions emitted as events (anomalies always are)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--anomaly-threshold", *threshold,
                  "Without an `anomaly` output: a row is an anomaly when its `score` or "
                  "`probability` output is at least this (negative: off)")
      ->capture_default_str();
  app->add_option("--insight-buffer", insights.capacity,
                  "Events held in memory while the queue is slow or unreachable")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}));
  serving::DriftSettings& drift = options->drift;
  auto drift_window_s = std::make_shared<double>(0);
  auto drift_event_interval_s = std::make_shared<double>(600);
  app->add_option("--drift-window-rows", drift.window_rows,
                  "Drift monitoring: the latest rows compared with the model card's reference "
                  "(0: off)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, serving::kMaxDriftWindowRows));
  app->add_option("--drift-window-s", *drift_window_s,
                  "Drift monitoring: rows older than this leave the window too (0: by count only)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 31'536'000.0));
  app->add_option("--drift-min-rows", drift.min_rows,
                  "Drift monitoring: fewer rows in the window are never drifted")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000'000}));
  app->add_option("--drift-psi-threshold", drift.psi_threshold,
                  "A feature drifted when its PSI exceeds this")
      ->capture_default_str()
      ->check(CLI::Range(1e-9, 1e9));
  app->add_option("--drift-ks-threshold", drift.ks_threshold,
                  "... or when its KS distance exceeds this")
      ->capture_default_str()
      ->check(CLI::Range(1e-9, 1.0));
  app->add_option("--drift-event-interval-s", *drift_event_interval_s,
                  "At most one drift event per model per this many seconds (with --queue)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 31'536'000.0));
  auto web = std::make_shared<webapp::WebAppOptions>();
  auto web_users = std::make_shared<std::string>();
  auto no_web_app = std::make_shared<bool>(false);
  app->add_option("--web-users", *web_users,
                  "Users file of the web app at /ui/ (`edgeloop webapp users add`); without it "
                  "the app runs in dev mode on loopback and takes only the API token otherwise")
      ->check(CLI::ExistingFile);
  app->add_option("--uplink-status-url", web->uplink_status_url,
                  "The worker's metrics URL (http://127.0.0.1:PORT/metrics), for the uplink "
                  "state in the web app's operator view");
  app->add_flag("--no-web-app", *no_web_app, "Serve only the OIP API, not the web app at /ui/");
  app->add_option("--drain-timeout-ms", *drain_ms,
                  "On SIGTERM, how long in-flight requests may take to finish")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{3'600'000}));

  return {app, [=] {
            if (options->model_repository.empty() && options->deployment_file.empty()) {
              std::cerr << "edgeloop serve: --model-repository is required (or --deployment)\n"
                        << "Run with --help for more information.\n";
              return 2;
            }
            options->deployment_poll_interval = std::chrono::milliseconds(*deployment_poll_ms);
            options->poll_interval = std::chrono::milliseconds(*poll_ms);
            options->drain_timeout = std::chrono::milliseconds(*drain_ms);
            options->http.header_timeout = std::chrono::milliseconds(*header_ms);
            options->http.body_timeout = std::chrono::milliseconds(*body_ms);
            options->http.idle_timeout = std::chrono::milliseconds(*idle_ms);
            if (*threshold >= 0) options->insights.threshold = *threshold;
            options->drift.window =
                std::chrono::milliseconds(static_cast<int64_t>(*drift_window_s * 1000 + 0.5));
            options->drift.event_interval = std::chrono::milliseconds(
                static_cast<int64_t>(*drift_event_interval_s * 1000 + 0.5));
            if (!token_file->empty()) {
              auto token = ReadToken(*token_file);
              if (!token.ok()) {
                std::cerr << "edgeloop serve: " << token.status().message() << "\n";
                return 2;
              }
              options->api_token = std::move(*token);
            }
            if (!*no_web_app) {
              web->users_file = *web_users;
              options->web_app = webapp::MakeWebAppFactory(*web);
            }
            const Status status = serving::RunServe(*options);
            if (!status.ok()) {
              log::Error("serve failed", {{"error", status}});
              std::cerr << "edgeloop serve: " << status.message() << "\n";
              return 1;
            }
            return 0;
          }};
}

}  // namespace edgeloop::cli
