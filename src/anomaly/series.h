// Series and SeriesTable: per-series streaming state with the input rules, and the bounded,
// thread-safe table of series that a served streaming model keeps.
//
// Input rules (one series, in arrival order):
//  - NaN or infinite value: rejected (kInvalidArgument); the series is unchanged.
//  - timestamp earlier than the series' last one (out of order): rejected (kInvalidArgument).
//  - the same timestamp as the last one (a duplicate): with the same value it is a redelivery,
//    answered with the last score and verdict without learning from it again; with a different
//    value it is rejected (kInvalidArgument).
// A row with an empty series key is a probe (the server's warm-up sends one): it scores 0 and
// touches no state.
// SeriesTable::Observe applies a batch all-or-nothing: when any row breaks a rule, no row is
// applied.
#ifndef EDGELOOP_ANOMALY_SERIES_H_
#define EDGELOOP_ANOMALY_SERIES_H_

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "anomaly/detector.h"

namespace edgeloop::anomaly {

struct Verdict {
  double score = 0;
  bool anomaly = false;
};

// One series: its detector plus the last point. Thread-compatible.
class Series {
 public:
  static StatusOr<std::unique_ptr<Series>> Create(const DetectorOptions& options);

  // Whether (timestamp, value) may follow (last_timestamp, last_value) under the rules above;
  // `has_last` false for a new series. Sets *duplicate for an accepted redelivery.
  static Status Check(bool has_last, int64_t last_timestamp, double last_value, int64_t timestamp,
                      double value, bool* duplicate);

  // Applies a point that passed Check.
  Verdict Observe(int64_t timestamp, double value);

  bool has_last() const { return points_ > 0; }
  int64_t last_timestamp() const { return last_timestamp_; }
  double last_value() const { return last_value_; }
  int64_t points() const { return points_; }

  void SaveState(StateWriter* out) const;
  Status LoadState(StateReader* in);

 private:
  Series(std::unique_ptr<Detector> detector, double threshold)
      : detector_(std::move(detector)), threshold_(threshold) {}

  std::unique_ptr<Detector> detector_;
  double threshold_;
  int64_t points_ = 0;
  int64_t last_timestamp_ = 0;
  double last_value_ = 0;
  Verdict last_verdict_;
};

struct SeriesTableOptions {
  DetectorOptions detector;
  // At most this many series are kept; the least recently used is evicted (and counted).
  int64_t max_series = 10000;
  int shards = 16;
};

// Thread-safe. Series are sharded by key, one mutex per shard; a batch locks the shards it
// touches in index order.
class SeriesTable {
 public:
  static StatusOr<std::unique_ptr<SeriesTable>> Create(const SeriesTableOptions& options);

  // Scores rows in order: row i is (keys[i], timestamps[i] in epoch ms, values[i]). All spans
  // have the same length. On success `out` holds one verdict per row; on kInvalidArgument
  // (naming the row and rule) nothing was applied.
  Status Observe(std::span<const std::string> keys, std::span<const int64_t> timestamps,
                 std::span<const double> values, std::vector<Verdict>* out);

  // The whole table as a checkpoint: magic, version, the detector options' fingerprint, every
  // series (least recently used first), and an FNV-1a checksum.
  std::string Encode() const;
  // Replaces the table's content with a checkpoint's. kDataLoss for a corrupt or truncated
  // checkpoint, kFailedPrecondition when it was written under other detector options; the
  // table is left empty on error.
  Status Decode(std::string_view checkpoint);

  int64_t size() const;
  int64_t evictions() const { return evictions_.load(); }
  // Points applied since creation (redeliveries excluded).
  int64_t points() const { return points_.load(); }

 private:
  struct Entry {
    std::string key;
    std::unique_ptr<Series> series;
  };
  struct Shard {
    mutable std::mutex mu;
    std::list<Entry> lru;  // GUARDED_BY(mu); most recent first
    std::unordered_map<std::string_view, std::list<Entry>::iterator> index;  // GUARDED_BY(mu)
  };
  explicit SeriesTable(const SeriesTableOptions& options);
  size_t ShardOf(std::string_view key) const;
  // Finds or creates `key` in `shard` (locked), moving it to the front; evicts beyond the cap.
  StatusOr<Series*> Touch(Shard* shard, const std::string& key);

  const SeriesTableOptions options_;
  const int64_t per_shard_cap_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<int64_t> evictions_{0};
  std::atomic<int64_t> points_{0};
};

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_SERIES_H_
