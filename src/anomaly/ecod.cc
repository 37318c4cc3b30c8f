#include "anomaly/ecod.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <utility>

#include "anomaly/tabular_util.h"

namespace edgeloop::anomaly {

using tabular_internal::AppendFloatArray;
using tabular_internal::AppendNumber;
using tabular_internal::FeatureStats;
using tabular_internal::Rng;

namespace {

constexpr int64_t kMaxSamples = 1'000'000;

// Fisher's moment coefficient of skewness (biased, as scipy.stats.skew); 0 for a constant.
double Skewness(const std::vector<float>& values) {
  const auto m = static_cast<double>(values.size());
  double mean = 0;
  for (float v : values) mean += v;
  mean /= m;
  double m2 = 0;
  double m3 = 0;
  for (float v : values) {
    const double d = v - mean;
    m2 += d * d;
    m3 += d * d * d;
  }
  m2 /= m;
  m3 /= m;
  // Relative to the scale of the values, a variance this small is rounding noise.
  if (m2 <= 1e-24 * (mean * mean + 1)) return 0.0;
  return m3 / std::pow(m2, 1.5);
}

}  // namespace

StatusOr<std::unique_ptr<Ecod>> Ecod::Fit(const float* rows, int64_t n, int64_t num_features,
                                          uint64_t seed,
                                          std::map<std::string, std::string> params) {
  if (n < 1) return InvalidArgumentError("ecod needs at least 1 training row");
  ASSIGN_OR_RETURN(const int64_t max_samples,
                   tabular_internal::TakeInt(&params, "max_samples", 10000, 1, kMaxSamples));
  RETURN_IF_ERROR(tabular_internal::RejectUnknown(params, "ecod"));

  auto ecod = std::unique_ptr<Ecod>(new Ecod());
  ecod->num_features_ = num_features;
  ecod->seed_ = seed;
  ecod->rows_ = std::min(n, max_samples);
  const FeatureStats stats = tabular_internal::ComputeFeatureStats(rows, n, num_features);
  ecod->medians_ = stats.median;

  // The kept rows: all of them, or a seeded sample without replacement (partial Fisher-Yates).
  std::vector<int64_t> kept(static_cast<size_t>(n));
  std::iota(kept.begin(), kept.end(), 0);
  if (ecod->rows_ < n) {
    Rng rng(tabular_internal::Mix(seed));
    for (size_t i = 0; i < static_cast<size_t>(ecod->rows_); ++i) {
      const size_t j = i + rng.Below(static_cast<uint64_t>(n) - i);
      std::swap(kept[i], kept[j]);
    }
    kept.resize(static_cast<size_t>(ecod->rows_));
    std::sort(kept.begin(), kept.end());
  }
  const auto d = static_cast<size_t>(num_features);
  const auto m = kept.size();
  // The kept rows' cleaned columns, in row order (the training scores below need them).
  std::vector<float> columns(d * m);
  ecod->sorted_.resize(d);
  ecod->skewness_.resize(d);
  for (size_t f = 0; f < d; ++f) {
    float* column = &columns[f * m];
    tabular_internal::GatherCleanColumn(rows, num_features, kept, static_cast<int64_t>(f), stats,
                                        column);
    ecod->sorted_[f].assign(column, column + m);
    ecod->skewness_[f] = Skewness(ecod->sorted_[f]);
    std::sort(ecod->sorted_[f].begin(), ecod->sorted_[f].end());
  }
  ecod->Finish();

  std::vector<double> left(m, 0.0);
  std::vector<double> right(m, 0.0);
  std::vector<double> automatic(m, 0.0);
  for (size_t f = 0; f < d; ++f) {
    ecod->AddTails(f, &columns[f * m], 1, m, left.data(), right.data(), automatic.data());
  }
  double sum = 0;
  std::vector<double> raw(m);
  for (size_t i = 0; i < m; ++i) {
    raw[i] = std::max({left[i], right[i], automatic[i]});
    sum += raw[i];
  }
  ecod->score_mean_ = sum / static_cast<double>(raw.size());
  double squares = 0;
  for (double r : raw) squares += (r - ecod->score_mean_) * (r - ecod->score_mean_);
  ecod->score_std_ = std::sqrt(squares / static_cast<double>(raw.size()));
  return ecod;
}

void Ecod::Finish() {
  const auto m = static_cast<size_t>(rows_);
  // -log of the smoothed tail probability of a count c of training values: (c + 1) / (m + 1).
  neg_log_tail_.resize(m + 1);
  const auto denominator = static_cast<double>(m + 1);
  for (size_t c = 0; c <= m; ++c) {
    neg_log_tail_[c] = -std::log(static_cast<double>(c + 1) / denominator);
  }
  tables_.assign(sorted_.size(), FeatureTable());
  for (size_t f = 0; f < sorted_.size(); ++f) {
    const std::vector<float>& column = sorted_[f];
    FeatureTable& table = tables_[f];
    table.at_most.push_back(0);
    for (size_t i = 0; i < m; ++i) {
      if (i + 1 == m || column[i + 1] != column[i]) {  // the last copy of a distinct value
        table.distinct.push_back(column[i]);
        table.at_most.push_back(static_cast<int32_t>(i + 1));
      }
    }
    const size_t k = table.distinct.size();
    // About one distinct value per bucket on evenly spread data.
    const auto buckets = static_cast<int64_t>(std::max<size_t>(1, k));
    table.low = table.distinct.front();
    const double span = static_cast<double>(table.distinct.back()) - table.low;
    table.width = span > 0 ? span / static_cast<double>(buckets) : 1.0;
    table.inverse_width = 1.0 / table.width;
    table.bucket_start.resize(static_cast<size_t>(buckets) + 1);
    for (int64_t b = 0; b < buckets; ++b) {
      const double edge = table.Edge(b);
      table.bucket_start[static_cast<size_t>(b)] = static_cast<int32_t>(
          std::lower_bound(table.distinct.begin(), table.distinct.end(), edge,
                           [](float u, double e) { return static_cast<double>(u) < e; }) -
          table.distinct.begin());
    }
    table.bucket_start[static_cast<size_t>(buckets)] = static_cast<int32_t>(k);
  }
}

inline size_t Ecod::FeatureTable::Rank(float v, bool* equal) const {
  const size_t k = distinct.size();
  *equal = false;
  if (v < distinct.front()) return 0;
  if (v > distinct.back()) return k;
  // distinct.front() <= v <= distinct.back(): find the bucket whose range holds v. The
  // multiplication can round across an edge, so the bucket is checked against the same Edge()
  // the index was built with.
  const auto buckets = static_cast<int64_t>(bucket_start.size()) - 1;
  const double x = v;
  auto b = static_cast<int64_t>((x - low) * inverse_width);
  b = std::clamp<int64_t>(b, 0, buckets - 1);
  while (b > 0 && x < Edge(b)) --b;
  while (b + 1 < buckets && x >= Edge(b + 1)) ++b;
  // Every distinct value below Edge(b) is below v, and v < Edge(b + 1) (or b is the last
  // bucket), so the first distinct value >= v lies in [bucket_start[b], bucket_start[b + 1]].
  // A branch-free lower_bound: its comparisons are unpredictable, and without branches the
  // searches of consecutive rows overlap.
  const float* base = distinct.data() + bucket_start[static_cast<size_t>(b)];
  auto len = static_cast<size_t>(bucket_start[static_cast<size_t>(b) + 1] -
                                 bucket_start[static_cast<size_t>(b)]);
  size_t j = static_cast<size_t>(base - distinct.data());
  if (len > 0) {
    while (len > 1) {
      const size_t half = len / 2;
      base = base[half] < v ? base + half : base;
      len -= half;
    }
    j = static_cast<size_t>(base - distinct.data()) + (base[0] < v ? 1 : 0);
  }
  *equal = j < k && distinct[j] == v;
  return j;
}

void Ecod::AddTails(size_t f, const float* values, size_t stride, size_t n, double* left,
                    double* right, double* automatic) const {
  const FeatureTable& table = tables_[f];
  const int32_t* at_most = table.at_most.data();
  const double* tail = neg_log_tail_.data();
  const auto m = static_cast<int32_t>(rows_);
  const float median = medians_[f];
  const bool left_skewed = skewness_[f] < 0;
  for (size_t i = 0; i < n; ++i) {
    bool equal = false;
    const size_t j =
        table.Rank(tabular_internal::CleanForScore(values[i * stride], median), &equal);
    // F_left counts training values <= v, F_right those >= v.
    const int32_t below = at_most[j];
    const double l = tail[equal ? at_most[j + 1] : below];
    const double r = tail[m - below];
    left[i] += l;
    right[i] += r;
    automatic[i] += left_skewed ? l : r;
  }
}

double Ecod::RawScore(const float* row) const {
  double left = 0;
  double right = 0;
  double automatic = 0;
  for (size_t f = 0; f < tables_.size(); ++f) AddTails(f, row + f, 1, 1, &left, &right, &automatic);
  return std::max({left, right, automatic});
}

void Ecod::Score(const float* rows, int64_t n, double* scores) const {
  // Blocks of rows, feature by feature: one feature's tables stay in cache for the block.
  constexpr size_t kBlock = 2048;
  const auto d = static_cast<size_t>(num_features_);
  std::vector<double> left_buffer(kBlock), right_buffer(kBlock), automatic_buffer(kBlock);
  double* left = left_buffer.data();
  double* right = right_buffer.data();
  double* automatic = automatic_buffer.data();
  for (size_t start = 0; start < static_cast<size_t>(n); start += kBlock) {
    const size_t count = std::min(kBlock, static_cast<size_t>(n) - start);
    std::fill(left, left + count, 0.0);
    std::fill(right, right + count, 0.0);
    std::fill(automatic, automatic + count, 0.0);
    const float* block = rows + start * d;
    for (size_t f = 0; f < d; ++f) AddTails(f, block + f, d, count, left, right, automatic);
    for (size_t i = 0; i < count; ++i) {
      const double raw = std::max({left[i], right[i], automatic[i]});
      double& score = scores[start + i];
      if (score_std_ > 0) {
        score = 0.5 * std::erfc(-(raw - score_mean_) / (score_std_ * M_SQRT2));
      } else {
        score = raw > score_mean_ ? 1.0 : raw < score_mean_ ? 0.0 : 0.5;
      }
    }
  }
}

std::string Ecod::Serialize() const {
  std::string out;
  out.reserve(256 + static_cast<size_t>(rows_ * num_features_) * 12);
  out += "{\"format\":\"";
  out += tabular_internal::kFormat;
  out += "\",\"version\":";
  AppendNumber(&out, int64_t{tabular_internal::kFormatVersion});
  out += ",\"kind\":\"ecod\",\"num_features\":";
  AppendNumber(&out, num_features_);
  out += ",\"seed\":";
  out += std::to_string(seed_);
  out += ",\"rows\":";
  AppendNumber(&out, rows_);
  out += ",\"medians\":";
  AppendFloatArray(&out, medians_);
  out += ",\"skewness\":[";
  for (size_t f = 0; f < skewness_.size(); ++f) {
    if (f > 0) out += ",";
    AppendNumber(&out, skewness_[f]);
  }
  out += "],\"score_mean\":";
  AppendNumber(&out, score_mean_);
  out += ",\"score_std\":";
  AppendNumber(&out, score_std_);
  out += ",\"sorted_values\":[";
  for (size_t f = 0; f < sorted_.size(); ++f) {
    if (f > 0) out += ",";
    AppendFloatArray(&out, sorted_[f]);
  }
  out += "]}";
  return out;
}

StatusOr<std::unique_ptr<Ecod>> Ecod::FromJson(const nlohmann::json& doc) {
  auto ecod = std::unique_ptr<Ecod>(new Ecod());
  try {
    ecod->num_features_ = doc.at("num_features").get<int64_t>();
    ecod->seed_ = doc.at("seed").get<uint64_t>();
    ecod->rows_ = doc.at("rows").get<int64_t>();
    if (ecod->num_features_ < 1 || ecod->rows_ < 1 || ecod->rows_ > kMaxSamples) {
      return DataLossError("ecod: num_features or rows out of range");
    }
    const auto d = static_cast<size_t>(ecod->num_features_);
    ecod->medians_ = doc.at("medians").get<std::vector<float>>();
    ecod->skewness_ = doc.at("skewness").get<std::vector<double>>();
    ecod->score_mean_ = doc.at("score_mean").get<double>();
    ecod->score_std_ = doc.at("score_std").get<double>();
    ecod->sorted_ = doc.at("sorted_values").get<std::vector<std::vector<float>>>();
    if (ecod->medians_.size() != d || ecod->skewness_.size() != d || ecod->sorted_.size() != d) {
      return DataLossError(
          "ecod: medians, skewness and sorted_values must have one entry per "
          "feature (" +
          std::to_string(d) + ")");
    }
    for (size_t f = 0; f < d; ++f) {
      if (!std::isfinite(ecod->medians_[f]) || !std::isfinite(ecod->skewness_[f])) {
        return DataLossError("ecod: feature " + std::to_string(f) +
                             " has a non-finite median or skewness");
      }
      const std::vector<float>& column = ecod->sorted_[f];
      if (static_cast<int64_t>(column.size()) != ecod->rows_) {
        return DataLossError("ecod: feature " + std::to_string(f) + " has " +
                             std::to_string(column.size()) + " values, expected " +
                             std::to_string(ecod->rows_));
      }
      for (size_t i = 0; i < column.size(); ++i) {
        if (!std::isfinite(column[i]) || (i > 0 && column[i] < column[i - 1])) {
          return DataLossError("ecod: sorted_values of feature " + std::to_string(f) +
                               " are not finite and ascending");
        }
      }
    }
    if (!std::isfinite(ecod->score_mean_) || !std::isfinite(ecod->score_std_) ||
        ecod->score_std_ < 0) {
      return DataLossError("ecod: score_mean and score_std must be finite, score_std >= 0");
    }
  } catch (const nlohmann::json::exception& e) {
    return DataLossError(std::string("ecod: ") + e.what());
  }
  ecod->Finish();
  return ecod;
}

}  // namespace edgeloop::anomaly
