#include "serving/serve.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstring>

#include "common/build_info.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "serving/model_manager.h"
#include "serving/oip_handler.h"

namespace edgeloop::serving {

Status RunServe(const ServeOptions& options) {
  // Termination signals are taken synchronously by this thread (sigwait), so they are blocked
  // before any other thread starts and every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  metrics::Registry registry;
  ASSIGN_OR_RETURN(std::unique_ptr<http::Server> server,
                   http::Server::Create(options.http, &registry));

  ModelManagerOptions manager_options;
  manager_options.repository = options.model_repository;
  manager_options.registry = &registry;
  manager_options.runner = server.get();
  manager_options.batch_concurrency = server->threads();
  ASSIGN_OR_RETURN(std::unique_ptr<ModelManager> manager, ModelManager::Create(manager_options));

  log::Info("loading models", {{"repository", options.model_repository}});
  manager->Reconcile(/*trust_new_folders=*/true);
  manager->Start(options.poll_interval);

  std::atomic<bool> draining{false};
  ControlAccess control{options.api_token, server->listens_on_loopback_only()};
  if (options.api_token.empty() && !control.allow_without_token) {
    log::Warn(
        "the repository control API (load/unload) is disabled: no --api-token-file and "
        "the server listens beyond loopback");
  }
  OipHandler handler(manager.get(), &registry, Clock::Real(), &draining, std::move(control));
  server->Start(&handler);
  log::Info("listening", {{"address", server->address()},
                          {"port", static_cast<int>(server->port())},
                          {"threads", server->threads()},
                          {"version", build_info::kVersion}});

  int received = 0;
  sigwait(&signals, &received);
  log::Info("shutting down",
            {{"signal", strsignal(received)},
             {"drain_timeout_ms", static_cast<int64_t>(options.drain_timeout.count())}});
  draining.store(true);
  const bool drained = server->Shutdown(options.drain_timeout);
  manager->Stop();
  if (drained) {
    log::Info("stopped");
  } else {
    log::Warn("stopped before every request finished: the drain timeout passed");
  }
  return Status::Ok();
}

}  // namespace edgeloop::serving
