#include "anomaly/isolation_forest.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <span>
#include <utility>

#include "anomaly/tabular_util.h"

namespace edgeloop::anomaly {

using tabular_internal::AppendFloatArray;
using tabular_internal::AppendNumber;
using tabular_internal::CleanForScore;
using tabular_internal::FeatureStats;
using tabular_internal::Rng;

namespace {

constexpr double kEulerGamma = 0.5772156649015329;
constexpr int64_t kMaxTrees = 10000;
// Node indices are int32; a tree has at most 2 psi - 1 nodes.
constexpr int64_t kMaxSampleSize = int64_t{1} << 24;
// All trees' nodes together (16 + 12 + 8 bytes each); keeps a forest under about 2.5 GB and its
// node indices well inside int32.
constexpr int64_t kMaxNodes = int64_t{1} << 26;

// Fits one tree on a subsample held column by column (`columns[j][r]` is feature
// `features[j]` of subsample row r).
class TreeBuilder {
 public:
  TreeBuilder(const std::vector<std::vector<float>>& columns, const std::vector<int32_t>& features,
              int height_limit, Rng* rng, std::vector<IsolationForest::Node>* nodes)
      : columns_(columns),
        features_(features),
        candidates_(columns.size()),
        height_limit_(height_limit),
        rng_(rng),
        nodes_(nodes) {
    std::iota(candidates_.begin(), candidates_.end(), 0);
  }

  // Builds the tree over subsample rows `rows`; its root becomes the next node.
  void Build(std::vector<int32_t>* rows) {
    rows_ = rows;
    const auto root = static_cast<int32_t>(nodes_->size());
    nodes_->push_back({});
    Grow(root, 0, static_cast<int32_t>(rows->size()), 0);
  }

 private:
  void Grow(int32_t node, int32_t lo, int32_t hi, int depth) {
    if (depth < height_limit_ && hi - lo > 1) {
      // Draw features among those not yet found constant in this node until one can split.
      size_t remaining = candidates_.size();
      while (remaining > 0) {
        const size_t pick = rng_->Below(remaining);
        const std::vector<float>& column = columns_[static_cast<size_t>(candidates_[pick])];
        float min = column[static_cast<size_t>((*rows_)[static_cast<size_t>(lo)])];
        float max = min;
        for (int32_t i = lo + 1; i < hi; ++i) {
          const float v = column[static_cast<size_t>((*rows_)[static_cast<size_t>(i)])];
          min = std::min(min, v);
          max = std::max(max, v);
        }
        if (!(max > min)) {
          std::swap(candidates_[pick], candidates_[remaining - 1]);
          --remaining;
          continue;
        }
        // Uniform in (min, max]: both sides get at least one row under "x < threshold".
        auto threshold = static_cast<float>(static_cast<double>(min) +
                                            rng_->Uniform() * (static_cast<double>(max) - min));
        if (threshold <= min) threshold = std::nextafter(min, max);
        if (threshold > max) threshold = max;
        const auto mid = static_cast<int32_t>(
            std::partition(rows_->begin() + lo, rows_->begin() + hi,
                           [&](int32_t r) { return column[static_cast<size_t>(r)] < threshold; }) -
            rows_->begin());
        const auto left = static_cast<int32_t>(nodes_->size());
        nodes_->push_back({});
        nodes_->push_back({});
        (*nodes_)[static_cast<size_t>(node)] = {features_[static_cast<size_t>(candidates_[pick])],
                                                left, threshold};
        Grow(left, lo, mid, depth + 1);
        Grow(left + 1, mid, hi, depth + 1);
        return;
      }
    }
    (*nodes_)[static_cast<size_t>(node)] = {-1, hi - lo, 0.0};
  }

  const std::vector<std::vector<float>>& columns_;
  const std::vector<int32_t>& features_;
  std::vector<int32_t> candidates_;  // positions in features_, permuted as features are drawn
  const int height_limit_;
  Rng* rng_;
  std::vector<IsolationForest::Node>* nodes_;
  std::vector<int32_t>* rows_ = nullptr;
};

// max_features as scikit-learn reads it: text with '.', 'e' or 'E' is a fraction of the
// features, an integer is a count.
StatusOr<int64_t> FeaturesPerTree(std::map<std::string, std::string>* params,
                                  int64_t num_features) {
  auto it = params->find("max_features");
  if (it == params->end()) return num_features;
  if (it->second.find_first_of(".eE") == std::string::npos) {
    return tabular_internal::TakeInt(params, "max_features", num_features, 1, num_features);
  }
  ASSIGN_OR_RETURN(const double fraction,
                   tabular_internal::TakeDouble(params, "max_features", 1.0, 0.0, 1.0));
  if (fraction <= 0) {
    return InvalidArgumentError("parameter max_features must be a fraction in (0, 1]");
  }
  return std::max<int64_t>(1, static_cast<int64_t>(fraction * static_cast<double>(num_features)));
}

// A node field that must be an integer in [min, max].
StatusOr<int64_t> IntIn(const nlohmann::json& value, int64_t min, int64_t max,
                        std::string_view what) {
  if (!value.is_number_integer()) {
    return DataLossError("isolation_forest: node " + std::string(what) + " is not an integer");
  }
  const auto v = value.get<int64_t>();
  if (v < min || v > max) {
    return DataLossError("isolation_forest: node " + std::string(what) + " " + std::to_string(v) +
                         " out of range");
  }
  return v;
}

}  // namespace

double IsolationForest::AveragePathLength(int64_t n) {
  if (n <= 1) return 0.0;
  if (n == 2) return 1.0;
  const auto m = static_cast<double>(n - 1);
  return 2.0 * (std::log(m) + kEulerGamma) - 2.0 * m / static_cast<double>(n);
}

StatusOr<std::unique_ptr<IsolationForest>> IsolationForest::Fit(
    const float* rows, int64_t n, int64_t num_features, uint64_t seed,
    std::map<std::string, std::string> params) {
  if (n < 2) {
    return InvalidArgumentError("isolation_forest needs at least 2 training rows, got " +
                                std::to_string(n));
  }
  ASSIGN_OR_RETURN(const int64_t n_trees,
                   tabular_internal::TakeInt(&params, "n_trees", 100, 1, kMaxTrees));
  ASSIGN_OR_RETURN(const int64_t sample_size,
                   tabular_internal::TakeInt(&params, "sample_size", 256, 2, kMaxSampleSize));
  ASSIGN_OR_RETURN(const int64_t per_tree, FeaturesPerTree(&params, num_features));
  RETURN_IF_ERROR(tabular_internal::RejectUnknown(params, "isolation_forest"));
  if (n_trees * (2 * std::min(sample_size, n) - 1) > kMaxNodes) {
    return InvalidArgumentError("n_trees * sample_size is too large (a forest may have at most " +
                                std::to_string(kMaxNodes) + " nodes)");
  }

  auto forest = std::unique_ptr<IsolationForest>(new IsolationForest());
  forest->num_features_ = num_features;
  forest->seed_ = seed;
  forest->sample_size_ = std::min(sample_size, n);
  forest->features_per_tree_ = per_tree;
  const FeatureStats stats = tabular_internal::ComputeFeatureStats(rows, n, num_features);
  forest->medians_ = stats.median;

  const auto psi = static_cast<size_t>(forest->sample_size_);
  const int height_limit =
      static_cast<int>(std::ceil(std::log2(static_cast<double>(forest->sample_size_))));
  std::vector<int64_t> permutation(static_cast<size_t>(n));
  std::iota(permutation.begin(), permutation.end(), 0);
  std::vector<int32_t> all_features(static_cast<size_t>(num_features));
  std::iota(all_features.begin(), all_features.end(), 0);
  std::vector<int32_t> features(static_cast<size_t>(per_tree));
  std::vector<std::vector<float>> columns(features.size(), std::vector<float>(psi));
  std::vector<int32_t> subsample(psi);
  forest->nodes_.reserve(static_cast<size_t>(n_trees) * (2 * psi - 1));
  for (int64_t t = 0; t < n_trees; ++t) {
    Rng rng(tabular_internal::Mix(seed ^ tabular_internal::Mix(static_cast<uint64_t>(t))));
    // Partial Fisher-Yates: the first psi entries become a uniform sample without replacement
    // (whatever order earlier trees left the permutation in).
    for (size_t i = 0; i < psi; ++i) {
      const size_t j = i + rng.Below(static_cast<uint64_t>(n) - i);
      std::swap(permutation[i], permutation[j]);
    }
    for (size_t i = 0; i < features.size(); ++i) {
      const size_t j = i + rng.Below(all_features.size() - i);
      std::swap(all_features[i], all_features[j]);
      features[i] = all_features[i];
    }
    for (size_t j = 0; j < features.size(); ++j) {
      tabular_internal::GatherCleanColumn(rows, num_features,
                                          std::span<const int64_t>(permutation.data(), psi),
                                          features[j], stats, columns[j].data());
    }
    std::iota(subsample.begin(), subsample.end(), 0);
    forest->roots_.push_back(static_cast<int32_t>(forest->nodes_.size()));
    TreeBuilder(columns, features, height_limit, &rng, &forest->nodes_).Build(&subsample);
  }
  RETURN_IF_ERROR(forest->Finish());
  return forest;
}

Status IsolationForest::Finish() {
  normaliser_ = AveragePathLength(sample_size_);
  if (roots_.empty()) return DataLossError("isolation_forest has no trees");
  if (!(normaliser_ > 0)) return DataLossError("isolation_forest sample_size must be at least 2");
  const auto total = static_cast<int32_t>(nodes_.size());
  std::vector<int32_t> depth(nodes_.size(), -1);
  for (size_t t = 0; t < roots_.size(); ++t) {
    const int32_t begin = roots_[t];
    const int32_t end = t + 1 < roots_.size() ? roots_[t + 1] : total;
    if (begin >= end || end > total) return DataLossError("isolation_forest tree is empty");
    // Children always come after their parent, so one forward pass sees every parent first;
    // a node reached twice, or never, means the links do not form a tree.
    depth[static_cast<size_t>(begin)] = 0;
    for (int32_t i = begin; i < end; ++i) {
      Node& node = nodes_[static_cast<size_t>(i)];
      const std::string where =
          "isolation_forest tree " + std::to_string(t) + " node " + std::to_string(i - begin);
      if (depth[static_cast<size_t>(i)] < 0) return DataLossError(where + " is unreachable");
      if (node.feature < 0) {
        if (node.left < 1 || node.left > sample_size_) {
          return DataLossError(where + ": leaf size out of range");
        }
        node.value = depth[static_cast<size_t>(i)] + AveragePathLength(node.left);
        continue;
      }
      if (node.feature >= num_features_) return DataLossError(where + ": feature out of range");
      if (!std::isfinite(node.value)) return DataLossError(where + ": threshold is not finite");
      if (node.left <= i || node.left + 1 >= end) {
        return DataLossError(where + ": child index out of range");
      }
      for (int32_t child : {node.left, node.left + 1}) {
        if (depth[static_cast<size_t>(child)] >= 0) {
          return DataLossError(where + ": a child has two parents");
        }
        depth[static_cast<size_t>(child)] = depth[static_cast<size_t>(i)] + 1;
      }
    }
  }
  walk_.resize(nodes_.size());
  path_length_.assign(nodes_.size(), 0.0);
  depths_.assign(roots_.size(), 0);
  for (size_t t = 0; t < roots_.size(); ++t) {
    const size_t begin = static_cast<size_t>(roots_[t]);
    const size_t end = t + 1 < roots_.size() ? static_cast<size_t>(roots_[t + 1]) : nodes_.size();
    for (size_t i = begin; i < end; ++i) {
      const Node& node = nodes_[i];
      if (node.feature < 0) {
        walk_[i] = {std::numeric_limits<float>::quiet_NaN(), 0, static_cast<int32_t>(i)};
        path_length_[i] = node.value;
        depths_[t] = std::max(depths_[t], depth[i]);
      } else {
        walk_[i] = {static_cast<float>(node.value), node.feature, node.left};
      }
    }
  }
  return Status::Ok();
}

void IsolationForest::Score(const float* rows, int64_t n, double* scores) const {
  // Blocks of rows walk one tree after another, so each tree's nodes stay in cache, and kLanes
  // rows walk a tree together: their loads are independent, so their cache and branch misses
  // overlap instead of adding up.
  constexpr int64_t kBlock = 64;
  constexpr int kLanes = 8;
  const auto d = static_cast<size_t>(num_features_);
  const WalkNode* walk = walk_.data();
  const double* path_length = path_length_.data();
  const float* medians = medians_.data();
  const auto trees = static_cast<double>(roots_.size());
  double total[kBlock];
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t count = std::min(kBlock, n - start);
    std::fill(total, total + count, 0.0);
    const float* block = rows + static_cast<size_t>(start) * d;
    for (size_t t = 0; t < roots_.size(); ++t) {
      const int32_t root = roots_[t];
      const int32_t depth = depths_[t];
      int64_t r = 0;
      for (; r + kLanes <= count; r += kLanes) {
        int32_t at[kLanes];
        for (int k = 0; k < kLanes; ++k) at[k] = root;
        for (int32_t step = 0; step < depth; ++step) {
          for (int k = 0; k < kLanes; ++k) {
            const WalkNode& node = walk[at[k]];
            float v = block[static_cast<size_t>(r + k) * d + static_cast<size_t>(node.feature)];
            v = CleanForScore(v, medians[node.feature]);
            at[k] = node.left + (v >= node.threshold ? 1 : 0);
          }
        }
        for (int k = 0; k < kLanes; ++k) total[r + k] += path_length[at[k]];
      }
      for (; r < count; ++r) {
        const float* row = block + static_cast<size_t>(r) * d;
        int32_t at = root;
        for (int32_t step = 0; step < depth; ++step) {
          const WalkNode& node = walk[at];
          float v = row[node.feature];
          v = CleanForScore(v, medians[node.feature]);
          at = node.left + (v >= node.threshold ? 1 : 0);
        }
        total[r] += path_length[at];
      }
    }
    for (int64_t i = 0; i < count; ++i) {
      scores[start + i] = std::exp2(-(total[i] / trees) / normaliser_);
    }
  }
}

std::string IsolationForest::Serialize() const {
  std::string out;
  out.reserve(64 + nodes_.size() * 24);
  out += "{\"format\":\"";
  out += tabular_internal::kFormat;
  out += "\",\"version\":";
  AppendNumber(&out, int64_t{tabular_internal::kFormatVersion});
  out += ",\"kind\":\"isolation_forest\",\"num_features\":";
  AppendNumber(&out, num_features_);
  out += ",\"seed\":";
  out += std::to_string(seed_);
  out += ",\"sample_size\":";
  AppendNumber(&out, sample_size_);
  out += ",\"features_per_tree\":";
  AppendNumber(&out, features_per_tree_);
  out += ",\"medians\":";
  AppendFloatArray(&out, medians_);
  // One array per tree, one entry per node: [feature, threshold, left child] for a split
  // (indices within the tree), [size] for a leaf.
  out += ",\"trees\":[";
  for (size_t t = 0; t < roots_.size(); ++t) {
    if (t > 0) out += ",";
    const int32_t begin = roots_[t];
    const auto end = t + 1 < roots_.size() ? roots_[t + 1] : static_cast<int32_t>(nodes_.size());
    out += "[";
    for (int32_t i = begin; i < end; ++i) {
      const Node& node = nodes_[static_cast<size_t>(i)];
      if (i > begin) out += ",";
      out += "[";
      if (node.feature < 0) {
        AppendNumber(&out, int64_t{node.left});
      } else {
        AppendNumber(&out, int64_t{node.feature});
        out += ",";
        AppendNumber(&out, node.value);
        out += ",";
        AppendNumber(&out, int64_t{node.left - begin});
      }
      out += "]";
    }
    out += "]";
  }
  out += "]}";
  return out;
}

StatusOr<std::unique_ptr<IsolationForest>> IsolationForest::FromJson(const nlohmann::json& doc) {
  auto forest = std::unique_ptr<IsolationForest>(new IsolationForest());
  try {
    forest->num_features_ = doc.at("num_features").get<int64_t>();
    forest->seed_ = doc.at("seed").get<uint64_t>();
    forest->sample_size_ = doc.at("sample_size").get<int64_t>();
    forest->features_per_tree_ = doc.at("features_per_tree").get<int64_t>();
    if (forest->num_features_ < 1 || forest->sample_size_ < 2 ||
        forest->sample_size_ > kMaxSampleSize || forest->features_per_tree_ < 1 ||
        forest->features_per_tree_ > forest->num_features_) {
      return DataLossError(
          "isolation_forest: num_features, sample_size or features_per_tree "
          "out of range");
    }
    forest->medians_ = doc.at("medians").get<std::vector<float>>();
    for (float m : forest->medians_) {
      if (!std::isfinite(m)) return DataLossError("isolation_forest: a median is not finite");
    }
    if (static_cast<int64_t>(forest->medians_.size()) != forest->num_features_) {
      return DataLossError("isolation_forest: medians has " +
                           std::to_string(forest->medians_.size()) + " entries for " +
                           std::to_string(forest->num_features_) + " features");
    }
    const nlohmann::json& trees = doc.at("trees");
    if (!trees.is_array() || trees.empty() || trees.size() > kMaxTrees) {
      return DataLossError("isolation_forest: trees must be a non-empty array of at most " +
                           std::to_string(kMaxTrees));
    }
    for (const nlohmann::json& tree : trees) {
      if (!tree.is_array() || tree.empty() ||
          static_cast<int64_t>(tree.size()) > 2 * forest->sample_size_ - 1) {
        return DataLossError(
            "isolation_forest: a tree must be a non-empty array of at most "
            "2 * sample_size - 1 nodes");
      }
      if (static_cast<int64_t>(forest->nodes_.size() + tree.size()) > kMaxNodes) {
        return DataLossError("isolation_forest: more than " + std::to_string(kMaxNodes) + " nodes");
      }
      const auto begin = static_cast<int32_t>(forest->nodes_.size());
      forest->roots_.push_back(begin);
      for (const nlohmann::json& node : tree) {
        if (!node.is_array()) return DataLossError("isolation_forest: a node must be an array");
        if (node.size() == 1) {
          ASSIGN_OR_RETURN(const int64_t size, IntIn(node[0], 1, forest->sample_size_, "size"));
          forest->nodes_.push_back({-1, static_cast<int32_t>(size), 0.0});
        } else if (node.size() == 3) {
          ASSIGN_OR_RETURN(const int64_t feature,
                           IntIn(node[0], 0, forest->num_features_ - 1, "feature"));
          const double threshold = node[1].get<double>();
          ASSIGN_OR_RETURN(const int64_t left,
                           IntIn(node[2], 1, static_cast<int64_t>(tree.size()) - 2, "child"));
          forest->nodes_.push_back({static_cast<int32_t>(feature),
                                    begin + static_cast<int32_t>(left),
                                    static_cast<double>(static_cast<float>(threshold))});
        } else {
          return DataLossError(
              "isolation_forest: a node must be [size] or "
              "[feature, threshold, left]");
        }
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return DataLossError(std::string("isolation_forest: ") + e.what());
  }
  RETURN_IF_ERROR(forest->Finish());
  return forest;
}

}  // namespace edgeloop::anomaly
