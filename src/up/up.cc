#include "up/up.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/logging.h"
#include "registry/http_client.h"
#include "up/feed.h"
#include "up/supervisor.h"

namespace edgeloop::up {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kModel[] = "machine-failure";
constexpr char kSite[] = "plant-1";
constexpr char kSelf[] = "/proc/self/exe";

// Termination signals are blocked in every thread and taken here, synchronously.
class Signals {
 public:
  Signals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &previous_);
  }
  ~Signals() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  // Waits up to `wait` for a signal; true once one arrived (and from then on).
  bool Received(milliseconds wait = milliseconds(0)) {
    if (received_) return true;
    timespec timeout{static_cast<time_t>(wait.count() / 1000),
                     static_cast<long>((wait.count() % 1000) * 1'000'000)};
    const int signal_number = sigtimedwait(&set_, nullptr, &timeout);
    if (signal_number > 0) {
      received_ = true;
      log::Info("stopping", {{"signal", strsignal(signal_number)}});
    }
    return received_;
  }

 private:
  sigset_t set_;
  sigset_t previous_;
  bool received_ = false;
};

Status WriteFile(const fs::path& path, const std::string& content, bool only_if_missing = false) {
  if (only_if_missing && fs::exists(path)) return Status::Ok();
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    out << content;
    out.flush();
    if (!out) return InternalError("cannot write " + tmp.string());
  }
  fs::rename(tmp, path, ec);
  if (ec) return InternalError("cannot write " + path.string() + ": " + ec.message());
  return Status::Ok();
}

std::string ReadFirstLine(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// Fails when something already listens on 127.0.0.1:port (or the port cannot be bound).
Status CheckPortFree(int port, const std::string& what) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return InternalError("socket() failed");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int r = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  const int error = errno;
  ::close(fd);
  if (r != 0) {
    return FailedPreconditionError("port " + std::to_string(port) + " (" + what +
                                   ") is in use or cannot be bound (" + strerror(error) +
                                   "); stop what uses it or pick another --port-base");
  }
  return Status::Ok();
}

// HTTP GET on loopback for the status line; empty on any failure.
std::string Get(registry::HttpClient& client, const std::string& url, const std::string& token) {
  registry::HttpRequest request;
  request.url = url;
  if (!token.empty()) request.headers.push_back("Authorization: Bearer " + token);
  auto response = client.Send(request);
  if (!response.ok() || response->status != 200) return "";
  return response->body;
}

class Up {
 public:
  explicit Up(const UpOptions& options) : o_(options) {}
  Status Run();

 private:
  fs::path P(const std::string& relative) const { return dir_ / relative; }
  ChildSpec Spec(const std::string& name, std::vector<std::string> args) const {
    ChildSpec spec;
    spec.name = name;
    spec.argv = {kSelf, "--log-format", o_.log_format, "--log-level", o_.log_level};
    for (std::string& a : args) spec.argv.push_back(std::move(a));
    spec.log = P("logs/" + name + ".log");
    return spec;
  }
  // Runs a one-shot step; fails with its log's tail unless it exits with one of `ok_codes`.
  StatusOr<int> Step(const std::string& name, std::vector<std::string> args,
                     std::vector<int> ok_codes = {0}, const fs::path& stdout_file = {},
                     milliseconds timeout = milliseconds(600'000));
  bool Stopping() { return signals_.Received(); }

  Status Prepare();
  Status LoadState();
  Status SaveState();
  Status GenerateData();
  Status WriteSpecs();
  Status TrainFirstModel();
  Status SetUpHub();
  Status StartHub();
  Status StartEdge();
  Status StartWorker();
  void PrintBanner();
  void PrintStatus(registry::HttpClient& client);

  const UpOptions& o_;
  fs::path dir_;
  Signals signals_;
  Supervisor supervisor_;
  int lock_fd_ = -1;
  Json state_ = Json::object();
  int hub_port_ = 0;
  int edge_port_ = 0;
  int worker_port_ = 0;
  std::unique_ptr<Feed> feed_;
};

StatusOr<int> Up::Step(const std::string& name, std::vector<std::string> args,
                       std::vector<int> ok_codes, const fs::path& stdout_file,
                       milliseconds timeout) {
  ChildSpec spec = Spec(name, std::move(args));
  spec.stdout_file = stdout_file;
  log::Info("step", {{"name", name}});
  ASSIGN_OR_RETURN(const int code, supervisor_.Run(spec, timeout, [this] { return Stopping(); }));
  for (int ok : ok_codes) {
    if (code == ok) return code;
  }
  return UnavailableError(name + " failed with exit code " + std::to_string(code) + "; its log (" +
                          spec.log.string() + ") ends:\n" + Supervisor::Tail(spec.log));
}

Status Up::Prepare() {
  if (o_.time_scale <= 0 || !std::isfinite(o_.time_scale)) {
    return InvalidArgumentError("--time-scale must be a positive number");
  }
  if (o_.feed_rate < 0) return InvalidArgumentError("--feed-rate must not be negative");
  if (o_.port_base != 0 && (o_.port_base < 1024 || o_.port_base > 65'533)) {
    return InvalidArgumentError("--port-base must be 0 (free ports) or between 1024 and 65533");
  }
  std::error_code ec;
  fs::create_directories(o_.dir, ec);
  if (ec) return InvalidArgumentError("cannot create " + o_.dir.string() + ": " + ec.message());
  dir_ = fs::absolute(o_.dir).lexically_normal();
  lock_fd_ = ::open((dir_ / "up.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return FailedPreconditionError("another edgeloop up is using " + dir_.string() +
                                   " (stop it first, or pick another --dir)");
  }
  if (o_.port_base != 0) {
    RETURN_IF_ERROR(CheckPortFree(o_.port_base, "hub"));
    RETURN_IF_ERROR(CheckPortFree(o_.port_base + 1, "edge server"));
    RETURN_IF_ERROR(CheckPortFree(o_.port_base + 2, "worker metrics"));
  }
  return LoadState();
}

Status Up::LoadState() {
  std::ifstream in(P("up.json"));
  if (!in) return Status::Ok();
  state_ = Json::parse(in, nullptr, false);
  if (!state_.is_object()) {
    return FailedPreconditionError(P("up.json").string() +
                                   " is not readable JSON; remove the folder to start afresh");
  }
  return Status::Ok();
}

Status Up::SaveState() { return WriteFile(P("up.json"), state_.dump(2) + "\n"); }

Status Up::GenerateData() {
  if (fs::exists(P("data/live.csv")) && fs::exists(P("data/history/readings.csv"))) {
    log::Info("demo data already generated; reusing it", {{"dir", P("data").string()}});
    return Status::Ok();
  }
  log::Info("generating the demo data set", {{"machines", o_.data.machines},
                                             {"history_rows", o_.data.history_rows},
                                             {"live_rows", o_.data.live_rows}});
  ASSIGN_OR_RETURN(DemoData data, GenerateDemoData(o_.data));
  RETURN_IF_ERROR(WriteDemoData(data, P("data")));
  state_["data"] = {{"seed", o_.data.seed},
                    {"machines", o_.data.machines},
                    {"history_rows", data.history.size()},
                    {"live_rows", data.live.size()},
                    {"drift_at", o_.data.drift_at}};
  return SaveState();
}

Status Up::WriteSpecs() {
  std::string features_list;
  std::string schema;
  std::string allow;
  for (const std::string& f : DemoFeatures()) {
    features_list += (features_list.empty() ? "" : ", ") + f;
    schema += "  - {name: " + f + ", type: double}\n";
    allow += "  - inputs." + f + "\n";
  }
  // The history, typed, into the lake. The operator id stays out of the lake.
  RETURN_IF_ERROR(WriteFile(P("specs/history-pipeline.yaml"),
                            "# Written by edgeloop up: the factory's history into the lake.\n"
                            "name: demo-history\n"
                            "source: {type: csv, path: ../data/history, header: true}\n"
                            "schema:\n"
                            "  - {name: ts, type: timestamp}\n"
                            "  - {name: machine_id, type: string}\n" +
                                schema +
                                "  - {name: failure, type: int64}\n"
                                "steps:\n"
                                "  - select: [ts, machine_id, " +
                                features_list +
                                ", failure]\n"
                                "target: {table: readings}\n"
                                "incremental: {watermark: ts}\n"));
  const std::string trainer =
      "split: {method: time, time_column: ts, validation: 0.15, test: 0.2}\n"
      "threshold: {rule: max_f1}\n"
      "trainer:\n"
      "  rounds: 150\n"
      "  early_stopping_rounds: 15\n"
      "  params: {max_depth: 5, eta: 0.15, seed: 7, nthread: 2}\n"
      "gate:\n"
      "  metric: roc_auc\n"
      "  min_improvement: 0.01\n"
      "  floors: {roc_auc: 0.70}\n";
  RETURN_IF_ERROR(WriteFile(P("specs/train.yaml"),
                            "# Written by edgeloop up: the first model, from the history.\n"
                            "name: machine-failure\n"
                            "table: readings\n"
                            "task: binary\n"
                            "label: failure\n"
                            "features: [" +
                                features_list + "]\n" + trainer));
  // Retraining (run by the hub's scheduler): compliant events joined with their feedback labels
  // into the lake, then the challenger trained on them and gated against the champion.
  RETURN_IF_ERROR(WriteFile(P("specs/retrain-pipeline.yaml"),
                            "# Written by edgeloop up: labelled events from the hub into the lake\n"
                            "# (the scheduler passes the hub's URL and a read token).\n"
                            "name: hub-feedback\n"
                            "source: {type: hub, model: machine-failure}\n"
                            "steps:\n"
                            "  - cast: {label: int64}\n"
                            "  - select: [id, ts, labelled_at, model_version, label, " +
                                features_list +
                                "]\n"
                                "target: {table: feedback_readings}\n"
                                "incremental: {watermark: labelled_at}\n"));
  RETURN_IF_ERROR(WriteFile(P("specs/retrain.yaml"),
                            "# Written by edgeloop up: the challenger, from the labelled events.\n"
                            "name: machine-failure\n"
                            "table: feedback_readings\n"
                            "task: binary\n"
                            "label: label\n"
                            "features: [" +
                                features_list + "]\n" + trainer));
  // What may leave the site: no operator ids, no comments.
  return WriteFile(
      P("edge/policy.yaml"),
      "# Written by edgeloop up: what leaves the site for the hub (fail-closed).\n"
      "version: 1\n"
      "destination: hub\n"
      "allow:\n"
      "  - id\n  - type\n  - site\n  - model\n  - timestamp\n  - request_id\n"
      "  - outputs\n  - prediction\n  - anomaly\n  - latency_ms\n"
      "  - label               # feedback: the label; the comment (who checked) stays\n"
      "  - drift\n  - ts_ms\n  - model_version\n  - model_digest\n" +
          allow);
}

Status Up::TrainFirstModel() {
  RETURN_IF_ERROR(
      Step("pipeline-history", {"pipeline", "run", P("specs/history-pipeline.yaml").string(),
                                "--lake", P("lake").string(), "--no-progress"})
          .status());
  if (!fs::exists(P("keys/release.key"))) {
    std::error_code ec;
    fs::create_directories(P("keys"), ec);
    RETURN_IF_ERROR(
        Step("keygen", {"model", "keygen", "--out", P("keys/release").string()}).status());
  }
  if (state_.contains("first_model")) {
    log::Info("the first model was trained before; reusing it",
              {{"digest", state_["first_model"].value("digest", "")}});
    return Status::Ok();
  }
  std::error_code ec;
  fs::remove_all(P("models/first"), ec);
  const std::string registry = "layout://" + P("registry/machine-failure").string();
  const fs::path summary = P("models/first-summary.json");
  fs::create_directories(P("models"), ec);
  RETURN_IF_ERROR(
      Step("train-first",
           {"train", P("specs/train.yaml").string(), "--lake", P("lake").string(), "--out",
            P("models/first").string(), "--push", registry + ":first", "--key",
            P("keys/release.key").string(), "--promote", "champion", "--reason",
            "edgeloop up: the first model, trained on the history", "--json", "--quiet"},
           {0}, summary)
          .status());
  std::ifstream in(summary);
  Json result = Json::parse(in, nullptr, false);
  state_["first_model"] = {{"version", result.is_object() ? result.value("version", "") : ""},
                           {"digest", ""}};
  if (result.is_object() && result.contains("pushed")) {
    const Json& pushed = result["pushed"];
    if (pushed.is_string()) state_["first_model"]["digest"] = pushed;
    if (pushed.is_object()) state_["first_model"]["digest"] = pushed.value("digest", "");
  }
  if (result.is_object() && result.contains("metrics")) {
    state_["first_model"]["metrics"] = result["metrics"].value("test", Json::object());
  }
  return SaveState();
}

Status Up::SetUpHub() {
  const std::string store = "sqlite://" + P("hub/hub.db").string();
  std::error_code ec;
  fs::create_directories(P("hub"), ec);
  fs::create_directories(P("tokens"), ec);
  RETURN_IF_ERROR(Step("hub-migrate", {"hub", "migrate", "--store", store}).status());
  if (ReadFirstLine(P("tokens/site.token")).empty()) {
    ASSIGN_OR_RETURN(const int code,
                     Step("hub-site", {"hub", "site", "add", kSite, "--store", store}, {0, 2},
                          P("tokens/site.token.new")));
    if (code == 2) {  // the site exists (a start cut short): a new token for it
      RETURN_IF_ERROR(Step("hub-site",
                           {"hub", "token", "add", std::string(kSite) + "-upload", "--role", "site",
                            "--site", kSite, "--store", store},
                           {0}, P("tokens/site.token.new"))
                          .status());
    }
    fs::rename(P("tokens/site.token.new"), P("tokens/site.token"), ec);
    if (ec) return InternalError("cannot keep the site token: " + ec.message());
  }
  if (ReadFirstLine(P("tokens/dashboard.token")).empty()) {
    RETURN_IF_ERROR(Step("hub-token",
                         {"hub", "token", "add", "dashboard", "--role", "read", "--store", store},
                         {0}, P("tokens/dashboard.token.new"))
                        .status());
    fs::rename(P("tokens/dashboard.token.new"), P("tokens/dashboard.token"), ec);
  }
  if (ReadFirstLine(P("tokens/admin.token")).empty()) {
    RETURN_IF_ERROR(Step("hub-token",
                         {"hub", "token", "add", "up-admin", "--role", "admin", "--store", store},
                         {0}, P("tokens/admin.token.new"))
                        .status());
    fs::rename(P("tokens/admin.token.new"), P("tokens/admin.token"), ec);
  }
  return Status::Ok();
}

Status Up::StartHub() {
  const std::string registry = "layout://" + P("registry/machine-failure").string();
  RETURN_IF_ERROR(WriteFile(
      P("hub/schedule.yaml"),
      "# Written by edgeloop up: retrain machine-failure from the edge's feedback.\n"
      "lake: ../lake\n"
      "work_dir: jobs\n"
      "models:\n"
      "  - model: machine-failure\n"
      "    pipeline: ../specs/retrain-pipeline.yaml\n"
      "    train: ../specs/retrain.yaml\n"
      "    champion: " +
          registry +
          ":champion\n"
          "    push: " +
          registry +
          ":candidate\n"
          "    key: ../keys/release.key\n"
          "    promote: champion\n"
          "    schedule:\n"
          "      - cron: \"0 */2 * * *\"      # every two hours of the accelerated clock\n"
          "    triggers:\n"
          "      drift: {events: 2, window: 1h}\n"
          "    cooldown: 1h\n"
          "    timeout: 10m\n"));
  std::vector<std::string> args = {"hub",
                                   "serve",
                                   "--store",
                                   "sqlite://" + P("hub/hub.db").string(),
                                   "--http-address",
                                   "127.0.0.1",
                                   "--http-port",
                                   std::to_string(o_.port_base == 0 ? 0 : o_.port_base),
                                   "--drain-timeout-ms",
                                   "5000"};
  args.insert(args.end(), {"--schedule", P("hub/schedule.yaml").string(), "--time-scale",
                           std::to_string(o_.time_scale)});
  ASSIGN_OR_RETURN(const size_t index, supervisor_.Start(Spec("hub", args)));
  ASSIGN_OR_RETURN(hub_port_,
                   supervisor_.WaitListening(index, seconds(60), [this] { return Stopping(); }));
  return Status::Ok();
}

Status Up::StartEdge() {
  const std::string registry = "layout://" + P("registry/machine-failure").string();
  RETURN_IF_ERROR(WriteFile(P("edge/deployment.yaml"),
                            "# Written by edgeloop up: follow the champion alias, canary first.\n"
                            "cache_dir: cache\n"
                            "poll_interval_s: 2\n"
                            "trusted_keys: [../keys/release.pub]\n"
                            "models:\n"
                            "  - name: machine-failure\n"
                            "    ref: " +
                                registry +
                                ":champion\n"
                                "    keep_versions: 3\n"
                                "    rollout:\n"
                                "      mode: canary\n"
                                "      share: 0.5\n"
                                "      route_key: header:X-Edgeloop-Route-Key\n"
                                "      period_s: 15\n"
                                "      min_requests: 100\n"
                                "      max_period_s: 600\n"
                                "      on_timeout: rollback\n"
                                "      limits:\n"
                                "        max_error_rate: 0.01\n"
                                "        max_latency_ratio: 5\n"
                                "        latency_slack_ms: 20\n"
                                "        # A retrained model scores differently on purpose\n"
                                "        # after a concept drift; only a wild change fails.\n"
                                "        max_score_psi: 8\n"
                                "    drift:\n"
                                "      window_rows: 600\n"
                                "      min_rows: 200\n"
                                "      psi_threshold: 0.25\n"
                                "      ks_threshold: 0.25\n"
                                "      event_interval_s: 20\n"));
  std::vector<std::string> args = {"serve",
                                   "--deployment",
                                   P("edge/deployment.yaml").string(),
                                   "--http-address",
                                   "127.0.0.1",
                                   "--http-port",
                                   std::to_string(o_.port_base == 0 ? 0 : o_.port_base + 1),
                                   "--queue",
                                   "file://" + P("edge/queue").string(),
                                   "--site",
                                   kSite,
                                   "--sample-rate",
                                   "1",
                                   "--anomaly-threshold",
                                   "0.9",
                                   "--drain-timeout-ms",
                                   "5000",
                                   "--uplink-status-url",
                                   "http://127.0.0.1:" + std::to_string(worker_port_) + "/metrics"};
  ASSIGN_OR_RETURN(const size_t index, supervisor_.Start(Spec("serve", args)));
  ASSIGN_OR_RETURN(edge_port_,
                   supervisor_.WaitListening(index, seconds(120), [this] { return Stopping(); }));
  return Status::Ok();
}

Status Up::StartWorker() {
  RETURN_IF_ERROR(WriteFile(P("edge/worker.yaml"),
                            "# Written by edgeloop up: compliance, then upload to the hub.\n"
                            "functions:\n"
                            "  - compliance:\n"
                            "      policy: policy.yaml\n"
                            "      audit_log: audit/hub.jsonl\n"
                            "  - upload:\n"
                            "      destination: hub\n"
                            "      url: http://127.0.0.1:" +
                                std::to_string(hub_port_) +
                                "/api/v1/ingest\n"
                                "      token_file: ../tokens/site.token\n"
                                "      compression: zstd\n"));
  std::vector<std::string> args = {"worker",
                                   "--queue",
                                   "file://" + P("edge/queue").string(),
                                   "--function",
                                   P("edge/worker.yaml").string(),
                                   "--consumer",
                                   "up-worker",
                                   "--batch-size",
                                   "200",
                                   "--lease-wait-ms",
                                   "200",
                                   "--probe-max-ms",
                                   "5000",
                                   "--retry-max-ms",
                                   "10000",
                                   "--drain-timeout-ms",
                                   "5000",
                                   "--metrics-address",
                                   "127.0.0.1",
                                   "--metrics-port",
                                   std::to_string(o_.port_base == 0 ? 0 : o_.port_base + 2)};
  ASSIGN_OR_RETURN(const size_t index, supervisor_.Start(Spec("worker", args)));
  ASSIGN_OR_RETURN(worker_port_,
                   supervisor_.WaitListening(index, seconds(60), [this] { return Stopping(); }));
  return Status::Ok();
}

void Up::PrintBanner() {
  const std::string dashboard_token = ReadFirstLine(P("tokens/dashboard.token"));
  std::ostringstream out;
  out << "\nedgeloop up: the whole loop runs on this machine (state in " << dir_.string()
      << ", logs in " << P("logs").string() << ")\n\n"
      << "  Edge server     http://127.0.0.1:" << edge_port_
      << "/ui/       (the edge web app; the OIP API under /v2)\n"
      << "  Hub dashboard   http://127.0.0.1:" << hub_port_
      << "/#range=900000&token=" << dashboard_token << "\n"
      << "  Worker metrics  http://127.0.0.1:" << worker_port_ << "/metrics\n\n"
      << "What to look at:\n"
      << "  1. The feed replays the factory's readings (" << o_.data.machines
      << " machines, one reading per machine per simulated minute, " << o_.time_scale
      << "x real time)\n"
      << "     and sends every reading's true label back as feedback.\n"
      << "  2. After " << static_cast<int>(o_.data.drift_at * 100)
      << " % of the feed, a concept drift starts (new bearings, a new hydraulic supplier):\n"
      << "     the first model's accuracy drops; the edge reports drift on vibration_rms.\n"
      << "  3. The hub's scheduler retrains from the feedback (Jobs on the dashboard, or\n"
      << "     curl -H 'Authorization: Bearer " << dashboard_token
      << "' http://127.0.0.1:" << hub_port_ << "/api/v1/jobs);\n"
      << "     the challenger passes the gate and is promoted to :champion.\n"
      << "  4. The edge tries it as a canary on half of the machines, then promotes it:\n"
      << "     curl -s http://127.0.0.1:" << edge_port_ << "/v2/deployment\n"
      << "  5. Accuracy recovers (the status line below; " << P("feed.json").string() << ").\n"
      << "  Operator ids never leave the site: the compliance policy ("
      << P("edge/policy.yaml").string() << ")\n     lets only the label through; the audit log is "
      << P("edge/audit/hub.jsonl").string() << ".\n\n"
      << "Press Ctrl-C to stop; `edgeloop up --dir " << o_.dir.string()
      << "` resumes where it stopped.\n"
      << std::endl;
  std::cout << out.str() << std::flush;
}

void Up::PrintStatus(registry::HttpClient& client) {
  Json feed = Json::parse(feed_->StateJson(), nullptr, false);
  std::string rollout;
  Json deployment = Json::parse(
      Get(client, "http://127.0.0.1:" + std::to_string(edge_port_) + "/v2/deployment", ""), nullptr,
      false);
  if (deployment.is_object() && deployment.contains("models") && !deployment["models"].empty()) {
    const Json& m = deployment["models"][0];
    if (m.contains("rollout") && m["rollout"].is_object() &&
        m["rollout"].value("state", "none") != "none") {
      rollout = " | canary v" + std::to_string(m["rollout"].value("candidate_version", 0));
    }
  }
  std::string jobs;
  Json job_list = Json::parse(
      Get(client, "http://127.0.0.1:" + std::to_string(hub_port_) + "/api/v1/jobs?limit=1",
          ReadFirstLine(P("tokens/dashboard.token"))),
      nullptr, false);
  if (job_list.is_object() && job_list.contains("jobs") && !job_list["jobs"].empty()) {
    jobs = " | last job: " + job_list["jobs"][0].value("status", "?");
  }
  char accuracy[32] = "-";
  if (feed.is_object() && feed["rolling_accuracy"].is_number()) {
    std::snprintf(accuracy, sizeof(accuracy), "%.3f", feed["rolling_accuracy"].get<double>());
  }
  std::cout << "[" << feed.value("sim_time", "-") << "] readings " << feed.value("position", 0)
            << "/" << feed.value("total", 0)
            << (feed.value("phase", 0) == 1 ? " (after the drift)" : " (before the drift)")
            << " | model v" << feed.value("current_version", "-") << rollout
            << " | accuracy (last 500) " << accuracy << jobs << std::endl;
}

Status Up::Run() {
  RETURN_IF_ERROR(Prepare());
  RETURN_IF_ERROR(GenerateData());
  RETURN_IF_ERROR(WriteSpecs());
  RETURN_IF_ERROR(TrainFirstModel());
  RETURN_IF_ERROR(SetUpHub());
  RETURN_IF_ERROR(StartHub());
  // The worker before the edge server: the web app shows the uplink from the worker's metrics,
  // and the stop order (the reverse) lets the worker drain what the server emitted last.
  RETURN_IF_ERROR(StartWorker());
  RETURN_IF_ERROR(StartEdge());

  ASSIGN_OR_RETURN(std::vector<DemoRow> live, ReadDemoCsv(P("data/live.csv")));
  FeedOptions feed_options;
  feed_options.serve_url = "http://127.0.0.1:" + std::to_string(edge_port_);
  feed_options.rows_per_second =
      o_.feed_rate > 0 ? o_.feed_rate : o_.data.machines * o_.time_scale / 60.0;
  feed_options.state_file = P("feed.json");
  feed_options.start = SavedFeedPosition(feed_options.state_file);
  if (feed_options.start > 0) {
    log::Info("the feed resumes", {{"position", static_cast<int64_t>(feed_options.start)}});
  }
  feed_ = std::make_unique<Feed>(feed_options, std::move(live));
  std::atomic<bool> stop_feed{false};
  std::thread feed_thread([&] {
    Status status = feed_->Run(stop_feed);
    if (!status.ok()) log::Error("the feed stopped", {{"error", status}});
  });
  PrintBanner();

  registry::HttpClientOptions client_options;
  client_options.timeout_ms = 2000;
  auto client = registry::HttpClient::Create(client_options);
  auto last_status = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> feed_done;
  Status result = Status::Ok();
  bool announced_done = false;
  while (!signals_.Received(milliseconds(200))) {
    if (auto exited = supervisor_.Exited()) {
      result = UnavailableError(*exited + "; see " + P("logs").string());
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (o_.status_interval_s > 0 && client.ok() &&
        now - last_status >= seconds(o_.status_interval_s)) {
      PrintStatus(**client);
      last_status = now;
    }
    if (feed_->Position() >= feed_->Total()) {
      if (!feed_done) feed_done = now;
      if (!announced_done) {
        std::cout << "The feed has replayed every reading; everything keeps running (Ctrl-C "
                     "stops it)."
                  << std::endl;
        announced_done = true;
      }
      if (o_.exit_after_feed_s >= 0 &&
          now - *feed_done >= std::chrono::duration<double>(o_.exit_after_feed_s)) {
        log::Info("the feed is done; stopping");
        break;
      }
    }
  }
  stop_feed = true;
  feed_thread.join();
  supervisor_.StopAll();
  if (result.ok()) std::cout << "edgeloop up stopped; state kept in " << dir_.string() << std::endl;
  return result;
}

}  // namespace

Status RunUp(const UpOptions& options) {
  Up up(options);
  return up.Run();
}

}  // namespace edgeloop::up
