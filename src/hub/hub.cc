#include "hub/hub.h"

#include <pthread.h>
#include <signal.h>

#include <cstring>

#include "common/build_info.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "hub/scheduler.h"

namespace edgeloop::hub {

Status RunHub(const HubOptions& options) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  StoreOptions store_options;
  store_options.pool_size = std::max(options.store_connections, options.handler.workers);
  store_options.migrate = options.migrate;
  ASSIGN_OR_RETURN(std::unique_ptr<Store> store, Store::Open(options.store_url, store_options));

  metrics::Registry registry;
  ASSIGN_OR_RETURN(std::unique_ptr<http::Server> server,
                   http::Server::Create(options.http, &registry));
  if (!server->listens_on_loopback_only() && !server->tls()) {
    log::Warn(
        "the hub listens beyond loopback over plain HTTP: put it behind a TLS-terminating "
        "reverse proxy (docs/hub.md), since tokens travel in every request");
  }
  {
    HubHandler handler(store.get(), &registry, Clock::Real(), options.handler);
    ProcessLauncher launcher;
    std::unique_ptr<Scheduler> scheduler;
    if (!options.schedule_file.empty()) {
      const std::string host = server->address() == "0.0.0.0" || server->address() == "::"
                                   ? "127.0.0.1"
                                   : server->address();
      const std::string url = std::string(server->tls() ? "https" : "http") + "://" +
                              (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                              ":" + std::to_string(server->port());
      ASSIGN_OR_RETURN(scheduler, CreateHubScheduler(options.schedule_file, options.time_scale, url,
                                                     store.get(), Clock::Real(), &launcher));
      handler.SetJobRunner(scheduler.get());
    }
    server->Start(&handler);
    if (scheduler) scheduler->Start();
    log::Info("listening",
              {{"address", server->address()},
               {"port", static_cast<int>(server->port())},
               {"tls", server->tls()},
               {"store", store->dialect() == Dialect::kSqlite ? "sqlite" : "postgresql"},
               {"workers", options.handler.workers},
               {"version", build_info::kVersion}});
    int received = 0;
    // SIGHUP reads the TLS certificate and key again (a renewed certificate).
    while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
      if (server->tls()) (void)server->ReloadTls();
    }
    log::Info("shutting down", {{"signal", strsignal(received)}});
    const bool drained = server->Shutdown(options.drain_timeout);
    if (!drained) log::Warn("stopped before every request finished: the drain timeout passed");
    if (scheduler) scheduler->Stop();  // running jobs end interrupted
  }
  log::Info("stopped");
  return Status::Ok();
}

}  // namespace edgeloop::hub
