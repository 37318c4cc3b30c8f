#include "train/features.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <set>
#include <thread>
#include <unordered_map>

namespace edgeloop::train {
namespace {

using Json = nlohmann::json;
constexpr float kMissing = std::numeric_limits<float>::quiet_NaN();

}  // namespace

const RawColumn* RawTable::Find(const std::string& name) const {
  for (const RawColumn& column : columns) {
    if (column.name == name) return &column;
  }
  return nullptr;
}

std::string_view EncodingKindName(EncodingKind kind) {
  switch (kind) {
    case EncodingKind::kNone:
      return "none";
    case EncodingKind::kOneHot:
      return "one_hot";
    case EncodingKind::kOrdinal:
      return "ordinal";
  }
  return "none";
}

StatusOr<EncodingKind> ParseEncodingKind(std::string_view text) {
  if (text == "none") return EncodingKind::kNone;
  if (text == "one_hot" || text == "onehot" || text == "one-hot") return EncodingKind::kOneHot;
  if (text == "ordinal") return EncodingKind::kOrdinal;
  return InvalidArgumentError("unknown encoding '" + std::string(text) +
                              "' (expected one_hot or ordinal)");
}

std::vector<std::string> FeaturePlan::FeatureNames() const {
  std::vector<std::string> names;
  for (const ColumnEncoding& c : columns) {
    if (c.kind == EncodingKind::kOneHot) {
      for (const std::string& category : c.categories) names.push_back(c.column + "=" + category);
    } else {
      names.push_back(c.column);
    }
  }
  return names;
}

int64_t FeaturePlan::num_features() const {
  int64_t n = 0;
  for (const ColumnEncoding& c : columns) {
    n += c.kind == EncodingKind::kOneHot ? static_cast<int64_t>(c.categories.size()) : 1;
  }
  return n;
}

Status CheckPlan(const RawTable& table, const FeaturePlan& plan) {
  for (const ColumnEncoding& c : plan.columns) {
    const RawColumn* column = table.Find(c.column);
    if (column == nullptr) return InvalidArgumentError("missing feature column '" + c.column + "'");
    if (c.kind == EncodingKind::kNone && column->kind != RawColumn::Kind::kNumber) {
      return InvalidArgumentError("feature '" + c.column +
                                  "' is not numeric; declare an encoding for it (one_hot or "
                                  "ordinal) under 'categorical'");
    }
    if (c.kind != EncodingKind::kNone && column->kind != RawColumn::Kind::kText) {
      return InternalError("categorical feature '" + c.column + "' was not read as text");
    }
  }
  return Status::Ok();
}

Status FitEncodings(const RawTable& table, std::span<const int64_t> rows, FeaturePlan* plan) {
  for (ColumnEncoding& c : plan->columns) {
    if (c.kind == EncodingKind::kNone || c.categories_declared) continue;
    const RawColumn* column = table.Find(c.column);
    if (column == nullptr) return InvalidArgumentError("missing feature column '" + c.column + "'");
    std::set<std::string> seen;
    for (int64_t row : rows) {
      if (column->valid[row]) seen.insert(column->texts[row]);
    }
    if (seen.empty()) {
      return InvalidArgumentError("categorical feature '" + c.column +
                                  "' has no value in the training rows");
    }
    c.categories.assign(seen.begin(), seen.end());
  }
  return Status::Ok();
}

std::vector<float> EncodeRows(const RawTable& table, std::span<const int64_t> rows,
                              const FeaturePlan& plan) {
  const int64_t width = plan.num_features();
  std::vector<float> matrix(rows.size() * static_cast<size_t>(width));
  // Numeric columns row by row, so that the matrix is written in order.
  std::vector<std::pair<int64_t, const float*>> numeric;  // (matrix column, values)
  int64_t offset = 0;
  for (const ColumnEncoding& c : plan.columns) {
    if (c.kind == EncodingKind::kNone)
      numeric.emplace_back(offset, table.Find(c.column)->numbers.data());
    offset += c.kind == EncodingKind::kOneHot ? static_cast<int64_t>(c.categories.size()) : 1;
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    float* out = &matrix[i * width];
    const int64_t row = rows[i];
    for (const auto& [column, values] : numeric) out[column] = values[row];
  }
  offset = 0;
  for (const ColumnEncoding& c : plan.columns) {
    const RawColumn& column = *table.Find(c.column);
    if (c.kind == EncodingKind::kNone) {
      offset += 1;
      continue;
    }
    std::unordered_map<std::string_view, int64_t> index;
    for (size_t k = 0; k < c.categories.size(); ++k) index.emplace(c.categories[k], k);
    const int64_t span =
        c.kind == EncodingKind::kOneHot ? static_cast<int64_t>(c.categories.size()) : 1;
    for (size_t i = 0; i < rows.size(); ++i) {
      float* out = &matrix[i * width + offset];
      const int64_t row = rows[i];
      if (!column.valid[row]) {
        std::fill(out, out + span, kMissing);
        continue;
      }
      auto it = index.find(column.texts[row]);
      if (c.kind == EncodingKind::kOrdinal) {
        *out = it == index.end() ? kMissing : static_cast<float>(it->second);
      } else {
        std::fill(out, out + span, 0.0f);
        if (it != index.end()) out[it->second] = 1.0f;
      }
    }
    offset += span;
  }
  return matrix;
}

Json PlanToJson(const FeaturePlan& plan) {
  Json columns = Json::array();
  for (const ColumnEncoding& c : plan.columns) {
    Json entry = {{"column", c.column}, {"encoding", EncodingKindName(c.kind)}};
    if (c.kind != EncodingKind::kNone) entry["categories"] = c.categories;
    columns.push_back(std::move(entry));
  }
  return {{"columns", columns}, {"feature_names", plan.FeatureNames()}};
}

StatusOr<FeaturePlan> PlanFromJson(const Json& json) {
  if (!json.is_object() || !json.contains("columns") || !json["columns"].is_array()) {
    return InvalidArgumentError("'encoding' must be an object with a 'columns' list");
  }
  FeaturePlan plan;
  for (const Json& entry : json["columns"]) {
    if (!entry.is_object() || !entry.contains("column") || !entry["column"].is_string()) {
      return InvalidArgumentError("every 'encoding.columns' entry needs a 'column' name");
    }
    ColumnEncoding c;
    c.column = entry["column"].get<std::string>();
    ASSIGN_OR_RETURN(c.kind, ParseEncodingKind(entry.value("encoding", std::string("none"))));
    if (c.kind != EncodingKind::kNone) {
      if (!entry.contains("categories") || !entry["categories"].is_array()) {
        return InvalidArgumentError("encoded column '" + c.column + "' has no categories");
      }
      for (const Json& category : entry["categories"]) {
        if (!category.is_string()) {
          return InvalidArgumentError("categories of '" + c.column + "' must be strings");
        }
        c.categories.push_back(category.get<std::string>());
      }
      c.categories_declared = true;
    }
    plan.columns.push_back(std::move(c));
  }
  return plan;
}

namespace {

// The statistics of one feature's present values, before they become JSON.
struct FeatureSummary {
  int64_t rows = 0;
  int64_t present = 0;
  double mean = 0;
  double std = 0;
  double min = 0;
  double max = 0;
  std::vector<double> quantiles;  // at kQuantileLevels
  std::vector<double> edges;      // distinct interior deciles
  std::vector<int64_t> counts;    // per histogram bin
};

// Positions of `values` whose sorted values numpy's linear quantile rule reads for `q`.
void QuantilePositions(size_t n, double q, std::vector<size_t>* positions) {
  const double position = q * static_cast<double>(n - 1);
  const size_t below = static_cast<size_t>(std::floor(position));
  positions->push_back(below);
  positions->push_back(std::min(below + 1, n - 1));
}

// Rearranges `values` so that every index in `positions` (sorted, distinct, within
// [first, last)) holds the value a full sort would put there: nth_element on the middle
// position, then each side with its positions, which costs O(n log k) rather than a sort's
// O(n log n).
void SelectPositions(std::vector<float>& values, size_t first, size_t last,
                     std::span<const size_t> positions) {
  if (positions.empty() || last - first < 2) return;
  const size_t middle = positions.size() / 2;
  const size_t at = positions[middle];
  std::nth_element(values.begin() + static_cast<std::ptrdiff_t>(first),
                   values.begin() + static_cast<std::ptrdiff_t>(at),
                   values.begin() + static_cast<std::ptrdiff_t>(last));
  SelectPositions(values, first, at, positions.subspan(0, middle));
  SelectPositions(values, at + 1, last, positions.subspan(middle + 1));
}

// numpy.quantile's default (linear) once the positions it reads are selected.
double Quantile(const std::vector<float>& selected, double q) {
  const double position = q * static_cast<double>(selected.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, selected.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return static_cast<double>(selected[below]) +
         fraction * (static_cast<double>(selected[above]) - static_cast<double>(selected[below]));
}

FeatureSummary SummariseFeature(std::span<const float> matrix, int64_t rows, int64_t width,
                                int64_t feature) {
  FeatureSummary out;
  out.rows = rows;
  std::vector<float> present;
  present.reserve(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    const float v = matrix[i * width + feature];
    if (!std::isnan(v)) present.push_back(v);
  }
  out.present = static_cast<int64_t>(present.size());
  if (present.empty()) return out;
  // Sums in row order, before the selection below reorders the values.
  double sum = 0;
  for (float v : present) sum += v;
  out.mean = sum / static_cast<double>(present.size());
  double squares = 0;
  for (float v : present) squares += (v - out.mean) * (v - out.mean);
  out.std = std::sqrt(squares / static_cast<double>(present.size()));
  std::vector<size_t> positions;
  for (double q : kQuantileLevels) QuantilePositions(present.size(), q, &positions);
  for (int d = 1; d <= 9; ++d) QuantilePositions(present.size(), d / 10.0, &positions);
  std::sort(positions.begin(), positions.end());
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
  SelectPositions(present, 0, present.size(), positions);
  out.min = present.front();
  out.max = present.back();
  for (double q : kQuantileLevels) out.quantiles.push_back(Quantile(present, q));
  for (int d = 1; d <= 9; ++d) {
    const double edge = Quantile(present, d / 10.0);
    if (out.edges.empty() || edge > out.edges.back()) out.edges.push_back(edge);
  }
  out.counts.assign(out.edges.size() + 1, 0);
  for (float v : present) {
    // First edge >= v: values equal to an edge belong to the bin that edge closes.
    const size_t bin =
        std::lower_bound(out.edges.begin(), out.edges.end(), static_cast<double>(v)) -
        out.edges.begin();
    out.counts[bin]++;
  }
  return out;
}

Json SummaryToJson(const FeatureSummary& s) {
  Json stats = {
      {"count", s.rows},
      {"missing_rate",
       s.rows == 0 ? 0.0 : static_cast<double>(s.rows - s.present) / static_cast<double>(s.rows)}};
  if (s.present == 0) return stats;
  stats["mean"] = s.mean;
  stats["std"] = s.std;
  stats["min"] = s.min;
  stats["max"] = s.max;
  Json levels = Json::array();
  for (double q : kQuantileLevels) levels.push_back(q);
  stats["quantiles"] = {{"levels", levels}, {"values", s.quantiles}};
  Json fractions = Json::array();
  for (int64_t count : s.counts) {
    fractions.push_back(static_cast<double>(count) / static_cast<double>(s.present));
  }
  stats["histogram"] = {{"edges", s.edges}, {"fractions", fractions}};
  return stats;
}

}  // namespace

Json ReferenceStatistics(std::span<const float> matrix, int64_t rows,
                         const std::vector<std::string>& feature_names, const RawTable& table,
                         std::span<const int64_t> table_rows, const FeaturePlan& plan,
                         int threads) {
  const int64_t width = static_cast<int64_t>(feature_names.size());
  // Features are independent: `threads` workers take them in turn.
  std::vector<FeatureSummary> summaries(static_cast<size_t>(width));
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    for (int64_t f = next++; f < width; f = next++) {
      summaries[f] = SummariseFeature(matrix, rows, width, f);
    }
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < std::min<int64_t>(std::max(threads, 1), width); ++t)
    workers.emplace_back(work);
  work();
  for (std::thread& w : workers) w.join();
  Json features = Json::object();
  for (int64_t f = 0; f < width; ++f) features[feature_names[f]] = SummaryToJson(summaries[f]);
  Json categorical = Json::object();
  for (const ColumnEncoding& c : plan.columns) {
    if (c.kind == EncodingKind::kNone) continue;
    const RawColumn& column = *table.Find(c.column);
    std::map<std::string, int64_t> counts;
    for (int64_t row : table_rows) {
      counts[column.valid[row] ? column.texts[row] : std::string("__missing__")]++;
    }
    Json frequencies = Json::object();
    for (const auto& [value, count] : counts) {
      frequencies[value] =
          table_rows.empty() ? 0.0
                             : static_cast<double>(count) / static_cast<double>(table_rows.size());
    }
    categorical[c.column] = frequencies;
  }
  Json out = {{"rows", rows}, {"features", features}};
  if (!categorical.empty()) out["categories"] = categorical;
  return out;
}

}  // namespace edgeloop::train
