#include "serving/drift.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/logging.h"

namespace edgeloop::serving {
namespace {

using Json = nlohmann::json;
using inference::DataType;
using inference::Tensor;

constexpr uint8_t kMissing = 255;
constexpr size_t kMaxEdges = 254;
constexpr int64_t kMaxCardBytes = 64 << 20;

int64_t RowsOf(const Tensor& tensor) { return tensor.shape().empty() ? 1 : tensor.shape().front(); }

}  // namespace

double NumericElement(const Tensor& t, size_t i) {
  switch (t.datatype()) {
    case DataType::kFp32:
      return static_cast<double>(t.values<float>()[i]);
    case DataType::kFp64:
      return t.values<double>()[i];
    case DataType::kBool:
    case DataType::kUint8:
      return t.values<uint8_t>()[i];
    case DataType::kUint16:
      return t.values<uint16_t>()[i];
    case DataType::kUint32:
      return t.values<uint32_t>()[i];
    case DataType::kUint64:
      return static_cast<double>(t.values<uint64_t>()[i]);
    case DataType::kInt8:
      return t.values<int8_t>()[i];
    case DataType::kInt16:
      return t.values<int16_t>()[i];
    case DataType::kInt32:
      return t.values<int32_t>()[i];
    case DataType::kInt64:
      return static_cast<double>(t.values<int64_t>()[i]);
    default:
      return std::numeric_limits<double>::quiet_NaN();
  }
}

namespace {

uint8_t BinOf(const FeatureReference& feature, double value) {
  if (std::isnan(value)) return kMissing;
  // First edge >= value: a value equal to an edge belongs to the bin that edge closes, as in
  // train's histogram.
  return static_cast<uint8_t>(std::lower_bound(feature.edges.begin(), feature.edges.end(), value) -
                              feature.edges.begin());
}

}  // namespace

Status ValidateDriftSettings(const DriftSettings& s) {
  if (s.window_rows < 0 || s.window_rows > kMaxDriftWindowRows) {
    return InvalidArgumentError("drift window_rows must be from 0 to " +
                                std::to_string(kMaxDriftWindowRows));
  }
  if (s.window.count() < 0) return InvalidArgumentError("drift window_s must not be negative");
  if (s.min_rows < 1) return InvalidArgumentError("drift min_rows must be at least 1");
  if (!(s.psi_threshold > 0) || !std::isfinite(s.psi_threshold)) {
    return InvalidArgumentError("drift psi_threshold must be a positive number");
  }
  if (!(s.ks_threshold > 0) || s.ks_threshold > 1) {
    return InvalidArgumentError("drift ks_threshold must be in (0, 1]");
  }
  if (s.event_interval.count() < 0) {
    return InvalidArgumentError("drift event_interval_s must not be negative");
  }
  return Status::Ok();
}

StatusOr<std::vector<FeatureReference>> ParseDriftReference(
    std::string_view card_json, const std::vector<std::string>& feature_names) {
  const Json card = Json::parse(card_json, nullptr, false);
  if (card.is_discarded() || !card.is_object()) {
    return InvalidArgumentError("card.json is not a JSON object");
  }
  std::vector<FeatureReference> out;
  const auto stats = card.find("reference_statistics");
  if (stats == card.end() || !stats->is_object()) return out;
  const auto features = stats->find("features");
  if (features == stats->end() || !features->is_object()) return out;
  for (size_t column = 0; column < feature_names.size(); ++column) {
    const std::string& name = feature_names[column];
    const auto feature = features->find(name);
    if (feature == features->end() || !feature->is_object()) continue;
    const auto histogram = feature->find("histogram");
    if (histogram == feature->end()) continue;  // a feature with no present value
    const std::string where = "card.json: reference_statistics.features." + name + ".histogram";
    if (!histogram->is_object() || !histogram->contains("edges") ||
        !histogram->contains("fractions") || !(*histogram)["edges"].is_array() ||
        !(*histogram)["fractions"].is_array()) {
      return InvalidArgumentError(where + " must hold the arrays 'edges' and 'fractions'");
    }
    FeatureReference ref;
    ref.name = name;
    ref.column = static_cast<int64_t>(column);
    for (const Json& edge : (*histogram)["edges"]) {
      if (!edge.is_number()) return InvalidArgumentError(where + ".edges must be numbers");
      ref.edges.push_back(edge.get<double>());
    }
    for (const Json& fraction : (*histogram)["fractions"]) {
      if (!fraction.is_number() || fraction.get<double>() < 0) {
        return InvalidArgumentError(where + ".fractions must be numbers >= 0");
      }
      ref.fractions.push_back(fraction.get<double>());
    }
    if (ref.edges.size() > kMaxEdges || ref.fractions.size() != ref.edges.size() + 1 ||
        !std::is_sorted(ref.edges.begin(), ref.edges.end())) {
      return InvalidArgumentError(where +
                                  ": want ascending edges (at most 254) and one fraction more");
    }
    out.push_back(std::move(ref));
  }
  return out;
}

double PopulationStabilityIndex(const std::vector<int64_t>& live,
                                const std::vector<double>& reference) {
  int64_t total = 0;
  for (int64_t count : live) total += count;
  if (total == 0 || live.size() != reference.size()) return 0;
  double psi = 0;
  for (size_t i = 0; i < live.size(); ++i) {
    const double actual =
        std::max(static_cast<double>(live[i]) / static_cast<double>(total), kPsiFloor);
    const double expected = std::max(reference[i], kPsiFloor);
    psi += (actual - expected) * std::log(actual / expected);
  }
  return psi;
}

double BinnedKs(const std::vector<int64_t>& live, const std::vector<double>& reference) {
  int64_t total = 0;
  for (int64_t count : live) total += count;
  if (total == 0 || live.size() != reference.size()) return 0;
  double reference_total = 0;
  for (double fraction : reference) reference_total += fraction;
  if (reference_total <= 0) return 0;
  double live_cdf = 0;
  double reference_cdf = 0;
  double ks = 0;
  for (size_t i = 0; i + 1 < live.size(); ++i) {
    live_cdf += static_cast<double>(live[i]) / static_cast<double>(total);
    reference_cdf += reference[i] / reference_total;
    ks = std::max(ks, std::abs(live_cdf - reference_cdf));
  }
  return ks;
}

std::string DriftEventJson(const DriftReport& report) {
  Json features = Json::array();
  for (const FeatureDrift& f : report.features) {
    features.push_back({{"name", f.name}, {"psi", f.psi}, {"ks", f.ks}, {"drifted", f.drifted}});
  }
  return Json{{"window_rows", report.window_rows}, {"features", std::move(features)}}.dump(
      -1, ' ', false, Json::error_handler_t::replace);
}

// ---------------------------------------------------------------------------------------------

DriftWindow::DriftWindow(std::vector<FeatureReference> reference, DriftSettings settings,
                         Clock* clock)
    : reference_(std::move(reference)), settings_(settings), clock_(clock) {
  for (const FeatureReference& feature : reference_) {
    counts_.emplace_back(feature.fractions.size(), 0);
  }
  missing_.assign(reference_.size(), 0);
}

void DriftWindow::AddLocked(const std::vector<uint8_t>& bins) {
  for (size_t f = 0; f < bins.size(); ++f) {
    bins_.push_back(bins[f]);
    if (bins[f] == kMissing) {
      ++missing_[f];
    } else {
      ++counts_[f][bins[f]];
    }
  }
  times_.push_back(clock_->Now());
}

void DriftWindow::EvictLocked() {
  const size_t width = reference_.size();
  const auto too_old = [&] {
    return settings_.window.count() > 0 && !times_.empty() &&
           clock_->Now() - times_.front() > settings_.window;
  };
  while (!times_.empty() &&
         (static_cast<int64_t>(times_.size()) > settings_.window_rows || too_old())) {
    for (size_t f = 0; f < width; ++f) {
      const uint8_t bin = bins_.front();
      bins_.pop_front();
      if (bin == kMissing) {
        --missing_[f];
      } else {
        --counts_[f][bin];
      }
    }
    times_.pop_front();
  }
}

int64_t DriftWindow::Observe(const Tensor& input) {
  if (reference_.empty() || settings_.window_rows == 0) return 0;
  if (input.datatype() == DataType::kBytes || input.datatype() == DataType::kFp16 ||
      input.datatype() == DataType::kBf16) {
    return 0;
  }
  const int64_t rows = RowsOf(input);
  if (rows <= 0) return 0;
  const int64_t width = input.element_count() / rows;
  for (const FeatureReference& feature : reference_) {
    if (feature.column >= width) return 0;
  }
  std::vector<uint8_t> bins(reference_.size());
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t f = 0; f < reference_.size(); ++f) {
      bins[f] = BinOf(reference_[f],
                      NumericElement(input, static_cast<size_t>(r * width + reference_[f].column)));
    }
    AddLocked(bins);
  }
  EvictLocked();
  return rows;
}

void DriftWindow::ObserveRow(const std::vector<double>& row) {
  if (reference_.empty() || settings_.window_rows == 0) return;
  std::vector<uint8_t> bins(reference_.size());
  for (size_t f = 0; f < reference_.size(); ++f) {
    const auto column = static_cast<size_t>(reference_[f].column);
    bins[f] = BinOf(reference_[f],
                    column < row.size() ? row[column] : std::numeric_limits<double>::quiet_NaN());
  }
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(bins);
  EvictLocked();
}

DriftReport DriftWindow::Report() {
  DriftReport report;
  std::lock_guard<std::mutex> lock(mu_);
  EvictLocked();  // rows that aged out leave without a new row
  report.window_rows = static_cast<int64_t>(times_.size());
  const bool enough = report.window_rows >= settings_.min_rows;
  for (size_t f = 0; f < reference_.size(); ++f) {
    FeatureDrift drift;
    drift.name = reference_[f].name;
    drift.psi = PopulationStabilityIndex(counts_[f], reference_[f].fractions);
    drift.ks = BinnedKs(counts_[f], reference_[f].fractions);
    drift.missing = missing_[f];
    drift.rows = report.window_rows - missing_[f];
    drift.drifted = enough && drift.rows > 0 &&
                    (drift.psi > settings_.psi_threshold || drift.ks > settings_.ks_threshold);
    report.drifted = report.drifted || drift.drifted;
    report.features.push_back(std::move(drift));
  }
  return report;
}

// ---------------------------------------------------------------------------------------------

DriftMonitor::DriftMonitor(DriftMonitorOptions options) : options_(std::move(options)) {
  if (options_.metrics == nullptr) return;
  psi_ = options_.metrics->AddGauge("edgeloop_drift_psi",
                                    "PSI of each feature's live window against the model card's "
                                    "reference histogram (version answering unversioned requests "
                                    "or last evaluated)",
                                    {"model", "feature"});
  ks_ = options_.metrics->AddGauge(
      "edgeloop_drift_ks", "KS-type distance of each feature's live window against the reference",
      {"model", "feature"});
  drifted_ = options_.metrics->AddGauge("edgeloop_drift_drifted",
                                        "1 when the feature is past a drift threshold",
                                        {"model", "feature"});
  window_rows_ = options_.metrics->AddGauge("edgeloop_drift_window_rows",
                                            "Rows in the drift window", {"model"});
  events_ = options_.metrics->AddCounter("edgeloop_drift_events_total",
                                         "Drift events handed to the insight queue", {"model"});
}

const DriftSettings& DriftMonitor::SettingsFor(const std::string& model) const {
  auto it = options_.per_model.find(model);
  return it == options_.per_model.end() ? options_.defaults : it->second;
}

DriftMonitor::Entry& DriftMonitor::EntryLocked(
    const std::shared_ptr<const ServableVersion>& servable) {
  auto it = entries_.find(servable.get());
  if (it != entries_.end() && !it->second.servable.expired()) return it->second;
  // Versions that are gone free their windows.
  std::erase_if(entries_, [](const auto& item) { return item.second.servable.expired(); });
  Entry& entry = entries_[servable.get()];
  entry.servable = servable;
  const DriftSettings& settings = SettingsFor(servable->config.name);
  const inference::ModelConfig& config = servable->config;
  if (settings.window_rows == 0 || config.feature_names.empty()) return entry;
  const std::filesystem::path card_path = config.version_dir / "card.json";
  std::ifstream in(card_path, std::ios::binary);
  if (!in) return entry;  // no card: nothing to compare with
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > static_cast<size_t>(kMaxCardBytes)) return entry;
  auto reference = ParseDriftReference(text.str(), config.feature_names);
  if (!reference.ok()) {
    log::Warn("no drift monitoring for a model version: its card is unusable",
              {{"model", config.name},
               {"version", servable->version_string},
               {"error", reference.status()}});
    return entry;
  }
  if (reference->empty()) return entry;
  entry.window = std::make_shared<DriftWindow>(std::move(*reference), settings, options_.clock);
  return entry;
}

void DriftMonitor::Publish(const std::string& model, const DriftReport& report) {
  if (psi_ == nullptr) return;
  window_rows_->With({model})->Set(static_cast<double>(report.window_rows));
  for (const FeatureDrift& f : report.features) {
    psi_->With({model, f.name})->Set(f.psi);
    ks_->With({model, f.name})->Set(f.ks);
    drifted_->With({model, f.name})->Set(f.drifted ? 1.0 : 0.0);
  }
}

void DriftMonitor::Observe(const std::shared_ptr<const ServableVersion>& servable,
                           const std::vector<inference::Tensor>& inputs) {
  if (inputs.size() != 1 || servable == nullptr) return;
  std::shared_ptr<DriftWindow> window;
  {
    std::lock_guard<std::mutex> lock(mu_);
    window = EntryLocked(servable).window;
  }
  if (!window) return;
  const int64_t added = window->Observe(inputs.front());
  if (added == 0) return;

  bool evaluate = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& entry = EntryLocked(servable);
    entry.since_evaluation += added;
    if (entry.since_evaluation >= kEvaluateEveryRows) {
      entry.since_evaluation = 0;
      evaluate = true;
    }
  }
  if (!evaluate) return;
  const DriftReport report = window->Report();
  const std::string& model = servable->config.name;
  Publish(model, report);
  bool emit = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& entry = EntryLocked(servable);
    const bool crossed = report.drifted && !entry.drifted;
    entry.drifted = report.drifted;
    if (crossed) {
      const Clock::SteadyTime now = options_.clock->Now();
      auto last = last_event_.find(model);
      if (last == last_event_.end() || now - last->second >= window->settings().event_interval) {
        last_event_[model] = now;
        emit = true;
      }
    }
  }
  if (!emit) return;
  std::string drifted_features;
  for (const FeatureDrift& f : report.features) {
    if (f.drifted) drifted_features += (drifted_features.empty() ? "" : ",") + f.name;
  }
  log::Warn("input drift: live inputs differ from the model's training reference",
            {{"model", model},
             {"version", servable->version_string},
             {"features", drifted_features},
             {"window_rows", report.window_rows}});
  if (options_.on_drift) {
    options_.on_drift(servable, report);
    if (events_ != nullptr) events_->With({model})->Increment();
  }
}

std::string DriftMonitor::ReportJson(const std::shared_ptr<const ServableVersion>& servable) {
  std::shared_ptr<DriftWindow> window;
  {
    std::lock_guard<std::mutex> lock(mu_);
    window = EntryLocked(servable).window;
  }
  const DriftSettings& settings = window ? window->settings() : SettingsFor(servable->config.name);
  Json json = {{"model", servable->config.name},
               {"model_version", servable->version_string},
               {"reference", window != nullptr},
               {"window_rows", 0},
               {"window_s", static_cast<double>(settings.window.count()) / 1000.0},
               {"max_window_rows", settings.window_rows},
               {"min_rows", settings.min_rows},
               {"psi_threshold", settings.psi_threshold},
               {"ks_threshold", settings.ks_threshold},
               {"drifted", false},
               {"features", Json::array()}};
  if (window) {
    const DriftReport report = window->Report();
    json["window_rows"] = report.window_rows;
    json["drifted"] = report.drifted;
    for (const FeatureDrift& f : report.features) {
      json["features"].push_back({{"name", f.name},
                                  {"psi", f.psi},
                                  {"ks", f.ks},
                                  {"drifted", f.drifted},
                                  {"rows", f.rows},
                                  {"missing", f.missing}});
    }
  }
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace edgeloop::serving
