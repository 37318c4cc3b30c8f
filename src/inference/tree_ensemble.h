// TreeEnsemble: the native evaluator for XGBoost tree models (gbtree and dart).
//
// Create() compiles a parsed model (xgboost_json.h) into a compact layout:
//  - kPerfect: every tree padded to a perfect binary tree of the model's depth D (<= 8), 2^D
//    slots per tree, each tree cache-line aligned: 8-byte nodes {feature, threshold} in heap
//    order (children of i are 2i and 2i + 1), then the 2^D leaves. A walk is D steps of "load
//    node, load feature value, compare, index = 2 * index + go_right": no branches and no child
//    pointers. Used when padding costs at most 2x the memory of the general layout.
//  - kGeneral: nodes in breadth-first order with adjacent children (16 bytes each), leaves that
//    point to themselves, so walks of a fixed number of steps need no leaf test.
// Default directions for missing values sit in a separate byte array that only the kernels for
// rows containing NaN read. Walks are interleaved so their load latencies overlap: for one row,
// 8 trees at a time; for batches, tree by tree over blocks of 8 rows (copied feature-major),
// so each tree stays in L1 cache for the whole batch chunk.
//
// Results equal XGBoost's CPU predictor (1.7): margins accumulate in float, tree by tree in
// model order, starting from the base margin; dart trees are scaled by their weight_drop; then
// the objective's transform. A value `x` goes left when `x < split_condition`, NaN (missing)
// goes to the node's default child. Contributions are exact TreeSHAP (Lundberg, Erion and Lee,
// "Consistent Individualized Feature Attribution for Tree Ensembles", Algorithm 2) over the
// node covers (sum_hessian), laid out like XGBoost's pred_contribs.
//
// Thread safety: immutable after Create(); all const methods may run concurrently. Batches and
// multi:softmax predictions use per-thread scratch buffers that are allocated once per thread
// and reused; PredictContributions allocates its scratch per call.
#ifndef EDGELOOP_INFERENCE_TREE_ENSEMBLE_H_
#define EDGELOOP_INFERENCE_TREE_ENSEMBLE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "inference/xgboost_json.h"

namespace edgeloop::inference {

class TreeEnsemble {
 public:
  enum class Layout { kAuto, kPerfect, kGeneral };
  struct Options {
    // kAuto picks kPerfect when the model allows it cheaply; forcing kPerfect fails with
    // kInvalidArgument for models deeper than kMaxPerfectDepth. Meant for tests and benchmarks.
    Layout layout = Layout::kAuto;
  };
  static constexpr int kMaxPerfectDepth = 8;

  // Compiles `model` (already validated by ParseXgboostModel). The result does not refer to
  // `model` afterwards.
  static StatusOr<std::unique_ptr<TreeEnsemble>> Create(const XgboostModel& model,
                                                        const Options& options);
  static StatusOr<std::unique_ptr<TreeEnsemble>> Create(const XgboostModel& model) {
    return Create(model, Options());
  }

  TreeEnsemble(const TreeEnsemble&) = delete;
  TreeEnsemble& operator=(const TreeEnsemble&) = delete;
  ~TreeEnsemble();

  int64_t num_features() const { return num_features_; }
  // Margin values per row: num_class for multi-class models, else 1.
  int64_t num_groups() const { return num_groups_; }
  // Prediction values per row: 1 for multi:softmax (the class index), else num_groups().
  int64_t prediction_width() const;
  // Contribution values per row: num_groups() * (num_features() + 1), the last of each group's
  // num_features() + 1 values being the bias (expected value plus base margin).
  int64_t contribution_width() const { return num_groups_ * (num_features_ + 1); }
  XgboostObjective objective() const { return objective_; }
  size_t num_trees() const { return groups_.size(); }
  Layout layout() const { return layout_; }

  // All methods take `features` row-major, [rows, num_features()], NaN meaning missing, with
  // rows = features.size() / num_features(); the output span must hold exactly rows * width
  // values (checked by assert only: this is the hot path and the backend validates shapes).

  // Untransformed margins, [rows, num_groups()].
  void PredictMargin(std::span<const float> features, std::span<float> margins) const;
  // Transformed predictions, [rows, prediction_width()]: probabilities for logistic and
  // softprob, exp(margin) for poisson/gamma/tweedie, the class index for softmax, else margins.
  void Predict(std::span<const float> features, std::span<float> predictions) const;
  // The objective's transform of margins computed by PredictMargin; `predictions` may be the
  // same memory as `margins` (exactly, not partially overlapping).
  void TransformMargins(std::span<const float> margins, std::span<float> predictions) const;
  // TreeSHAP contributions, [rows, num_groups(), num_features() + 1].
  void PredictContributions(std::span<const float> features, std::span<float> contributions) const;

 private:
  struct PerfectNode;
  struct GeneralNode;
  struct ShapNode;

  TreeEnsemble() = default;

  void BuildPerfect(const XgboostModel& model);
  void BuildGeneral(const XgboostModel& model);
  void BuildShap(const XgboostModel& model);

  // Adds the trees' outputs for one row to margin[0 .. num_groups).
  void AddRow(const float* row, float* margin) const;
  // Adds the trees' outputs for `rows` rows (row-major) to margins.
  void AddBatch(const float* rows, size_t num_rows, float* margins) const;

  template <int kDepth, bool kMissing>
  void AddRowPerfect(const float* row, float* margin) const;
  template <bool kMissing>
  void AddRowGeneral(const float* row, float* margin) const;
  // `columns` holds `num_blocks` blocks of 8 rows, each feature-major (see AddBatch).
  template <int kDepth, bool kMissing>
  void AddBlocksPerfect(const float* columns, size_t num_blocks, float* margins) const;
  template <bool kMissing>
  void AddBlocksGeneral(const float* columns, size_t num_blocks, float* margins) const;

  int64_t num_features_ = 0;
  int64_t num_groups_ = 1;
  XgboostObjective objective_ = XgboostObjective::kRegSquaredError;
  float base_margin_ = 0.0f;
  Layout layout_ = Layout::kGeneral;
  int depth_ = 0;  // kPerfect: the padded depth of every tree

  std::vector<int32_t> groups_;  // output group per tree

  // kPerfect: 2^D slots per tree, tree t at t * 2^D, each tree's block 64-byte aligned. Nodes
  // in heap order from 1 (children of i: 2i, 2i + 1; slot 0 unused); leaves, already scaled by
  // the dart weight, in order; default_left per node, read only for rows with NaN.
  std::vector<PerfectNode> perfect_node_storage_;
  std::vector<float> perfect_leaf_storage_;
  const PerfectNode* perfect_nodes_ = nullptr;  // aligned, into perfect_node_storage_
  const float* perfect_leaves_ = nullptr;       // aligned, into perfect_leaf_storage_
  std::vector<uint8_t> perfect_default_left_;
  // kGeneral: tree t's root at general_roots_[t], its depth in general_depths_[t].
  std::vector<GeneralNode> general_nodes_;
  std::vector<uint8_t> general_default_left_;
  std::vector<uint32_t> general_roots_;
  std::vector<int32_t> general_depths_;

  // TreeSHAP: the trees as stored (unscaled leaves), with covers and mean values.
  std::vector<ShapNode> shap_nodes_;
  std::vector<uint32_t> shap_roots_;
  std::vector<float> tree_weights_;
  std::vector<uint32_t> tree_feature_begin_;  // tree t's features: [begin[t], begin[t + 1])
  std::vector<int32_t> tree_features_;
  int max_tree_depth_ = 0;
};

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_TREE_ENSEMBLE_H_
