#include "inference/tree_ensemble.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

namespace edgeloop::inference {

// feature_flags: the split feature in the low 31 bits, "missing goes left" in the top bit.
struct TreeEnsemble::PerfectNode {
  uint32_t feature_flags;
  float threshold;
};

// Children are `left` and `left + 1`. A leaf has left == itself, feature 0, threshold NaN and
// the default-left bit, so any value, missing or not, keeps a walk on the leaf.
struct TreeEnsemble::GeneralNode {
  float threshold;
  uint32_t feature_flags;
  uint32_t left;
  float value;  // leaves: the output, scaled by the dart weight
};

struct TreeEnsemble::ShapNode {
  int32_t left;   // -1 for leaves; indices are into shap_nodes_
  int32_t right;
  int32_t feature;
  float threshold;
  float cover;
  float value;  // leaves: the unscaled output
  float mean;   // cover-weighted mean of the leaves below (the expected output)
  uint8_t default_left;
};

namespace {

constexpr uint32_t kDefaultLeftBit = 1u << 31;
constexpr uint32_t kFeatureMask = kDefaultLeftBit - 1;
// Independent walks in flight: enough to overlap the load latencies of a walk step, few enough
// that the walk indices stay in registers.
constexpr int kInterleave = 8;
// Rows per batch chunk: the chunk's feature-major copy and each tree stay in L1 together.
constexpr size_t kMaxChunkRows = 64;
constexpr size_t kChunkFloats = 16384;

// 1 when a walk at a node with these flags and threshold continues to the right child.
// XGBoost goes left when value < threshold; missing (NaN) values follow the default child.
template <bool kMissing>
inline uint32_t GoRight(uint32_t feature_flags, float threshold, float value) {
  if constexpr (kMissing) {
    const uint32_t unordered = std::isunordered(value, threshold) ? 1u : 0u;
    const uint32_t ge = value >= threshold ? 1u : 0u;
    return ge | (unordered & ~(feature_flags >> 31));
  } else {
    // Without NaN in the row, !(value < threshold) == (value >= threshold); thresholds are
    // never NaN on internal nodes, and the NaN threshold of a kGeneral leaf keeps it in place.
    return value >= threshold ? 1u : 0u;
  }
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

uint32_t FeatureFlags(const XgboostTree& tree, int32_t node) {
  return static_cast<uint32_t>(tree.split_indices[node]) |
         (tree.default_left[node] ? kDefaultLeftBit : 0u);
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
void ShapRecurse(const ShapContext<Node>& context, int32_t node_index,
                 const PathElement* parent, int parent_length, float zero_fraction,
                 float one_fraction, int32_t feature) {
  PathElement* path = const_cast<PathElement*>(parent) + parent_length;
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
  const size_t perfect_bytes = model.trees.size() * ((size_t{1} << max_depth) * 12);
  const bool perfect_cheap = perfect_bytes <= 2 * 16 * reachable_nodes;
  Layout layout = options.layout;
  if (layout == Layout::kAuto) {
    layout = perfect_possible && perfect_cheap ? Layout::kPerfect : Layout::kGeneral;
  }
  if (layout == Layout::kPerfect && !perfect_possible) {
    return InvalidArgumentError("the perfect layout needs trees of depth <= " +
                                std::to_string(kMaxPerfectDepth) + ", the model has depth " +
                                std::to_string(max_depth));
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
  const size_t internal = (size_t{1} << depth) - 1;
  const size_t leaves = internal + 1;
  perfect_nodes_.assign(model.trees.size() * internal, PerfectNode{0, 0.0f});
  perfect_leaves_.assign(model.trees.size() * leaves, 0.0f);
  struct Item {
    int32_t source;   // node in the stored tree
    uint32_t target;  // heap position in the padded tree
    int level;
  };
  std::vector<Item> stack;
  for (size_t t = 0; t < model.trees.size(); ++t) {
    const XgboostTree& tree = model.trees[t];
    PerfectNode* nodes = perfect_nodes_.data() + t * internal;
    float* tree_leaves = perfect_leaves_.data() + t * leaves;
    stack.push_back({0, 0, 0});
    while (!stack.empty()) {
      const Item item = stack.back();
      stack.pop_back();
      if (item.level == depth) {
        // No tree is deeper than depth_, so this is a leaf.
        assert(tree.IsLeaf(item.source));
        tree_leaves[item.target - internal] = tree.split_conditions[item.source] * tree.weight;
        continue;
      }
      int32_t left = item.source;
      int32_t right = item.source;
      if (!tree.IsLeaf(item.source)) {
        nodes[item.target] = {FeatureFlags(tree, item.source),
                              WalkThreshold(tree.split_conditions[item.source])};
        left = tree.left_children[item.source];
        right = tree.right_children[item.source];
      }
      // A leaf above the last level is copied into both subtrees of a padding node, so the
      // padding node's split (feature 0, threshold 0) does not matter.
      stack.push_back({left, 2 * item.target + 1, item.level + 1});
      stack.push_back({right, 2 * item.target + 2, item.level + 1});
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
        general_nodes_.push_back({std::numeric_limits<float>::quiet_NaN(), kDefaultLeftBit,
                                  base + static_cast<uint32_t>(i),
                                  tree.split_conditions[node] * tree.weight});
      } else {
        general_nodes_.push_back({WalkThreshold(tree.split_conditions[node]),
                                  FeatureFlags(tree, node), base + next_child, 0.0f});
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
    // Children come after their parents, so a reverse sweep sees children first. Same float
    // operations as XGBoost's node mean values, so the bias matches it bit for bit.
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
  constexpr size_t kInternal = (size_t{1} << kDepth) - 1;
  constexpr size_t kLeaves = kInternal + 1;
  const size_t num_trees = groups_.size();
  const PerfectNode* nodes = perfect_nodes_.data();
  const float* leaves = perfect_leaves_.data();
  const int32_t* groups = groups_.data();
  const bool single_group = num_groups_ == 1;
  float sum = margin[0];
  size_t t = 0;
  for (; t + kInterleave <= num_trees; t += kInterleave) {
    const PerfectNode* block = nodes + t * kInternal;
    uint32_t index[kInterleave] = {};
#pragma GCC unroll 16
    for (int level = 0; level < kDepth; ++level) {
#pragma GCC unroll 16
      for (int k = 0; k < kInterleave; ++k) {
        const PerfectNode node = block[k * kInternal + index[k]];
        const float value = row[node.feature_flags & kFeatureMask];
        index[k] = 2 * index[k] + 1 + GoRight<kMissing>(node.feature_flags, node.threshold, value);
      }
    }
    const float* leaf_block = leaves + t * kLeaves;
    float out[kInterleave];
    for (int k = 0; k < kInterleave; ++k) out[k] = leaf_block[k * kLeaves + index[k] - kInternal];
    // Added in tree order, as XGBoost does.
    if (single_group) {
      for (int k = 0; k < kInterleave; ++k) sum += out[k];
    } else {
      for (int k = 0; k < kInterleave; ++k) margin[groups[t + k]] += out[k];
    }
  }
  for (; t < num_trees; ++t) {
    const PerfectNode* tree = nodes + t * kInternal;
    uint32_t index = 0;
    for (int level = 0; level < kDepth; ++level) {
      const PerfectNode node = tree[index];
      const float value = row[node.feature_flags & kFeatureMask];
      index = 2 * index + 1 + GoRight<kMissing>(node.feature_flags, node.threshold, value);
    }
    const float out = leaves[t * kLeaves + index - kInternal];
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
  const int32_t* groups = groups_.data();
  const bool single_group = num_groups_ == 1;
  float sum = margin[0];
  size_t t = 0;
  for (; t + kInterleave <= num_trees; t += kInterleave) {
    uint32_t index[kInterleave];
    int32_t depth = 0;
    for (int k = 0; k < kInterleave; ++k) {
      index[k] = general_roots_[t + k];
      depth = std::max(depth, general_depths_[t + k]);
    }
    // Walks that reach a leaf early stay on it.
    for (int32_t level = 0; level < depth; ++level) {
#pragma GCC unroll 16
      for (int k = 0; k < kInterleave; ++k) {
        const GeneralNode& node = nodes[index[k]];
        const float value = row[node.feature_flags & kFeatureMask];
        index[k] = node.left + GoRight<kMissing>(node.feature_flags, node.threshold, value);
      }
    }
    float out[kInterleave];
    for (int k = 0; k < kInterleave; ++k) out[k] = nodes[index[k]].value;
    if (single_group) {
      for (int k = 0; k < kInterleave; ++k) sum += out[k];
    } else {
      for (int k = 0; k < kInterleave; ++k) margin[groups[t + k]] += out[k];
    }
  }
  for (; t < num_trees; ++t) {
    uint32_t index = general_roots_[t];
    for (int32_t level = 0; level < general_depths_[t]; ++level) {
      const GeneralNode& node = nodes[index];
      const float value = row[node.feature_flags & kFeatureMask];
      index = node.left + GoRight<kMissing>(node.feature_flags, node.threshold, value);
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
void TreeEnsemble::AddBlockPerfect(const float* columns, size_t stride, size_t num_rows,
                                   float* margins) const {
  constexpr size_t kInternal = (size_t{1} << kDepth) - 1;
  constexpr size_t kLeaves = kInternal + 1;
  const size_t num_trees = groups_.size();
  const size_t num_groups = static_cast<size_t>(num_groups_);
  for (size_t t = 0; t < num_trees; ++t) {
    const PerfectNode* tree = perfect_nodes_.data() + t * kInternal;
    const float* leaves = perfect_leaves_.data() + t * kLeaves;
    float* out = margins + groups_[t];
    for (size_t first = 0; first < num_rows; first += kInterleave) {
      const float* block = columns + first;
      uint32_t index[kInterleave] = {};
#pragma GCC unroll 16
      for (int level = 0; level < kDepth; ++level) {
#pragma GCC unroll 16
        for (int k = 0; k < kInterleave; ++k) {
          const PerfectNode node = tree[index[k]];
          const float value = block[(node.feature_flags & kFeatureMask) * stride + k];
          index[k] =
              2 * index[k] + 1 + GoRight<kMissing>(node.feature_flags, node.threshold, value);
        }
      }
      for (int k = 0; k < kInterleave; ++k) {
        out[(first + k) * num_groups] += leaves[index[k] - kInternal];
      }
    }
  }
}

template <bool kMissing>
void TreeEnsemble::AddBlockGeneral(const float* columns, size_t stride, size_t num_rows,
                                   float* margins) const {
  const size_t num_trees = groups_.size();
  const size_t num_groups = static_cast<size_t>(num_groups_);
  const GeneralNode* nodes = general_nodes_.data();
  for (size_t t = 0; t < num_trees; ++t) {
    const uint32_t root = general_roots_[t];
    const int32_t depth = general_depths_[t];
    float* out = margins + groups_[t];
    for (size_t first = 0; first < num_rows; first += kInterleave) {
      const float* block = columns + first;
      uint32_t index[kInterleave];
      for (int k = 0; k < kInterleave; ++k) index[k] = root;
      for (int32_t level = 0; level < depth; ++level) {
#pragma GCC unroll 16
        for (int k = 0; k < kInterleave; ++k) {
          const GeneralNode& node = nodes[index[k]];
          const float value = block[(node.feature_flags & kFeatureMask) * stride + k];
          index[k] = node.left + GoRight<kMissing>(node.feature_flags, node.threshold, value);
        }
      }
      for (int k = 0; k < kInterleave; ++k) {
        out[(first + k) * num_groups] += nodes[index[k]].value;
      }
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
  }(std::make_index_sequence<kMaxPerfectDepth + 1>());
  static constexpr auto kWithoutMissing = []<size_t... D>(std::index_sequence<D...>) {
    return std::array<RowFn, sizeof...(D)>{&TreeEnsemble::AddRowPerfect<D, false>...};
  }(std::make_index_sequence<kMaxPerfectDepth + 1>());
  (this->*(missing ? kWithMissing : kWithoutMissing)[depth_])(row, margin);
}

void TreeEnsemble::AddBatch(const float* rows, size_t num_rows, float* margins) const {
  const size_t num_features = static_cast<size_t>(num_features_);
  const size_t num_groups = static_cast<size_t>(num_groups_);
  const size_t chunk = std::clamp(kChunkFloats / num_features / kInterleave * kInterleave,
                                  static_cast<size_t>(kInterleave), kMaxChunkRows);
  std::vector<float>& columns = ColumnScratch();
  if (columns.size() < chunk * num_features) columns.resize(chunk * num_features);

  using BlockFn = void (TreeEnsemble::*)(const float*, size_t, size_t, float*) const;
  static constexpr auto kWithMissing = []<size_t... D>(std::index_sequence<D...>) {
    return std::array<BlockFn, sizeof...(D)>{&TreeEnsemble::AddBlockPerfect<D, true>...};
  }(std::make_index_sequence<kMaxPerfectDepth + 1>());
  static constexpr auto kWithoutMissing = []<size_t... D>(std::index_sequence<D...>) {
    return std::array<BlockFn, sizeof...(D)>{&TreeEnsemble::AddBlockPerfect<D, false>...};
  }(std::make_index_sequence<kMaxPerfectDepth + 1>());

  for (size_t begin = 0; begin < num_rows; begin += chunk) {
    const size_t count = std::min(chunk, num_rows - begin);
    const size_t blocked = count / kInterleave * kInterleave;
    if (blocked > 0) {
      // Feature-major copy: the rows of a block are then adjacent for every feature.
      const float* source = rows + begin * num_features;
      float* target = columns.data();
      for (size_t r = 0; r < blocked; ++r) {
        for (size_t f = 0; f < num_features; ++f) {
          target[f * blocked + r] = source[r * num_features + f];
        }
      }
      const bool missing = HasNaN(source, blocked * num_features);
      float* out = margins + begin * num_groups;
      if (layout_ == Layout::kGeneral) {
        if (missing) {
          AddBlockGeneral<true>(target, blocked, blocked, out);
        } else {
          AddBlockGeneral<false>(target, blocked, blocked, out);
        }
      } else {
        (this->*(missing ? kWithMissing : kWithoutMissing)[depth_])(target, blocked, blocked,
                                                                     out);
      }
    }
    for (size_t r = blocked; r < count; ++r) {
      AddRow(rows + (begin + r) * num_features, margins + (begin + r) * num_groups);
    }
  }
}

void TreeEnsemble::PredictMargin(std::span<const float> features,
                                 std::span<float> margins) const {
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
      ShapRecurse(context, static_cast<int32_t>(shap_roots_[t]), arena.data(), 0, 1.0f, 1.0f,
                  -1);
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
