// Raw training columns, categorical encodings and the reference statistics of the features.
//
// A RawTable holds the columns a training spec names, read from a lake table: numeric columns
// as floats (NaN = missing), categorical and key columns as text, time columns as
// microseconds. A FeaturePlan turns raw rows into the dense FP32 matrix the model takes, applying
// the declared encodings; the plan is stored with the model (card.json "encoding") so that
// whoever feeds the model applies the same encoding to raw inputs.
//
// Everything here is thread-compatible value types and pure functions.
#ifndef EDGELOOP_TRAIN_FEATURES_H_
#define EDGELOOP_TRAIN_FEATURES_H_

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace edgeloop::train {

struct RawColumn {
  enum class Kind { kNumber, kText, kTime };
  std::string name;
  Kind kind = Kind::kNumber;
  std::vector<float> numbers;      // kNumber; NaN = missing
  std::vector<std::string> texts;  // kText
  std::vector<uint8_t> valid;      // kText and kTime: 0 = missing
  std::vector<int64_t> times;      // kTime: microseconds since the epoch
};

struct RawTable {
  int64_t num_rows = 0;
  std::vector<RawColumn> columns;

  const RawColumn* Find(const std::string& name) const;
};

enum class EncodingKind { kNone, kOneHot, kOrdinal };
std::string_view EncodingKindName(EncodingKind kind);  // "none", "one_hot", "ordinal"
StatusOr<EncodingKind> ParseEncodingKind(std::string_view text);

// How one raw column becomes model features.
//  - kNone: the column itself, a number.
//  - kOneHot: one 0/1 feature per category, named "<column>=<category>"; a category not seen in
//    training gives all zeros, a missing value gives all NaN (missing).
//  - kOrdinal: one feature, the category's index in `categories` (0, 1, ...); an unseen or
//    missing value gives NaN.
struct ColumnEncoding {
  std::string column;
  EncodingKind kind = EncodingKind::kNone;
  std::vector<std::string> categories;
  bool categories_declared = false;  // from the spec (kept in that order), else fitted sorted
};

struct FeaturePlan {
  std::vector<ColumnEncoding> columns;  // in feature order

  // The model's feature names, in matrix column order.
  std::vector<std::string> FeatureNames() const;
  int64_t num_features() const;
};

// Fills the categories of every categorical column without declared ones with the sorted distinct
// non-missing values found in `rows` of `table`. kInvalidArgument when a categorical column has no
// value in those rows.
Status FitEncodings(const RawTable& table, std::span<const int64_t> rows, FeaturePlan* plan);

// Checks that every column of the plan is present and usable: a text column needs an encoding.
Status CheckPlan(const RawTable& table, const FeaturePlan& plan);

// The row-major [rows.size(), plan.num_features()] matrix for `rows` of `table`.
std::vector<float> EncodeRows(const RawTable& table, std::span<const int64_t> rows,
                              const FeaturePlan& plan);

// {"columns":[{"column":..,"encoding":"one_hot","categories":[..]}, ...],
//  "feature_names":[...]}, and back.
nlohmann::json PlanToJson(const FeaturePlan& plan);
StatusOr<FeaturePlan> PlanFromJson(const nlohmann::json& json);

// Reference statistics of the training matrix, per feature, for drift detection at the edge:
// count, missing_rate, mean, std (population), min, max, quantiles (linear interpolation, as
// numpy's default) at kQuantileLevels, and a histogram over the distinct interior deciles as
// edges: bin i holds the fraction of present values in (edges[i-1], edges[i]] (first bin
// unbounded below, last unbounded above). Categorical source columns also get their category
// frequencies (a missing value counts as "__missing__"). Features are summarised on `threads`
// threads; the result does not depend on their number.
inline constexpr double kQuantileLevels[] = {0,    0.01, 0.05, 0.1,  0.25, 0.5,
                                             0.75, 0.9,  0.95, 0.99, 1};
nlohmann::json ReferenceStatistics(std::span<const float> matrix, int64_t rows,
                                   const std::vector<std::string>& feature_names,
                                   const RawTable& table, std::span<const int64_t> table_rows,
                                   const FeaturePlan& plan, int threads = 1);

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_FEATURES_H_
