// Isolation Forest (Liu, Ting & Zhou, ICDM 2008): the `isolation_forest` TabularDetector.
// Private to the anomaly component; callers use tabular.h.
#ifndef EDGELOOP_ANOMALY_ISOLATION_FOREST_H_
#define EDGELOOP_ANOMALY_ISOLATION_FOREST_H_

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "anomaly/tabular.h"

namespace edgeloop::anomaly {

// An ensemble of isolation trees, flattened: every tree's nodes live in one array, children of a
// node sit next to each other (right = left + 1), and a leaf holds its precomputed path length
// (depth + c(size)). Immutable after construction; Score is thread-safe.
class IsolationForest final : public TabularDetector {
 public:
  // Fits on `n` >= 2 rows (see tabular.h for the parameters and the non-finite rule).
  static StatusOr<std::unique_ptr<IsolationForest>> Fit(const float* rows, int64_t n,
                                                        int64_t num_features, uint64_t seed,
                                                        std::map<std::string, std::string> params);
  // Builds from the parsed JSON object of a serialized forest. kDataLoss on inconsistencies.
  static StatusOr<std::unique_ptr<IsolationForest>> FromJson(const nlohmann::json& doc);

  std::string_view kind() const override { return "isolation_forest"; }
  int64_t num_features() const override { return num_features_; }
  void Score(const float* rows, int64_t n, double* scores) const override;
  std::string Serialize() const override;

  int64_t num_trees() const { return static_cast<int64_t>(roots_.size()); }
  int64_t sample_size() const { return sample_size_; }

  // c(n): the average path length of an unsuccessful search in a binary search tree of n
  // points, 2 H(n-1) - 2 (n-1) / n (c(1) = 0, c(2) = 1).
  static double AveragePathLength(int64_t n);

  struct Node {
    int32_t feature;  // -1 for a leaf
    int32_t left;     // index of the left child (the right child is left + 1); leaf: its size
    double value;     // split threshold, a float value (x < value goes left), or a leaf's path
                      // length depth + c(size)
  };

 private:
  IsolationForest() = default;
  // Recomputes the leaves' path lengths from their sizes and depths, and checks the structure.
  Status Finish();

  int64_t num_features_ = 0;
  uint64_t seed_ = 0;
  int64_t sample_size_ = 0;        // psi, as used (capped at the training rows)
  int64_t features_per_tree_ = 0;  // max_features as a count
  std::vector<float> medians_;     // NaN replacement per feature
  std::vector<Node> nodes_;
  std::vector<int32_t> roots_;  // first node of each tree; tree t ends where t + 1 begins
  double normaliser_ = 1.0;     // c(sample_size_)

  // The scoring layout, built by Finish(): the same nodes, but a leaf points to itself with a
  // NaN threshold, so a walk can take a fixed number of steps (the tree's depth) without
  // testing for leaves, and several rows can walk one tree in lockstep.
  struct WalkNode {
    float threshold;  // x >= threshold goes right; NaN never does
    int32_t feature;  // 0 for a leaf (read, then ignored)
    int32_t left;
  };
  std::vector<WalkNode> walk_;
  std::vector<double> path_length_;  // per node; a leaf's depth + c(size)
  std::vector<int32_t> depths_;      // per tree, the deepest leaf's depth
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_ISOLATION_FOREST_H_
