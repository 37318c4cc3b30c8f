#include "common/metrics.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>

namespace edgeloop::metrics {
namespace {

void AppendEscapedLabelValue(std::string* out, const std::string& value) {
  for (char c : value) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

void AppendEscapedHelp(std::string* out, const std::string& help) {
  for (char c : help) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

const char* TypeName(Type type) {
  switch (type) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto result = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, result.ptr);
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  assert(std::is_sorted(bounds_.begin(), bounds_.end()));
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // Prometheus buckets are inclusive upper bounds: the first bound >= value.
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot snapshot;
  snapshot.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts.push_back(running);
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

std::vector<double> LatencyBuckets() {
  return {25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
          25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,  2.5,    5.0,  10.0};
}

std::vector<double> PowerOfTwoBuckets(double max) {
  std::vector<double> bounds;
  for (double bound = 1;; bound *= 2) {
    bounds.push_back(bound);
    if (bound >= max) break;
  }
  return bounds;
}

void FamilyBase::RenderHeader(std::string* out) const {
  out->append("# HELP ").append(name_).append(" ");
  AppendEscapedHelp(out, help_);
  out->append("\n# TYPE ").append(name_).append(" ").append(TypeName(type_)).append("\n");
}

void FamilyBase::AppendSeries(std::string* out, const std::string& suffix,
                              const std::vector<std::string>& label_values,
                              const std::string& extra_label, const std::string& value) const {
  out->append(name_).append(suffix);
  if (!label_names_.empty() || !extra_label.empty()) {
    out->push_back('{');
    bool first = true;
    for (size_t i = 0; i < label_names_.size() && i < label_values.size(); ++i) {
      if (!first) out->push_back(',');
      first = false;
      out->append(label_names_[i]).append("=\"");
      AppendEscapedLabelValue(out, label_values[i]);
      out->push_back('"');
    }
    if (!extra_label.empty()) {
      if (!first) out->push_back(',');
      out->append(extra_label);
    }
    out->push_back('}');
  }
  out->push_back(' ');
  out->append(value).push_back('\n');
}

template <>
void Family<Counter>::Render(std::string* out) const {
  RenderHeader(out);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [labels, child] : children_) {
    AppendSeries(out, "", labels, "", std::to_string(child->Value()));
  }
}

template <>
void Family<Gauge>::Render(std::string* out) const {
  RenderHeader(out);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [labels, child] : children_) {
    AppendSeries(out, "", labels, "", FormatValue(child->Value()));
  }
}

template <>
void Family<Histogram>::Render(std::string* out) const {
  RenderHeader(out);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [labels, child] : children_) {
    const Histogram::Snapshot snapshot = child->Take();
    for (size_t i = 0; i < snapshot.bounds.size(); ++i) {
      AppendSeries(out, "_bucket", labels, "le=\"" + FormatValue(snapshot.bounds[i]) + "\"",
                   std::to_string(snapshot.cumulative_counts[i]));
    }
    AppendSeries(out, "_bucket", labels, "le=\"+Inf\"", std::to_string(snapshot.count));
    AppendSeries(out, "_sum", labels, "", FormatValue(snapshot.sum));
    AppendSeries(out, "_count", labels, "", std::to_string(snapshot.count));
  }
}

namespace {

template <typename Metric>
Family<Metric>* AddFamily(std::mutex& mu,
                          std::vector<std::pair<std::string, std::unique_ptr<FamilyBase>>>& all,
                          const std::string& name, const std::string& help,
                          std::vector<std::string> label_names, Type type,
                          typename Family<Metric>::Factory factory) {
  std::lock_guard<std::mutex> lock(mu);
  for (auto& [existing_name, family] : all) {
    if (existing_name == name) {
      auto* typed = dynamic_cast<Family<Metric>*>(family.get());
      assert(typed != nullptr);
      return typed;
    }
  }
  auto family = std::make_unique<Family<Metric>>(name, help, std::move(label_names), type,
                                                 std::move(factory));
  Family<Metric>* raw = family.get();
  all.emplace_back(name, std::move(family));
  return raw;
}

}  // namespace

Family<Counter>* Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  return AddFamily<Counter>(mu_, families_, name, help, std::move(label_names), Type::kCounter,
                            [] { return std::make_shared<Counter>(); });
}

Family<Gauge>* Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  return AddFamily<Gauge>(mu_, families_, name, help, std::move(label_names), Type::kGauge,
                          [] { return std::make_shared<Gauge>(); });
}

Family<Histogram>* Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  return AddFamily<Histogram>(mu_, families_, name, help, std::move(label_names), Type::kHistogram,
                              [bounds] { return std::make_shared<Histogram>(bounds); });
}

std::string Registry::Render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) family->Render(&out);
  return out;
}

}  // namespace edgeloop::metrics
