#include "train/features.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
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
  int64_t offset = 0;
  for (const ColumnEncoding& c : plan.columns) {
    const RawColumn& column = *table.Find(c.column);
    if (c.kind == EncodingKind::kNone) {
      for (size_t i = 0; i < rows.size(); ++i) {
        matrix[i * width + offset] = column.numbers[rows[i]];
      }
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

// numpy.quantile's default (linear): position q * (n - 1) between the sorted values.
double Quantile(const std::vector<float>& sorted, double q) {
  const double position = q * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  const double fraction = position - static_cast<double>(below);
  return static_cast<double>(sorted[below]) +
         fraction * (static_cast<double>(sorted[above]) - static_cast<double>(sorted[below]));
}

Json FeatureStatistics(std::span<const float> matrix, int64_t rows, int64_t width,
                       int64_t feature) {
  std::vector<float> present;
  present.reserve(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    const float v = matrix[i * width + feature];
    if (!std::isnan(v)) present.push_back(v);
  }
  Json stats = {
      {"count", rows},
      {"missing_rate",
       rows == 0 ? 0.0 : static_cast<double>(rows - present.size()) / static_cast<double>(rows)}};
  if (present.empty()) return stats;
  double sum = 0;
  for (float v : present) sum += v;
  const double mean = sum / static_cast<double>(present.size());
  double squares = 0;
  for (float v : present) squares += (v - mean) * (v - mean);
  std::sort(present.begin(), present.end());
  stats["mean"] = mean;
  stats["std"] = std::sqrt(squares / static_cast<double>(present.size()));
  stats["min"] = static_cast<double>(present.front());
  stats["max"] = static_cast<double>(present.back());
  Json levels = Json::array();
  Json values = Json::array();
  for (double q : kQuantileLevels) {
    levels.push_back(q);
    values.push_back(Quantile(present, q));
  }
  stats["quantiles"] = {{"levels", levels}, {"values", values}};
  std::vector<double> edges;
  for (int d = 1; d <= 9; ++d) {
    const double edge = Quantile(present, d / 10.0);
    if (edges.empty() || edge > edges.back()) edges.push_back(edge);
  }
  std::vector<int64_t> counts(edges.size() + 1, 0);
  for (float v : present) {
    // First edge >= v: values equal to an edge belong to the bin that edge closes.
    const size_t bin =
        std::lower_bound(edges.begin(), edges.end(), static_cast<double>(v)) - edges.begin();
    counts[bin]++;
  }
  Json fractions = Json::array();
  for (int64_t count : counts) {
    fractions.push_back(static_cast<double>(count) / static_cast<double>(present.size()));
  }
  stats["histogram"] = {{"edges", edges}, {"fractions", fractions}};
  return stats;
}

}  // namespace

Json ReferenceStatistics(std::span<const float> matrix, int64_t rows,
                         const std::vector<std::string>& feature_names, const RawTable& table,
                         std::span<const int64_t> table_rows, const FeaturePlan& plan) {
  const int64_t width = static_cast<int64_t>(feature_names.size());
  Json features = Json::object();
  for (int64_t f = 0; f < width; ++f) {
    features[feature_names[f]] = FeatureStatistics(matrix, rows, width, f);
  }
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
