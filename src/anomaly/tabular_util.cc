#include "anomaly/tabular_util.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <limits>

namespace edgeloop::anomaly::tabular_internal {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& word : s_) {
    x = Mix(x);
    word = x;
  }
}

namespace {
inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Rng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

uint64_t Rng::Below(uint64_t bound) {
  // Rejection sampling on the top of the range: the accepted values are a whole multiple of
  // `bound`, so every residue is equally likely.
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % bound;
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % bound;
}

StatusOr<int64_t> TakeInt(std::map<std::string, std::string>* params, const std::string& name,
                          int64_t fallback, int64_t min, int64_t max) {
  auto it = params->find(name);
  if (it == params->end()) return fallback;
  const std::string text = it->second;
  params->erase(it);
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return InvalidArgumentError("parameter " + name + " must be an integer, got '" + text + "'");
  }
  if (value < min || value > max) {
    return InvalidArgumentError("parameter " + name + " must be in [" + std::to_string(min) + ", " +
                                std::to_string(max) + "], got " + text);
  }
  return value;
}

StatusOr<double> TakeDouble(std::map<std::string, std::string>* params, const std::string& name,
                            double fallback, double min, double max) {
  auto it = params->find(name);
  if (it == params->end()) return fallback;
  const std::string text = it->second;
  params->erase(it);
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty() || !std::isfinite(value)) {
    return InvalidArgumentError("parameter " + name + " must be a number, got '" + text + "'");
  }
  if (value < min || value > max) {
    return InvalidArgumentError("parameter " + name + " must be in [" + std::to_string(min) + ", " +
                                std::to_string(max) + "], got " + text);
  }
  return value;
}

Status RejectUnknown(const std::map<std::string, std::string>& params, std::string_view kind) {
  if (params.empty()) return Status::Ok();
  std::string names;
  for (const auto& [name, value] : params) {
    if (!names.empty()) names += ", ";
    names += name;
  }
  return InvalidArgumentError("unknown parameter(s) for " + std::string(kind) + ": " + names);
}

FeatureStats ComputeFeatureStats(const float* rows, int64_t n, int64_t num_features) {
  FeatureStats stats;
  const auto d = static_cast<size_t>(num_features);
  stats.median.assign(d, 0.0f);
  stats.min.assign(d, 0.0f);
  stats.max.assign(d, 0.0f);
  std::vector<float> column;
  column.reserve(static_cast<size_t>(n));
  for (size_t f = 0; f < d; ++f) {
    column.clear();
    for (int64_t i = 0; i < n; ++i) {
      const float v = rows[static_cast<size_t>(i) * d + f];
      if (std::isfinite(v)) column.push_back(v);
    }
    if (column.empty()) continue;
    const auto [lo, hi] = std::minmax_element(column.begin(), column.end());
    stats.min[f] = *lo;
    stats.max[f] = *hi;
    // The lower median: always one of the training values, so it needs no rounding.
    const auto mid = column.begin() + static_cast<std::ptrdiff_t>((column.size() - 1) / 2);
    std::nth_element(column.begin(), mid, column.end());
    stats.median[f] = *mid;
  }
  return stats;
}

void GatherCleanColumn(const float* rows, int64_t num_features, std::span<const int64_t> row_ids,
                       int64_t feature, const FeatureStats& stats, float* out) {
  const auto d = static_cast<size_t>(num_features);
  const auto f = static_cast<size_t>(feature);
  for (size_t i = 0; i < row_ids.size(); ++i) {
    out[i] = CleanForFit(rows[static_cast<size_t>(row_ids[i]) * d + f], stats, feature);
  }
}

void AppendNumber(std::string* out, double v) {
  if (v == 0) v = 0;  // -0 would read back as the integer 0 and change the bytes
  char buffer[32];
  auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof(buffer), v);
  out->append(buffer, ptr);
}

void AppendNumber(std::string* out, int64_t v) {
  char buffer[24];
  auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof(buffer), v);
  out->append(buffer, ptr);
}

void AppendFloatArray(std::string* out, const std::vector<float>& values) {
  out->push_back('[');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendNumber(out, static_cast<double>(values[i]));
  }
  out->push_back(']');
}

}  // namespace edgeloop::anomaly::tabular_internal
