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
using tabular_internal::CleanForFit;
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
  std::vector<float> clean(kept.size() * d);
  for (size_t i = 0; i < kept.size(); ++i) {
    const float* row = rows + static_cast<size_t>(kept[i]) * d;
    for (size_t f = 0; f < d; ++f) {
      clean[i * d + f] = CleanForFit(row[f], stats, static_cast<int64_t>(f));
    }
  }
  ecod->sorted_.resize(d);
  ecod->skewness_.resize(d);
  for (size_t f = 0; f < d; ++f) {
    std::vector<float>& column = ecod->sorted_[f];
    column.resize(kept.size());
    for (size_t i = 0; i < kept.size(); ++i) column[i] = clean[i * d + f];
    ecod->skewness_[f] = Skewness(column);
    std::sort(column.begin(), column.end());
  }
  ecod->Finish();

  double sum = 0;
  std::vector<double> raw(kept.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    raw[i] = ecod->RawScore(&clean[i * d]);
    sum += raw[i];
  }
  ecod->score_mean_ = sum / static_cast<double>(raw.size());
  double squares = 0;
  for (double r : raw) squares += (r - ecod->score_mean_) * (r - ecod->score_mean_);
  ecod->score_std_ = std::sqrt(squares / static_cast<double>(raw.size()));
  return ecod;
}

void Ecod::Finish() {
  neg_log_tail_.resize(static_cast<size_t>(rows_) + 1);
  const auto denominator = static_cast<double>(rows_ + 1);
  for (size_t c = 0; c < neg_log_tail_.size(); ++c) {
    neg_log_tail_[c] = -std::log(static_cast<double>(c + 1) / denominator);
  }
}

double Ecod::RawScore(const float* row) const {
  double left = 0;
  double right = 0;
  double automatic = 0;
  for (size_t f = 0; f < sorted_.size(); ++f) {
    float v = row[f];
    if (std::isnan(v)) v = medians_[f];
    const std::vector<float>& column = sorted_[f];
    // F_left counts training values <= v, F_right those >= v.
    const auto at_most = std::upper_bound(column.begin(), column.end(), v) - column.begin();
    const auto at_least = column.end() - std::lower_bound(column.begin(), column.end(), v);
    const double l = neg_log_tail_[static_cast<size_t>(at_most)];
    const double r = neg_log_tail_[static_cast<size_t>(at_least)];
    left += l;
    right += r;
    automatic += skewness_[f] < 0 ? l : r;
  }
  return std::max({left, right, automatic});
}

void Ecod::Score(const float* rows, int64_t n, double* scores) const {
  const auto d = static_cast<size_t>(num_features_);
  for (int64_t i = 0; i < n; ++i) {
    const double raw = RawScore(rows + static_cast<size_t>(i) * d);
    if (score_std_ > 0) {
      scores[i] = 0.5 * std::erfc(-(raw - score_mean_) / (score_std_ * M_SQRT2));
    } else {
      scores[i] = raw > score_mean_ ? 1.0 : raw < score_mean_ ? 0.0 : 0.5;
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
