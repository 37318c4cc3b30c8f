#include "functions/run_worker.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

#include "common/build_info.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "functions/chain_config.h"
#include "functions/worker.h"
#include "http/server.h"

namespace edgeloop::functions {
namespace {

class MetricsHandler : public http::Handler {
 public:
  explicit MetricsHandler(metrics::Registry* registry) : registry_(registry) {}
  void Handle(http::Request request, http::Responder respond) override {
    if (request.method != http::Method::kGet && request.method != http::Method::kHead) {
      http::Response response = http::Response::Error(405, "method not allowed; use GET");
      response.headers.emplace_back("Allow", "GET");
      return respond(std::move(response));
    }
    if (request.path() == "/metrics") {
      http::Response response = http::Response::Json(200, registry_->Render());
      response.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return respond(std::move(response));
    }
    if (request.path() == "/healthz") return respond(http::Response::Json(200, R"({"live":true})"));
    respond(http::Response::Error(404, "not found: " + std::string(request.path())));
  }

 private:
  metrics::Registry* registry_;
};

std::string DefaultConsumer() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "worker");
  return std::string(host) + "-" + std::to_string(::getpid());
}

}  // namespace

Status RunWorker(const RunWorkerOptions& options) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  metrics::Registry registry;
  // The function file first: a mistake in it stops the worker before it touches the queue.
  ASSIGN_OR_RETURN(auto chain, LoadChain(options.function_file, Clock::Real(), &registry));
  RETURN_IF_ERROR(options.retry.Validate());
  queue::QueueOptions queue_options;
  queue_options.url = options.queue_url;
  queue_options.retry = options.retry;
  queue_options.default_visibility = options.visibility;
  auto opened = queue::Queue::Open(queue_options);
  if (!opened.ok()) return opened.status().WithContext("--queue " + options.queue_url);
  std::unique_ptr<queue::Queue> queue = std::move(*opened);

  std::unique_ptr<http::Server> server;
  MetricsHandler handler(&registry);
  if (options.metrics_port >= 0) {
    http::ServerOptions http_options;
    http_options.address = options.metrics_address;
    http_options.port = static_cast<uint16_t>(options.metrics_port);
    http_options.threads = 1;
    ASSIGN_OR_RETURN(server, http::Server::Create(http_options, nullptr));
  }

  WorkerOptions worker_options;
  worker_options.queue = queue.get();
  worker_options.consumer = options.consumer.empty() ? DefaultConsumer() : options.consumer;
  worker_options.chain = std::move(chain);
  worker_options.batch_size = options.batch_size;
  worker_options.concurrency = options.concurrency;
  worker_options.visibility = options.visibility;
  worker_options.lease_wait = options.lease_wait;
  worker_options.probe_initial = options.probe_initial;
  worker_options.probe_max = options.probe_max;
  worker_options.metrics = &registry;
  const std::string consumer = worker_options.consumer;
  ASSIGN_OR_RETURN(auto worker, Worker::Create(std::move(worker_options)));

  if (server) server->Start(&handler);
  worker->Start();
  log::Info("listening", {{"queue", queue->Describe()},
                          {"consumer", consumer},
                          {"address", server ? server->address() : std::string("-")},
                          {"port", server ? static_cast<int>(server->port()) : -1},
                          {"concurrency", options.concurrency},
                          {"batch_size", options.batch_size},
                          {"version", build_info::kVersion}});

  int received = 0;
  sigwait(&signals, &received);
  log::Info("shutting down",
            {{"signal", strsignal(received)},
             {"drain_timeout_ms", static_cast<int64_t>(options.drain_timeout.count())}});
  const bool finished = worker->Drain(options.drain_timeout);
  if (server) server->Shutdown(std::chrono::milliseconds(1000));
  if (finished) {
    log::Info("stopped");
  } else {
    log::Warn("stopped after cancelling batches in flight (drain timeout); they were handed back");
  }
  return Status::Ok();
}

}  // namespace edgeloop::functions
