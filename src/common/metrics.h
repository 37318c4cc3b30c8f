// Prometheus metrics: counters, gauges and histograms in labelled families, rendered in the
// Prometheus text exposition format (version 0.0.4).
//
// Updating a metric is lock-free (relaxed atomics); looking up a labelled child takes a mutex,
// so hot paths look children up once and keep the shared_ptr. Everything is thread-safe.
#ifndef EDGELOOP_COMMON_METRICS_H_
#define EDGELOOP_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace edgeloop::metrics {

class Counter {
 public:
  void Increment(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: strictly increasing upper bounds of the buckets; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);

  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative_counts;  // one per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Take() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 buckets
  std::atomic<double> sum_{0};
};

// Bucket bounds for latencies in seconds: 25 µs to 10 s.
std::vector<double> LatencyBuckets();
// 1, 2, 4, ... up to `max` (inclusive of the first power of two >= max).
std::vector<double> PowerOfTwoBuckets(double max);

enum class Type { kCounter, kGauge, kHistogram };

// Type-erased base so that the registry can render every family.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, std::vector<std::string> label_names, Type type)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        type_(type) {}
  virtual ~FamilyBase() = default;
  virtual void Render(std::string* out) const = 0;

 protected:
  void RenderHeader(std::string* out) const;
  // `name{l1="v1",...,extra}` for one child.
  void AppendSeries(std::string* out, const std::string& suffix,
                    const std::vector<std::string>& label_values, const std::string& extra_label,
                    const std::string& value) const;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const Type type_;
};

// A metric with label names; each distinct tuple of label values is one child.
template <typename Metric>
class Family final : public FamilyBase {
 public:
  using Factory = std::function<std::shared_ptr<Metric>()>;
  Family(std::string name, std::string help, std::vector<std::string> label_names, Type type,
         Factory factory)
      : FamilyBase(std::move(name), std::move(help), std::move(label_names), type),
        factory_(std::move(factory)) {}

  // The child for `label_values` (one per label name, in order), created on first use.
  std::shared_ptr<Metric> With(const std::vector<std::string>& label_values) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& child = children_[label_values];
    if (!child) child = factory_();
    return child;
  }

  // Stops exporting a child; holders of its pointer may keep updating it harmlessly.
  void Remove(const std::vector<std::string>& label_values) {
    std::lock_guard<std::mutex> lock(mu_);
    children_.erase(label_values);
  }

  void Render(std::string* out) const override;

 private:
  Factory factory_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::shared_ptr<Metric>> children_;  // GUARDED_BY(mu_)
};

template <>
void Family<Counter>::Render(std::string* out) const;
template <>
void Family<Gauge>::Render(std::string* out) const;
template <>
void Family<Histogram>::Render(std::string* out) const;

class Registry {
 public:
  // Registration happens at start-up; names must be unique (a repeat returns the existing
  // family of that name, which must have the same type).
  Family<Counter>* AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>* AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>* AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names, std::vector<double> bounds);

  // The whole registry in the Prometheus text format, families in registration order.
  std::string Render() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::unique_ptr<FamilyBase>>> families_;  // GUARDED_BY(mu_)
};

// Formats a sample value: shortest round-trip decimal, "+Inf", "-Inf", "NaN".
std::string FormatValue(double value);

}  // namespace edgeloop::metrics

#endif  // EDGELOOP_COMMON_METRICS_H_
