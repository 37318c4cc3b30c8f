#include "hub/hub.h"

#include <pthread.h>
#include <signal.h>

#include <cstring>

#include "common/build_info.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace edgeloop::hub {

Status RunHub(const HubOptions& options) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  sigaddset(&signals, SIGHUP);
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
    server->Start(&handler);
    log::Info("listening",
              {{"address", server->address()},
               {"port", static_cast<int>(server->port())},
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
  }
  log::Info("stopped");
  return Status::Ok();
}

}  // namespace edgeloop::hub
               {"tls", server->tls()},
