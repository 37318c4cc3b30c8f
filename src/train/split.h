// Train / validation / test splits (docs/train.md, "Splits").
//
//  - random: rows are shuffled with a seeded generator of our own (SplitMix64 and Fisher-Yates,
//    so the split is the same on every platform and standard library), then the first
//    round(n * test) rows are the test set, the next round(n * validation) the validation set.
//  - group: the distinct keys of a group column (a machine, a site) are sorted, shuffled with the
//    seed, and whole groups are dealt to test, then validation, until each holds at least its
//    fraction of the rows; the rest train. No key appears in two splits.
//  - time: train on the past, validate and test on the most recent windows. With the rows sorted
//    by time, the test window starts at the time of the row at position floor(n * (1 - test)),
//    the validation window at floor(n * (1 - test - validation)); rows at a cut time go to the
//    later window, so no timestamp straddles two splits.
// Every split lists row indices in ascending order. Pure functions, thread-safe.
#ifndef EDGELOOP_TRAIN_SPLIT_H_
#define EDGELOOP_TRAIN_SPLIT_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace edgeloop::train {

struct SplitFractions {
  double validation = 0.15;
  double test = 0.15;
};

struct Split {
  std::vector<int64_t> train;
  std::vector<int64_t> validation;
  std::vector<int64_t> test;
  // time splits: the first time (microseconds) of the validation and test windows.
  std::optional<int64_t> validation_start;
  std::optional<int64_t> test_start;
};

// kInvalidArgument when a fraction is outside (0, 1), they sum to 1 or more, or a split would
// be empty.
StatusOr<Split> RandomSplit(int64_t num_rows, const SplitFractions& fractions, uint64_t seed);
StatusOr<Split> GroupSplit(std::span<const std::string> groups, const SplitFractions& fractions,
                           uint64_t seed);
// `times` must not hold missing values (the caller refuses them).
StatusOr<Split> TimeSplit(std::span<const int64_t> times, const SplitFractions& fractions);

// A deterministic, portable permutation of [0, n) for `seed`.
std::vector<int64_t> Permutation(int64_t n, uint64_t seed);

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_SPLIT_H_
