#include "anomaly/tabular.h"

#include <nlohmann/json.hpp>

#include "anomaly/ecod.h"
#include "anomaly/isolation_forest.h"
#include "anomaly/tabular_util.h"

namespace edgeloop::anomaly {

namespace {
constexpr int64_t kMaxFeatures = int64_t{1} << 20;
}  // namespace

StatusOr<std::unique_ptr<TabularDetector>> FitTabularDetector(const float* rows, int64_t n,
                                                              int64_t num_features,
                                                              const TabularFitOptions& options) {
  if (num_features < 1 || num_features > kMaxFeatures) {
    return InvalidArgumentError("num_features must be in [1, " + std::to_string(kMaxFeatures) +
                                "], got " + std::to_string(num_features));
  }
  if (n < 1 || rows == nullptr) {
    return InvalidArgumentError("no training rows");
  }
  if (options.kind == "isolation_forest") {
    ASSIGN_OR_RETURN(auto forest,
                     IsolationForest::Fit(rows, n, num_features, options.seed, options.params));
    return std::unique_ptr<TabularDetector>(std::move(forest));
  }
  if (options.kind == "ecod") {
    ASSIGN_OR_RETURN(auto ecod, Ecod::Fit(rows, n, num_features, options.seed, options.params));
    return std::unique_ptr<TabularDetector>(std::move(ecod));
  }
  return InvalidArgumentError("unknown tabular detector kind '" + options.kind +
                              "' (expected isolation_forest or ecod)");
}

StatusOr<std::unique_ptr<TabularDetector>> LoadTabularDetector(std::string_view json) {
  const nlohmann::json doc = nlohmann::json::parse(json.begin(), json.end(), nullptr,
                                                   /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return InvalidArgumentError(
        "tabular detector file is not valid JSON (truncated or not a "
        "detector.json)");
  }
  if (!doc.is_object()) return InvalidArgumentError("tabular detector file is not a JSON object");
  const auto format = doc.find("format");
  if (format == doc.end() || *format != tabular_internal::kFormat) {
    return InvalidArgumentError("not a tabular detector file (\"format\" must be \"" +
                                std::string(tabular_internal::kFormat) + "\")");
  }
  const auto version = doc.find("version");
  if (version == doc.end() || *version != tabular_internal::kFormatVersion) {
    return InvalidArgumentError("unsupported tabular detector format version " +
                                (version == doc.end() ? std::string("(none)") : version->dump()) +
                                " (this build reads version " +
                                std::to_string(tabular_internal::kFormatVersion) + ")");
  }
  const auto kind = doc.find("kind");
  if (kind != doc.end() && *kind == "isolation_forest") {
    ASSIGN_OR_RETURN(auto forest, IsolationForest::FromJson(doc));
    return std::unique_ptr<TabularDetector>(std::move(forest));
  }
  if (kind != doc.end() && *kind == "ecod") {
    ASSIGN_OR_RETURN(auto ecod, Ecod::FromJson(doc));
    return std::unique_ptr<TabularDetector>(std::move(ecod));
  }
  return InvalidArgumentError("unknown tabular detector kind " +
                              (kind == doc.end() ? std::string("(none)") : kind->dump()) +
                              " (expected isolation_forest or ecod)");
}

}  // namespace edgeloop::anomaly
