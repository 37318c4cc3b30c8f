#include "serving/serve.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <optional>

#include "common/build_info.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "serving/deployment.h"
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

  // The deployment file is read first, so that a mistake in it stops the server before it
  // binds its port or touches the cache.
  std::optional<DeploymentConfig> deployment;
  std::filesystem::path repository = options.model_repository;
  if (!options.deployment_file.empty()) {
    ASSIGN_OR_RETURN(deployment, LoadDeploymentFile(options.deployment_file));
    if (options.deployment_poll_interval.count() > 0) {
      deployment->poll_interval = options.deployment_poll_interval;
    }
    if (repository.empty()) repository = deployment->cache_dir / "repository";
  }
  if (repository.empty()) {
    return InvalidArgumentError("--model-repository or --deployment is required");
  }

  metrics::Registry registry;
  ASSIGN_OR_RETURN(std::unique_ptr<http::Server> server,
                   http::Server::Create(options.http, &registry));
  if (deployment) {
    std::error_code ec;
    std::filesystem::create_directories(repository, ec);
    if (ec) {
      return UnavailableError("cannot create the model repository " + repository.string() + ": " +
                              ec.message());
    }
  }

  ModelManagerOptions manager_options;
  manager_options.repository = repository;
  manager_options.registry = &registry;
  manager_options.runner = server.get();
  manager_options.batch_concurrency = server->threads();
  ASSIGN_OR_RETURN(std::unique_ptr<ModelManager> manager, ModelManager::Create(manager_options));

  // The deployer reconciles its cache with its state before the first load, so that only
  // verified versions are ever loaded; it does not contact the registry until Start().
  std::unique_ptr<Deployer> deployer;
  if (deployment) {
    DeployerOptions deployer_options;
    deployer_options.config = *deployment;
    deployer_options.repository = repository;
    deployer_options.manager = manager.get();
    deployer_options.metrics = &registry;
    ASSIGN_OR_RETURN(deployer, Deployer::Create(std::move(deployer_options)));
  }

  // Insight events: a bad queue URL stops the server here; a queue that cannot be reached yet
  // does not (events wait in memory, then are dropped and counted).
  std::unique_ptr<InsightEmitter> insights;
  if (!options.insights.queue_url.empty()) {
    InsightOptions insight_options = options.insights;
    insight_options.metrics = &registry;
    ASSIGN_OR_RETURN(insights, InsightEmitter::Create(std::move(insight_options)));
    log::Info("emitting insight events", {{"queue", options.insights.queue_url},
                                          {"site", options.insights.site},
                                          {"sample_rate", options.insights.sample_rate}});
  }

  log::Info("loading models", {{"repository", repository.string()}});
  manager->Reconcile(/*trust_new_folders=*/true);
  manager->Start(options.poll_interval);

  std::atomic<bool> draining{false};
  ControlAccess control{options.api_token, server->listens_on_loopback_only()};
  if (options.api_token.empty() && !control.allow_without_token) {
    log::Warn(
        "the repository control API (load/unload) is disabled: no --api-token-file and "
        "the server listens beyond loopback");
  }
  // Drift monitoring: per model settings from the deployment file, else the flags'.
  std::unique_ptr<DriftMonitor> drift;
  {
    DriftMonitorOptions drift_options;
    drift_options.defaults = options.drift;
    drift_options.metrics = &registry;
    if (deployment) {
      for (const DeployedModel& model : deployment->models) {
        if (model.drift) drift_options.per_model[model.name] = *model.drift;
      }
    }
    const bool any = drift_options.defaults.window_rows > 0 ||
                     std::any_of(drift_options.per_model.begin(), drift_options.per_model.end(),
                                 [](const auto& item) { return item.second.window_rows > 0; });
    if (insights) {
      drift_options.on_drift = [emitter = insights.get()](
                                   const std::shared_ptr<const ServableVersion>& servable,
                                   const DriftReport& report) {
        emitter->OnDrift(servable, DriftEventJson(report));
      };
    }
    if (any) drift = std::make_unique<DriftMonitor>(std::move(drift_options));
  }
  OipHandler handler(manager.get(), &registry, Clock::Real(), &draining, std::move(control),
                     deployer.get(), insights.get(), drift.get());
  std::unique_ptr<http::Handler> web_app;
  if (options.web_app) {
    WebAppContext context;
    context.manager = manager.get();
    context.registry = &registry;
    context.api = &handler;
    context.deployer = deployer.get();
    context.insights = insights.get();
    context.loopback_only = server->listens_on_loopback_only();
    context.api_token = options.api_token;
    context.queue_url = options.insights.queue_url;
    context.anomaly_threshold = options.insights.threshold;
    ASSIGN_OR_RETURN(web_app, options.web_app(context));
  }
  server->Start(web_app ? web_app.get() : static_cast<http::Handler*>(&handler));
  log::Info("listening", {{"address", server->address()},
                          {"port", static_cast<int>(server->port())},
                          {"threads", server->threads()},
                          {"version", build_info::kVersion}});
  if (deployer) {
    log::Info("following the deployment",
              {{"file", options.deployment_file},
               {"models", static_cast<int64_t>(deployment->models.size())},
               {"poll_interval_ms", static_cast<int64_t>(deployer->poll_interval().count())}});
    deployer->Start();
  }

  int received = 0;
  sigwait(&signals, &received);
  log::Info("shutting down",
            {{"signal", strsignal(received)},
             {"drain_timeout_ms", static_cast<int64_t>(options.drain_timeout.count())}});
  draining.store(true);
  const bool drained = server->Shutdown(options.drain_timeout);
  if (deployer) deployer->Stop();
  // Events still in memory get a few seconds to reach the queue.
  if (insights) insights->Stop(std::chrono::milliseconds(5'000));
  manager->Stop();
  if (drained) {
    log::Info("stopped");
  } else {
    log::Warn("stopped before every request finished: the drain timeout passed");
  }
  return Status::Ok();
}

}  // namespace edgeloop::serving
