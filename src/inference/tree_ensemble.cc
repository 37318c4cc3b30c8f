#include "inference/tree_ensemble.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

namespace edgeloop::inference {

struct TreeEnsemble::PerfectNode {
  uint32_t feature;
  float threshold;
};

// Children are `left` and `left + 1`. A leaf has left == itself, feature 0, threshold NaN and
// default-left set, so any value, missing or not, keeps a walk on the leaf.
struct TreeEnsemble::GeneralNode {
  float threshold;
  uint32_t feature;
  uint32_t left;
  float value;  // leaves: the output, scaled by the dart weight
};

struct TreeEnsemble::ShapNode {
  int32_t left;  // -1 for leaves; indices are into shap_nodes_
  int32_t right;
  int32_t feature;
  float threshold;
  float cover;
  float value;  // leaves: the unscaled output
  float mean;   // cover-weighted mean of the leaves below (the expected output)
  uint8_t default_left;
};

namespace {

// Walks in flight together, their positions in registers: 8 trees for one row, or one tree
// for a block of 8 rows. Measured on the example model: 16 spills registers and is slower,
// level-by-level walks over more trees (positions in memory) are slower still.
constexpr size_t kInterleave = 8;
// Rows per batch chunk: the chunk's copy and one tree stay in L1 cache together.
constexpr size_t kMaxChunkRows = 64;
constexpr size_t kChunkFloats = 16384;
constexpr size_t kCacheLine = 64;

// 1 when a walk continues to the right child. XGBoost goes left when value < threshold, and
// a missing (NaN) value follows the default child.
template <bool kMissing>
inline uint32_t GoRight(float threshold, float value, uint32_t default_left) {
  const uint32_t greater_equal = value >= threshold ? 1u : 0u;  // false for NaN
  if constexpr (kMissing) {
    const uint32_t missing = std::isnan(value) ? 1u : 0u;
    return greater_equal | (missing & (default_left ^ 1u));
  } else {
    // Rows without NaN: !(value < threshold) == (value >= threshold). Internal nodes never
    // have NaN thresholds, and the NaN threshold of a kGeneral leaf keeps it in place.
    return greater_equal;
  }
}

// The first element of `storage` at a cache-line boundary; `storage` has kCacheLine bytes of
// slack for it.
template <typename T>
T* AlignToCacheLine(std::vector<T>& storage) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(storage.data());
  const uintptr_t aligned = (address + kCacheLine - 1) & ~uintptr_t{kCacheLine - 1};
  return storage.data() + (aligned - address) / sizeof(T);
}

// The nodes reachable from the root in breadth-first order; the two children of a node are
// adjacent. ParseXgboostModel has ruled out cycles and out-of-range children.
std::vector<int32_t> BreadthFirstOrder(const XgboostTree& tree) {
  std::vector<int32_t> order = {0};
  for (size_t i = 0; i < order.size(); ++i) {
    const int32_t node = order[i];
    if (!tree.IsLeaf(node)) {
      order.push_back(tree.left_children[node]);
      order.push_back(tree.right_children[node]);
    }
  }
  return order;
}

bool HasNaN(const float* values, size_t count) {
  uint32_t any = 0;
  for (size_t i = 0; i < count; ++i) any |= std::isnan(values[i]) ? 1u : 0u;
  return any != 0;
}

// XGBoost compares `x < NaN` as false, so a NaN threshold sends every present value right;
// -inf does the same under the `x >= threshold` test used here.
float WalkThreshold(float threshold) {
  return std::isnan(threshold) ? -std::numeric_limits<float>::infinity() : threshold;
}

// Per-thread scratch, grown on demand and reused, so that steady-state batches do not allocate.
std::vector<float>& ColumnScratch() {
  thread_local std::vector<float> scratch;
  return scratch;
}
std::vector<float>& MarginScratch() {
  thread_local std::vector<float> scratch;
  return scratch;
}

// ---- TreeSHAP (Lundberg, Erion and Lee 2018, Algorithm 2) ----
//
// A path holds one element per distinct feature split on the way from the root (plus a root
// element with feature -1): the fraction of training cover that flows along the path when the
// feature is unknown (zero_fraction), whether the row itself follows it (one_fraction), and the
// permutation weight of subsets of the path's features of each size (weight).
struct PathElement {
  int32_t feature;
  float zero_fraction;
  float one_fraction;
  float weight;
};

// EXTEND: appends an element to a path of `length` elements and updates the subset weights.
void ExtendPath(PathElement* path, int length, float zero_fraction, float one_fraction,
                int32_t feature) {
  path[length] = {feature, zero_fraction, one_fraction, length == 0 ? 1.0f : 0.0f};
  const float denominator = static_cast<float>(length + 1);
  for (int i = length - 1; i >= 0; --i) {
    path[i + 1].weight += one_fraction * path[i].weight * static_cast<float>(i + 1) / denominator;
    path[i].weight = zero_fraction * path[i].weight * static_cast<float>(length - i) / denominator;
  }
}

// UNWIND: removes element `index` from a path of `length` elements, undoing its EXTEND.
void UnwindPath(PathElement* path, int length, int index) {
  const float one = path[index].one_fraction;
  const float zero = path[index].zero_fraction;
  const float n_total = static_cast<float>(length);
  float next = path[length - 1].weight;
  for (int j = length - 2; j >= 0; --j) {
    if (one != 0.0f) {
      const float saved = path[j].weight;
      path[j].weight = next * n_total / (static_cast<float>(j + 1) * one);
      next = saved - path[j].weight * zero * static_cast<float>(length - 1 - j) / n_total;
    } else {
      path[j].weight = path[j].weight * n_total / (zero * static_cast<float>(length - 1 - j));
    }
  }
  for (int j = index; j < length - 1; ++j) {
    path[j].feature = path[j + 1].feature;
    path[j].zero_fraction = path[j + 1].zero_fraction;
    path[j].one_fraction = path[j + 1].one_fraction;
  }
}

// The total weight UNWIND(path, index) would leave, without modifying the path.
float UnwoundWeightSum(const PathElement* path, int length, int index) {
  const float one = path[index].one_fraction;
  const float zero = path[index].zero_fraction;
  const float n_total = static_cast<float>(length);
  float next = path[length - 1].weight;
  float total = 0.0f;
  for (int j = length - 2; j >= 0; --j) {
    if (one != 0.0f) {
      const float weight = next * n_total / (static_cast<float>(j + 1) * one);
      total += weight;
      next = path[j].weight - weight * zero * static_cast<float>(length - 1 - j) / n_total;
    } else {
      total += path[j].weight * n_total / (zero * static_cast<float>(length - 1 - j));
    }
  }
  return total;
}

template <typename Node>
struct ShapContext {
  const Node* nodes;
  const float* row;
  float* phi;
};

// RECURSE: the parent's path is `parent[0 .. parent_length)`; this call's path is built right
// after it, so each level of the recursion owns a disjoint slice of one arena.
template <typename Node>
void ShapRecurse(const ShapContext<Node>& context, int32_t node_index, PathElement* parent,
                 int parent_length, float zero_fraction, float one_fraction, int32_t feature) {
  PathElement* path = parent + parent_length;
  std::copy(parent, parent + parent_length, path);
  ExtendPath(path, parent_length, zero_fraction, one_fraction, feature);
  int length = parent_length + 1;
  const Node& node = context.nodes[node_index];

  if (node.left < 0) {
    for (int i = 1; i < length; ++i) {
      const float weight = UnwoundWeightSum(path, length, i);
      context.phi[path[i].feature] +=
          weight * (path[i].one_fraction - path[i].zero_fraction) * node.value;
    }
    return;
  }

  const float value = context.row[node.feature];
  bool left;
  if (std::isnan(value)) {
    left = node.default_left != 0;
  } else {
    left = value < node.threshold;
  }
  const int32_t hot = left ? node.left : node.right;
  const int32_t cold = left ? node.right : node.left;

  // A feature split again further down: its earlier element is removed and its fractions
  // carried into the new one.
  float incoming_zero = 1.0f;
  float incoming_one = 1.0f;
  for (int k = 1; k < length; ++k) {
    if (path[k].feature == node.feature) {
      incoming_zero = path[k].zero_fraction;
      incoming_one = path[k].one_fraction;
      UnwindPath(path, length, k);
      --length;
      break;
    }
  }

  const float hot_zero = incoming_zero * (context.nodes[hot].cover / node.cover);
  const float cold_zero = incoming_zero * (context.nodes[cold].cover / node.cover);
  // With both fractions zero the branch contributes exactly nothing (every subset term has a
  // zero factor); skipping it also avoids 0/0 in UNWIND.
  if (hot_zero != 0.0f || incoming_one != 0.0f) {
    ShapRecurse(context, hot, path, length, hot_zero, incoming_one, node.feature);
  }
  if (cold_zero != 0.0f) {
    ShapRecurse(context, cold, path, length, cold_zero, 0.0f, node.feature);
  }
}

}  // namespace

TreeEnsemble::~TreeEnsemble() = default;

StatusOr<std::unique_ptr<TreeEnsemble>> TreeEnsemble::Create(const XgboostModel& model,
                                                             const Options& options) {
  std::unique_ptr<TreeEnsemble> ensemble(new TreeEnsemble());
  ensemble->num_features_ = model.header.num_feature;
  ensemble->num_groups_ = model.header.num_groups();
  ensemble->objective_ = model.objective;
  ensemble->base_margin_ = model.base_margin;

  int max_depth = 0;
  size_t reachable_nodes = 0;
  for (const XgboostTree& tree : model.trees) {
    if (tree.group < 0 || tree.group >= ensemble->num_groups_) {
      return InvalidArgumentError("tree output group out of range");
    }
    if (tree.depth < 0 || tree.depth > kMaxXgboostTreeDepth) {
      return InvalidArgumentError("tree depth out of range");
    }
    max_depth = std::max(max_depth, tree.depth);
    ensemble->groups_.push_back(tree.group);
    reachable_nodes += BreadthFirstOrder(tree).size();
  }
  ensemble->max_tree_depth_ = max_depth;

  // The perfect layout pays 12 bytes per padded leaf slot; the general one 16 per node.
  const bool perfect_possible = max_depth <= kMaxPerfectDepth;
  const bool perfect_cheap =
      perfect_possible &&
      model.trees.size() * ((size_t{1} << max_depth) * 12) <= 2 * 16 * reachable_nodes;
  Layout layout = options.layout;
  if (layout == Layout::kAuto) {
    layout = perfect_possible && perfect_cheap ? Layout::kPerfect : Layout::kGeneral;
  }
  if (layout == Layout::kPerfect && !perfect_possible) {
    return InvalidArgumentError(
        "the perfect layout needs trees of depth <= " + std::to_string(kMaxPerfectDepth) +
        ", the model has depth " + std::to_string(max_depth));
  }
  ensemble->layout_ = layout;
  if (layout == Layout::kPerfect) {
    ensemble->depth_ = max_depth;
    ensemble->BuildPerfect(model);
  } else {
    ensemble->BuildGeneral(model);
  }
  ensemble->BuildShap(model);
  return ensemble;
}

int64_t TreeEnsemble::prediction_width() const {
  return objective_ == XgboostObjective::kMultiSoftmax ? 1 : num_groups_;
}

void TreeEnsemble::BuildPerfect(const XgboostModel& model) {
  const int depth = depth_;
  const size_t stride = size_t{1} << depth;
  const size_t trees = model.trees.size();
  perfect_node_storage_.assign(trees * stride + kCacheLine / sizeof(PerfectNode),
                               PerfectNode{0, 0.0f});
  perfect_leaf_storage_.assign(trees * stride + kCacheLine / sizeof(float), 0.0f);
  perfect_default_left_.assign(trees * stride, 0);
  PerfectNode* all_nodes = AlignToCacheLine(perfect_node_storage_);
  float* all_leaves = AlignToCacheLine(perfect_leaf_storage_);
  perfect_nodes_ = all_nodes;
  perfect_leaves_ = all_leaves;
  struct Item {
    int32_t source;  // node in the stored tree
    size_t target;   // heap position in the padded tree, from 1
    int level;
  };
  std::vector<Item> stack;
  for (size_t t = 0; t < trees; ++t) {
    const XgboostTree& tree = model.trees[t];
    PerfectNode* nodes = all_nodes + t * stride;
    uint8_t* default_left = perfect_default_left_.data() + t * stride;
    float* leaves = all_leaves + t * stride;
    stack.push_back({0, 1, 0});
    while (!stack.empty()) {
      const Item item = stack.back();
      stack.pop_back();
      if (item.level == depth) {
        // No tree is deeper than depth_, so this is a leaf.
        assert(tree.IsLeaf(item.source));
        leaves[item.target - stride] = tree.split_conditions[item.source] * tree.weight;
        continue;
      }
      int32_t left = item.source;
      int32_t right = item.source;
      if (!tree.IsLeaf(item.source)) {
        nodes[item.target] = {static_cast<uint32_t>(tree.split_indices[item.source]),
                              WalkThreshold(tree.split_conditions[item.source])};
        default_left[item.target] = tree.default_left[item.source];
        left = tree.left_children[item.source];
        right = tree.right_children[item.source];
      }
      // A leaf above the last level is copied into both subtrees of a padding node, so the
      // padding node's split (feature 0, threshold 0) does not matter.
      stack.push_back({left, 2 * item.target, item.level + 1});
      stack.push_back({right, 2 * item.target + 1, item.level + 1});
    }
  }
}

void TreeEnsemble::BuildGeneral(const XgboostModel& model) {
  for (const XgboostTree& tree : model.trees) {
    const std::vector<int32_t> order = BreadthFirstOrder(tree);
    const uint32_t base = static_cast<uint32_t>(general_nodes_.size());
    general_roots_.push_back(base);
    general_depths_.push_back(tree.depth);
    uint32_t next_child = 1;  // breadth-first position of the next pair of children
    for (size_t i = 0; i < order.size(); ++i) {
      const int32_t node = order[i];
      if (tree.IsLeaf(node)) {
        general_nodes_.push_back({std::numeric_limits<float>::quiet_NaN(), 0,
                                  base + static_cast<uint32_t>(i),
                                  tree.split_conditions[node] * tree.weight});
        general_default_left_.push_back(1);
      } else {
        general_nodes_.push_back({WalkThreshold(tree.split_conditions[node]),
                                  static_cast<uint32_t>(tree.split_indices[node]),
                                  base + next_child, 0.0f});
        general_default_left_.push_back(tree.default_left[node]);
        next_child += 2;
      }
    }
  }
}

void TreeEnsemble::BuildShap(const XgboostModel& model) {
  tree_feature_begin_.push_back(0);
  for (const XgboostTree& tree : model.trees) {
    const std::vector<int32_t> order = BreadthFirstOrder(tree);
    const int32_t base = static_cast<int32_t>(shap_nodes_.size());
    shap_roots_.push_back(static_cast<uint32_t>(base));
    tree_weights_.push_back(tree.weight);
    std::vector<int32_t> features;
    int32_t next_child = 1;
    for (const int32_t node : order) {
      ShapNode shap{};
      shap.threshold = tree.split_conditions[node];
      shap.cover = tree.sum_hessian[node];
      shap.default_left = tree.default_left[node];
      if (tree.IsLeaf(node)) {
        shap.left = shap.right = -1;
        shap.value = tree.split_conditions[node];
      } else {
        shap.left = base + next_child;
        shap.right = base + next_child + 1;
        shap.feature = tree.split_indices[node];
        next_child += 2;
        features.push_back(shap.feature);
      }
      shap_nodes_.push_back(shap);
    }
    // Children come after their parents, so a reverse sweep sees children first. The float
    // operations follow the definition of XGBoost's node mean values, so the bias rounds alike.
    for (size_t i = order.size(); i-- > 0;) {
      ShapNode& node = shap_nodes_[base + i];
      if (node.left < 0) {
        node.mean = node.value;
      } else {
        const ShapNode& left = shap_nodes_[node.left];
        const ShapNode& right = shap_nodes_[node.right];
        float mean = left.mean * left.cover;
        mean += right.mean * right.cover;
        node.mean = mean / node.cover;
      }
    }
    std::sort(features.begin(), features.end());
    features.erase(std::unique(features.begin(), features.end()), features.end());
    tree_features_.insert(tree_features_.end(), features.begin(), features.end());
    tree_feature_begin_.push_back(static_cast<uint32_t>(tree_features_.size()));
  }
}

template <int kDepth, bool kMissing>
void TreeEnsemble::AddRowPerfect(const float* row, float* margin) const {
  constexpr size_t kStride = size_t{1} << kDepth;
  const size_t num_trees = groups_.size();
  const int32_t* groups = groups_.data();
  const bool single_group = num_groups_ == 1;
  float sum = margin[0];
  size_t t = 0;
  for (; t + kInterleave <= num_trees; t += kInterleave) {
    const PerfectNode* nodes = perfect_nodes_ + t * kStride;
    const uint8_t* default_left = perfect_default_left_.data() + t * kStride;
    uint32_t index[kInterleave];
    for (size_t k = 0; k < kInterleave; ++k) index[k] = 1;
#pragma GCC unroll 16
    for (int level = 0; level < kDepth; ++level) {
#pragma GCC unroll 16
      for (size_t k = 0; k < kInterleave; ++k) {
        const PerfectNode& node = nodes[k * kStride + index[k]];
        const uint32_t left_default = kMissing ? default_left[k * kStride + index[k]] : 0u;
        index[k] =
            2 * index[k] + GoRight<kMissing>(node.threshold, row[node.feature], left_default);
      }
    }
    // Added in tree order, as XGBoost does.
    // A walk ends at heap position kStride + leaf.
    const float* leaves = perfect_leaves_ + t * kStride;
    if (single_group) {
      for (size_t k = 0; k < kInterleave; ++k) sum += leaves[k * kStride + index[k] - kStride];
    } else {
      for (size_t k = 0; k < kInterleave; ++k) {
        margin[groups[t + k]] += leaves[k * kStride + index[k] - kStride];
      }
    }
  }
  for (; t < num_trees; ++t) {
    const PerfectNode* nodes = perfect_nodes_ + t * kStride;
    const uint8_t* default_left = perfect_default_left_.data() + t * kStride;
    uint32_t index = 1;
    for (int level = 0; level < kDepth; ++level) {
      const PerfectNode& node = nodes[index];
      const uint32_t left_default = kMissing ? default_left[index] : 0u;
      index = 2 * index + GoRight<kMissing>(node.threshold, row[node.feature], left_default);
    }
    const float out = perfect_leaves_[t * kStride + index - kStride];
    if (single_group) {
      sum += out;
    } else {
      margin[groups[t]] += out;
    }
  }
  if (single_group) margin[0] = sum;
}

template <bool kMissing>
void TreeEnsemble::AddRowGeneral(const float* row, float* margin) const {
  const size_t num_trees = groups_.size();
  const GeneralNode* nodes = general_nodes_.data();
  const uint8_t* default_left = general_default_left_.data();
  const int32_t* groups = groups_.data();
  const bool single_group = num_groups_ == 1;
  float sum = margin[0];
  size_t t = 0;
  for (; t + kInterleave <= num_trees; t += kInterleave) {
    uint32_t index[kInterleave];
    int32_t depth = 0;
    for (size_t k = 0; k < kInterleave; ++k) {
      index[k] = general_roots_[t + k];
      depth = std::max(depth, general_depths_[t + k]);
    }
    // Walks that reach a leaf early stay on it.
    for (int32_t level = 0; level < depth; ++level) {
#pragma GCC unroll 16
      for (size_t k = 0; k < kInterleave; ++k) {
        const GeneralNode& node = nodes[index[k]];
        const uint32_t left_default = kMissing ? default_left[index[k]] : 0u;
        index[k] = node.left + GoRight<kMissing>(node.threshold, row[node.feature], left_default);
      }
    }
    if (single_group) {
      for (size_t k = 0; k < kInterleave; ++k) sum += nodes[index[k]].value;
    } else {
      for (size_t k = 0; k < kInterleave; ++k) margin[groups[t + k]] += nodes[index[k]].value;
    }
  }
  for (; t < num_trees; ++t) {
    uint32_t index = general_roots_[t];
    for (int32_t level = 0; level < general_depths_[t]; ++level) {
      const GeneralNode& node = nodes[index];
      const uint32_t left_default = kMissing ? default_left[index] : 0u;
      index = node.left + GoRight<kMissing>(node.threshold, row[node.feature], left_default);
    }
    if (single_group) {
      sum += nodes[index].value;
    } else {
      margin[groups[t]] += nodes[index].value;
    }
  }
  if (single_group) margin[0] = sum;
}

template <int kDepth, bool kMissing>
void TreeEnsemble::AddBlocksPerfect(const float* columns, size_t num_blocks, float* margins) const {
  constexpr size_t kStride = size_t{1} << kDepth;
  const size_t num_trees = groups_.size();
  const size_t num_groups = static_cast<size_t>(num_groups_);
  const size_t block_floats = static_cast<size_t>(num_features_) * kInterleave;
  for (size_t t = 0; t < num_trees; ++t) {
    const PerfectNode* nodes = perfect_nodes_ + t * kStride;
    const uint8_t* default_left = perfect_default_left_.data() + t * kStride;
    const float* leaves = perfect_leaves_ + t * kStride;
    float* out = margins + groups_[t];
    for (size_t b = 0; b < num_blocks; ++b) {
      const float* block = columns + b * block_floats;
      uint32_t index[kInterleave];
      for (size_t k = 0; k < kInterleave; ++k) index[k] = 1;
#pragma GCC unroll 16
      for (int level = 0; level < kDepth; ++level) {
#pragma GCC unroll 16
        for (size_t k = 0; k < kInterleave; ++k) {
          const PerfectNode& node = nodes[index[k]];
          const uint32_t left_default = kMissing ? default_left[index[k]] : 0u;
          index[k] =
              2 * index[k] + GoRight<kMissing>(node.threshold,
                                               block[node.feature * kInterleave + k], left_default);
        }
      }
      float* block_out = out + b * kInterleave * num_groups;
      for (size_t k = 0; k < kInterleave; ++k) {
        block_out[k * num_groups] += leaves[index[k] - kStride];
      }
    }
  }
}

template <bool kMissing>
void TreeEnsemble::AddBlocksGeneral(const float* columns, size_t num_blocks, float* margins) const {
  const size_t num_trees = groups_.size();
  const size_t num_groups = static_cast<size_t>(num_groups_);
  const size_t block_floats = static_cast<size_t>(num_features_) * kInterleave;
  const GeneralNode* nodes = general_nodes_.data();
  const uint8_t* default_left = general_default_left_.data();
  for (size_t t = 0; t < num_trees; ++t) {
    const uint32_t root = general_roots_[t];
    const int32_t depth = general_depths_[t];
    float* out = margins + groups_[t];
    for (size_t b = 0; b < num_blocks; ++b) {
      const float* block = columns + b * block_floats;
      uint32_t index[kInterleave];
      for (size_t k = 0; k < kInterleave; ++k) index[k] = root;
      for (int32_t level = 0; level < depth; ++level) {
#pragma GCC unroll 16
        for (size_t k = 0; k < kInterleave; ++k) {
          const GeneralNode& node = nodes[index[k]];
          const uint32_t left_default = kMissing ? default_left[index[k]] : 0u;
          index[k] =
              node.left + GoRight<kMissing>(node.threshold, block[node.feature * kInterleave + k],
                                            left_default);
        }
      }
      float* block_out = out + b * kInterleave * num_groups;
      for (size_t k = 0; k < kInterleave; ++k) block_out[k * num_groups] += nodes[index[k]].value;
    }
  }
}

void TreeEnsemble::AddRow(const float* row, float* margin) const {
  const bool missing = HasNaN(row, static_cast<size_t>(num_features_));
  if (layout_ == Layout::kGeneral) {
    if (missing) {
      AddRowGeneral<true>(row, margin);
    } else {
      AddRowGeneral<false>(row, margin);
    }
    return;
  }
  using RowFn = void (TreeEnsemble::*)(const float*, float*) const;
  static constexpr auto kWithMissing = []<size_t... D>(std::index_sequence<D...>) {
    return std::array<RowFn, sizeof...(D)>{&TreeEnsemble::AddRowPerfect<D, true>...};
  }
  (std::make_index_sequence<kMaxPerfectDepth + 1>());
  static constexpr auto kWithoutMissing = []<size_t... D>(std::index_sequence<D...>) {
    return std::array<RowFn, sizeof...(D)>{&TreeEnsemble::AddRowPerfect<D, false>...};
  }
  (std::make_index_sequence<kMaxPerfectDepth + 1>());
  (this->*(missing ? kWithMissing : kWithoutMissing)[depth_])(row, margin);
}

void TreeEnsemble::AddBatch(const float* rows, size_t num_rows, float* margins) const {
  const size_t num_features = static_cast<size_t>(num_features_);
  const size_t num_groups = static_cast<size_t>(num_groups_);
  const size_t chunk = std::clamp(kChunkFloats / num_features / kInterleave * kInterleave,
                                  kInterleave, kMaxChunkRows);
  std::vector<float>& columns = ColumnScratch();
  if (columns.size() < chunk * num_features) columns.resize(chunk * num_features);

  using BlockFn = void (TreeEnsemble::*)(const float*, size_t, float*) const;
  static constexpr auto kWithMissing = []<size_t... D>(std::index_sequence<D...>) {
    return std::array<BlockFn, sizeof...(D)>{&TreeEnsemble::AddBlocksPerfect<D, true>...};
  }
  (std::make_index_sequence<kMaxPerfectDepth + 1>());
  static constexpr auto kWithoutMissing = []<size_t... D>(std::index_sequence<D...>) {
    return std::array<BlockFn, sizeof...(D)>{&TreeEnsemble::AddBlocksPerfect<D, false>...};
  }
  (std::make_index_sequence<kMaxPerfectDepth + 1>());

  for (size_t begin = 0; begin < num_rows; begin += chunk) {
    const size_t count = std::min(chunk, num_rows - begin);
    const size_t num_blocks = count / kInterleave;
    if (num_blocks > 0) {
      // Blocks of kInterleave rows, each feature-major: feature f of the block's row k at
      // block[f * kInterleave + k], so that the walks of one block read adjacent values.
      const float* source = rows + begin * num_features;
      float* target = columns.data();
      for (size_t b = 0; b < num_blocks; ++b) {
        float* block = target + b * kInterleave * num_features;
        for (size_t k = 0; k < kInterleave; ++k) {
          const float* row = source + (b * kInterleave + k) * num_features;
          for (size_t f = 0; f < num_features; ++f) block[f * kInterleave + k] = row[f];
        }
      }
      const bool missing = HasNaN(source, num_blocks * kInterleave * num_features);
      float* out = margins + begin * num_groups;
      if (layout_ == Layout::kGeneral) {
        if (missing) {
          AddBlocksGeneral<true>(target, num_blocks, out);
        } else {
          AddBlocksGeneral<false>(target, num_blocks, out);
        }
      } else {
        (this->*(missing ? kWithMissing : kWithoutMissing)[depth_])(target, num_blocks, out);
      }
    }
    // The last rows of a batch that do not fill a block.
    for (size_t r = num_blocks * kInterleave; r < count; ++r) {
      AddRow(rows + (begin + r) * num_features, margins + (begin + r) * num_groups);
    }
  }
}

void TreeEnsemble::PredictMargin(std::span<const float> features, std::span<float> margins) const {
  const size_t num_features = static_cast<size_t>(num_features_);
  const size_t num_groups = static_cast<size_t>(num_groups_);
  const size_t rows = features.size() / num_features;
  assert(features.size() == rows * num_features);
  assert(margins.size() == rows * num_groups);
  std::fill(margins.begin(), margins.end(), base_margin_);
  if (rows < kInterleave) {
    for (size_t r = 0; r < rows; ++r) {
      AddRow(features.data() + r * num_features, margins.data() + r * num_groups);
    }
  } else {
    AddBatch(features.data(), rows, margins.data());
  }
}

void TreeEnsemble::TransformMargins(std::span<const float> margins,
                                    std::span<float> predictions) const {
  const size_t num_groups = static_cast<size_t>(num_groups_);
  const size_t rows = margins.size() / num_groups;
  assert(predictions.size() == rows * static_cast<size_t>(prediction_width()));
  const float* in = margins.data();
  float* out = predictions.data();
  switch (objective_) {
    case XgboostObjective::kBinaryLogistic:
    case XgboostObjective::kRegLogistic:
      for (size_t i = 0; i < margins.size(); ++i) out[i] = 1.0f / (1.0f + std::exp(-in[i]));
      return;
    case XgboostObjective::kRegTweedie:
    case XgboostObjective::kRegGamma:
    case XgboostObjective::kCountPoisson:
      for (size_t i = 0; i < margins.size(); ++i) out[i] = std::exp(in[i]);
      return;
    case XgboostObjective::kMultiSoftprob:
      for (size_t r = 0; r < rows; ++r) {
        const float* row_in = in + r * num_groups;
        float* row_out = out + r * num_groups;
        float largest = row_in[0];
        for (size_t g = 1; g < num_groups; ++g) largest = std::fmax(largest, row_in[g]);
        double total = 0.0;  // XGBoost sums the exponentials in double
        for (size_t g = 0; g < num_groups; ++g) {
          row_out[g] = std::exp(row_in[g] - largest);
          total += row_out[g];
        }
        const float norm = static_cast<float>(total);
        for (size_t g = 0; g < num_groups; ++g) row_out[g] /= norm;
      }
      return;
    case XgboostObjective::kMultiSoftmax:
      // Row r's class is written at r, never past the margins still to be read (r * groups).
      for (size_t r = 0; r < rows; ++r) {
        const float* row_in = in + r * num_groups;
        size_t best = 0;
        for (size_t g = 1; g < num_groups; ++g) {
          if (row_in[g] > row_in[best]) best = g;
        }
        out[r] = static_cast<float>(best);
      }
      return;
    case XgboostObjective::kBinaryLogitRaw:
    case XgboostObjective::kRegSquaredError:
    case XgboostObjective::kRegSquaredLogError:
    case XgboostObjective::kRegPseudoHuberError:
    case XgboostObjective::kRegAbsoluteError:
      if (out != in) std::copy(margins.begin(), margins.end(), out);
      return;
  }
}

void TreeEnsemble::Predict(std::span<const float> features, std::span<float> predictions) const {
  if (prediction_width() == num_groups_) {
    PredictMargin(features, predictions);
    TransformMargins(predictions, predictions);
    return;
  }
  // multi:softmax: one class per row from num_groups margins, computed a chunk at a time.
  const size_t num_features = static_cast<size_t>(num_features_);
  const size_t num_groups = static_cast<size_t>(num_groups_);
  const size_t rows = features.size() / num_features;
  std::vector<float>& margins = MarginScratch();
  if (margins.size() < kMaxChunkRows * num_groups) margins.resize(kMaxChunkRows * num_groups);
  for (size_t begin = 0; begin < rows; begin += kMaxChunkRows) {
    const size_t count = std::min(kMaxChunkRows, rows - begin);
    std::span<float> chunk(margins.data(), count * num_groups);
    PredictMargin(features.subspan(begin * num_features, count * num_features), chunk);
    TransformMargins(chunk, predictions.subspan(begin, count));
  }
}

void TreeEnsemble::PredictContributions(std::span<const float> features,
                                        std::span<float> contributions) const {
  const size_t num_features = static_cast<size_t>(num_features_);
  const size_t width = num_features + 1;
  const size_t rows = features.size() / num_features;
  assert(contributions.size() == rows * static_cast<size_t>(num_groups_) * width);
  std::fill(contributions.begin(), contributions.end(), 0.0f);

  // One tree's contributions, added to the row's total after the tree like XGBoost does (so
  // the float sums round the same way). Only the tree's own features are touched.
  std::vector<float> tree_phi(width, 0.0f);
  // Recursion level L owns at most L + 1 path elements, after those of the levels above.
  const size_t levels = static_cast<size_t>(max_tree_depth_) + 2;
  std::vector<PathElement> arena(levels * (levels + 1) / 2 + levels);

  for (size_t r = 0; r < rows; ++r) {
    const float* row = features.data() + r * num_features;
    float* row_out = contributions.data() + r * static_cast<size_t>(num_groups_) * width;
    const ShapContext<ShapNode> context{shap_nodes_.data(), row, tree_phi.data()};
    for (size_t t = 0; t < shap_roots_.size(); ++t) {
      const int32_t* features_begin = tree_features_.data() + tree_feature_begin_[t];
      const int32_t* features_end = tree_features_.data() + tree_feature_begin_[t + 1];
      for (const int32_t* f = features_begin; f != features_end; ++f) tree_phi[*f] = 0.0f;
      const ShapNode& root = shap_nodes_[shap_roots_[t]];
      tree_phi[num_features] = root.mean;
      ShapRecurse(context, static_cast<int32_t>(shap_roots_[t]), arena.data(), 0, 1.0f, 1.0f, -1);
      float* out = row_out + static_cast<size_t>(groups_[t]) * width;
      const float weight = tree_weights_[t];
      for (const int32_t* f = features_begin; f != features_end; ++f) {
        out[*f] += tree_phi[*f] * weight;
      }
      out[num_features] += tree_phi[num_features] * weight;
    }
    for (int64_t g = 0; g < num_groups_; ++g) {
      row_out[static_cast<size_t>(g) * width + num_features] += base_margin_;
    }
  }
}

}  // namespace edgeloop::inference
