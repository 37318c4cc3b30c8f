// Parsing of XGBoost models saved as JSON or UBJSON (the XGBoost 1.7 schema) into a plain,
// validated in-memory description that the native evaluator (tree_ensemble.h) and the backend
// (xgboost_backend.cc) build on.
//
// Two entry points:
//  - ParseXgboostModel: the full, strict parse for the native evaluator. It accepts gbtree and
//    dart boosters with numeric splits, one target, and the objectives listed in
//    XgboostObjective; anything else fails with kUnimplemented (categorical splits, gblinear,
//    multi-target, ranking/survival objectives ...) so the caller can suggest `backend: capi`.
//  - ParseXgboostHeader: only the learner-level facts (booster, objective, feature and class
//    counts), for any booster or objective; the C API backend validates model.yaml with it.
//
// Both fail with kInvalidArgument on anything malformed: not JSON/UBJSON, truncated files,
// missing or mistyped fields, inconsistent array lengths, child indices out of range, cycles,
// split features >= num_feature. Neither crashes, hangs or allocates without bound on hostile
// input: container sizes declared in UBJSON are checked against the input size and nesting is
// limited. The bare NaN / Infinity / -Infinity that XGBoost writes for non-finite floats (not
// valid JSON) are accepted.
//
// All functions are thread-safe (they share no state).
#ifndef EDGELOOP_INFERENCE_XGBOOST_JSON_H_
#define EDGELOOP_INFERENCE_XGBOOST_JSON_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::inference {

enum class XgboostFormat {
  kAuto,  // decided from the content: JSON text starts with '{' then '"', '}' or space
  kJson,
  kUbjson,
};

// The objectives the native evaluator supports, by XGBoost name.
enum class XgboostObjective {
  kBinaryLogistic,       // binary:logistic   margin = logit(base_score), output sigmoid
  kBinaryLogitRaw,       // binary:logitraw   margin = base_score (XGBoost 1.7), output margin
  kRegSquaredError,      // reg:squarederror  identity
  kRegSquaredLogError,   // reg:squaredlogerror identity
  kRegPseudoHuberError,  // reg:pseudohubererror identity
  kRegAbsoluteError,     // reg:absoluteerror identity
  kRegLogistic,          // reg:logistic      logit / sigmoid
  kRegTweedie,           // reg:tweedie       log / exp
  kRegGamma,             // reg:gamma         log / exp
  kCountPoisson,         // count:poisson     log / exp
  kMultiSoftprob,        // multi:softprob    identity / softmax over classes
  kMultiSoftmax,         // multi:softmax     identity / index of the largest margin
};

// The XGBoost name of `objective`, e.g. "binary:logistic".
std::string_view XgboostObjectiveName(XgboostObjective objective);
// The objective named `name`; nullopt when the native evaluator does not support it.
std::optional<XgboostObjective> XgboostObjectiveFromName(std::string_view name);

// The learner-level description of a model.
struct XgboostHeader {
  std::string booster;       // "gbtree", "dart", "gblinear", ...
  std::string objective;     // "binary:logistic", ...
  int64_t num_feature = 0;   // >= 1
  int64_t num_class = 0;     // 0 unless multi-class (then >= 2)
  int64_t num_target = 1;    // >= 1
  float base_score = 0.5f;   // as stored: in the objective's output space (a probability ...)
  std::vector<int> version;  // e.g. {1, 7, 4}; empty when the file does not say

  // Output groups (values per row before the objective's transform): num_class, or 1.
  int64_t num_groups() const { return num_class > 1 ? num_class : 1; }
};

// One regression tree, as stored: parallel arrays indexed by node id, node 0 is the root.
// Only nodes reachable from the root have been validated; unreachable (deleted) nodes may hold
// anything and must be ignored.
struct XgboostTree {
  std::vector<int32_t> left_children;   // -1 for leaves
  std::vector<int32_t> right_children;  // -1 for leaves
  std::vector<int32_t> split_indices;   // feature index, < num_feature on internal nodes
  std::vector<float> split_conditions;  // internal: go left when x < condition; leaf: value
  std::vector<uint8_t> default_left;    // internal: where a missing (NaN) value goes
  std::vector<float> sum_hessian;       // node cover, for contributions
  int32_t group = 0;                    // output group (tree_info), < num_groups
  float weight = 1.0f;                  // dart weight_drop; 1 for gbtree
  int32_t depth = 0;                    // edges from the root to the deepest leaf

  size_t num_nodes() const { return left_children.size(); }
  bool IsLeaf(int32_t node) const { return left_children[node] == -1; }
};

// A fully parsed and validated tree model.
struct XgboostModel {
  XgboostHeader header;
  XgboostObjective objective = XgboostObjective::kRegSquaredError;
  // The margin every row starts from: base_score turned into margin space by the objective
  // (logit for binary:logistic and reg:logistic, log for poisson/gamma/tweedie, identity
  // otherwise, binary:logitraw included),
  // computed in float as XGBoost does.
  float base_margin = 0.0f;
  std::vector<XgboostTree> trees;  // in boosting order
};

// The deepest tree the parser accepts: deeper trees fail with kUnimplemented. Far beyond what
// depth-limited or leaf-limited training produces; it bounds recursion and scratch memory.
inline constexpr int32_t kMaxXgboostTreeDepth = 256;

// Parses the model in `data` (the whole file). See the file comment for what is accepted.
StatusOr<XgboostModel> ParseXgboostModel(std::string_view data,
                                         XgboostFormat format = XgboostFormat::kAuto);

// Parses only the learner-level description; accepts any booster and objective.
StatusOr<XgboostHeader> ParseXgboostHeader(std::string_view data,
                                           XgboostFormat format = XgboostFormat::kAuto);

// Reads a whole model file into memory. kNotFound when it cannot be opened.
StatusOr<std::string> ReadXgboostModelFile(const std::filesystem::path& path);

// The margin XGBoost starts from for `objective` and the stored `base_score`. kInvalidArgument
// when base_score is outside the objective's domain ((0, 1) for logistic, > 0 for log-link).
StatusOr<float> XgboostBaseMargin(XgboostObjective objective, float base_score);

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_XGBOOST_JSON_H_
