#include "anomaly/series.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

namespace edgeloop::anomaly {
namespace {

constexpr std::string_view kMagic = "EDGELOOP-ANOMALY-STATE\n";
// 2: the context detector's state holds its moving-average stream and range watch, and its
// history holds values (version 1 held them truncated to integers).
constexpr uint32_t kVersion = 2;
// A key longer than this is refused (it would be a bug or an attack, not a sensor name).
constexpr size_t kMaxKeyBytes = 1024;

}  // namespace

StatusOr<std::unique_ptr<Series>> Series::Create(const DetectorOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Detector> detector, CreateDetector(options));
  return std::unique_ptr<Series>(new Series(std::move(detector), options.threshold));
}

Status Series::Check(bool has_last, int64_t last_timestamp, double last_value, int64_t timestamp,
                     double value, bool* duplicate) {
  *duplicate = false;
  if (!std::isfinite(value)) {
    return InvalidArgumentError("value is " + std::string(std::isnan(value) ? "NaN" : "infinite") +
                                " (only finite values are accepted)");
  }
  if (!has_last) return Status::Ok();
  if (timestamp < last_timestamp) {
    return InvalidArgumentError("timestamp " + std::to_string(timestamp) +
                                " is before the series' last timestamp " +
                                std::to_string(last_timestamp) + " (out of order)");
  }
  if (timestamp == last_timestamp) {
    // Compare bit patterns: a redelivery carries the same value exactly.
    if (value != last_value) {
      return InvalidArgumentError("timestamp " + std::to_string(timestamp) +
                                  " repeats with a different value (duplicate timestamp)");
    }
    *duplicate = true;
  }
  return Status::Ok();
}

Verdict Series::Observe(int64_t timestamp, double value) {
  if (points_ > 0 && timestamp == last_timestamp_) return last_verdict_;  // redelivery
  const double score = std::clamp(detector_->Update(value), 0.0, 1.0);
  last_verdict_ = {score, score >= threshold_};
  last_timestamp_ = timestamp;
  last_value_ = value;
  ++points_;
  return last_verdict_;
}

void Series::SaveState(StateWriter* out) const {
  out->I64(points_);
  out->I64(last_timestamp_);
  out->F64(last_value_);
  out->F64(last_verdict_.score);
  out->U8(last_verdict_.anomaly ? 1 : 0);
  detector_->SaveState(out);
}

Status Series::LoadState(StateReader* in) {
  uint8_t anomaly = 0;
  RETURN_IF_ERROR(in->I64(&points_));
  RETURN_IF_ERROR(in->I64(&last_timestamp_));
  RETURN_IF_ERROR(in->F64(&last_value_));
  RETURN_IF_ERROR(in->F64(&last_verdict_.score));
  RETURN_IF_ERROR(in->U8(&anomaly));
  last_verdict_.anomaly = anomaly != 0;
  if (points_ < 0) return DataLossError("series state is inconsistent");
  return detector_->LoadState(in);
}

SeriesTable::SeriesTable(const SeriesTableOptions& options)
    : options_(options),
      per_shard_cap_(
          std::max<int64_t>(1, (options.max_series + options.shards - 1) / options.shards)) {
  for (int i = 0; i < options.shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

StatusOr<std::unique_ptr<SeriesTable>> SeriesTable::Create(const SeriesTableOptions& options) {
  if (options.max_series < 1) return InvalidArgumentError("max_series must be at least 1");
  if (options.shards < 1 || options.shards > 4096) {
    return InvalidArgumentError("shards must be in [1, 4096]");
  }
  // Fail now, not on the first request, when the detector options are unusable.
  RETURN_IF_ERROR(CreateDetector(options.detector).status());
  SeriesTableOptions adjusted = options;
  adjusted.shards = static_cast<int>(std::min<int64_t>(options.shards, options.max_series));
  return std::unique_ptr<SeriesTable>(new SeriesTable(adjusted));
}

size_t SeriesTable::ShardOf(std::string_view key) const {
  return std::hash<std::string_view>{}(key) % shards_.size();
}

StatusOr<Series*> SeriesTable::Touch(Shard* shard, const std::string& key) {
  if (const auto it = shard->index.find(key); it != shard->index.end()) {
    shard->lru.splice(shard->lru.begin(), shard->lru, it->second);
    return it->second->series.get();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Series> series, Series::Create(options_.detector));
  shard->lru.push_front(Entry{key, std::move(series)});
  shard->index.emplace(shard->lru.front().key, shard->lru.begin());
  while (static_cast<int64_t>(shard->lru.size()) > per_shard_cap_) {
    shard->index.erase(shard->lru.back().key);
    shard->lru.pop_back();
    evictions_.fetch_add(1);
  }
  return shard->lru.front().series.get();
}

Status SeriesTable::Observe(std::span<const std::string> keys, std::span<const int64_t> timestamps,
                            std::span<const double> values, std::vector<Verdict>* out) {
  const size_t n = keys.size();
  if (timestamps.size() != n || values.size() != n) {
    return InvalidArgumentError("series, timestamp and value need the same number of rows");
  }
  std::vector<size_t> shard_of(n);
  std::set<size_t> touched;
  for (size_t i = 0; i < n; ++i) {
    if (keys[i].size() > kMaxKeyBytes) {
      return InvalidArgumentError("row " + std::to_string(i) + ": series key must be at most " +
                                  std::to_string(kMaxKeyBytes) + " bytes");
    }
    shard_of[i] = ShardOf(keys[i]);
    touched.insert(shard_of[i]);
  }
  std::vector<std::unique_lock<std::mutex>> locks;
  for (size_t s : touched) locks.emplace_back(shards_[s]->mu);  // ascending: no deadlock

  // Validation pass: every row against the series' last point or the batch's earlier rows.
  struct Last {
    bool has = false;
    int64_t timestamp = 0;
    double value = 0;
  };
  std::map<std::string_view, Last> last;
  for (size_t i = 0; i < n; ++i) {
    if (keys[i].empty()) continue;  // a probe
    auto [it, inserted] = last.try_emplace(keys[i]);
    if (inserted) {
      const Shard& shard = *shards_[shard_of[i]];
      if (const auto found = shard.index.find(keys[i]); found != shard.index.end()) {
        const Series& series = *found->second->series;
        it->second = {series.has_last(), series.last_timestamp(), series.last_value()};
      }
    }
    bool duplicate = false;
    const Status status = Series::Check(it->second.has, it->second.timestamp, it->second.value,
                                        timestamps[i], values[i], &duplicate);
    if (!status.ok()) {
      return InvalidArgumentError("row " + std::to_string(i) + " (series '" + keys[i] +
                                  "'): " + status.message());
    }
    it->second = {true, timestamps[i], values[i]};
  }

  out->resize(n);
  int64_t applied = 0;
  for (size_t i = 0; i < n; ++i) {
    if (keys[i].empty()) {
      (*out)[i] = Verdict{};
      continue;
    }
    ASSIGN_OR_RETURN(Series * series, Touch(shards_[shard_of[i]].get(), keys[i]));
    const int64_t before = series->points();
    (*out)[i] = series->Observe(timestamps[i], values[i]);
    applied += series->points() - before;
  }
  points_.fetch_add(applied);
  return Status::Ok();
}

std::string SeriesTable::Encode() const {
  StateWriter w;
  w.Str(kMagic);
  w.U32(kVersion);
  w.Str(options_.detector.Fingerprint());
  std::vector<std::string> parts;
  uint64_t count = 0;
  for (const auto& shard : shards_) {
    StateWriter part;
    std::lock_guard<std::mutex> lock(shard->mu);
    for (auto it = shard->lru.rbegin(); it != shard->lru.rend(); ++it) {
      part.Str(it->key);
      it->series->SaveState(&part);
      ++count;
    }
    parts.push_back(part.Take());
  }
  w.U64(count);
  std::string out = w.Take();
  for (const std::string& p : parts) out += p;
  StateWriter tail;
  tail.U64(Fnv1a64(out));
  out += tail.data();
  return out;
}

Status SeriesTable::Decode(std::string_view checkpoint) {
  for (const auto& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard->mu);
    shard->index.clear();
    shard->lru.clear();
  }
  if (checkpoint.size() < 8) return DataLossError("checkpoint is truncated");
  const std::string_view body = checkpoint.substr(0, checkpoint.size() - 8);
  uint64_t checksum = 0;
  std::memcpy(&checksum, checkpoint.data() + body.size(), 8);
  if (checksum != Fnv1a64(body)) return DataLossError("checkpoint checksum mismatch");
  StateReader r(body);
  std::string magic, fingerprint;
  uint32_t version = 0;
  RETURN_IF_ERROR(r.Str(&magic));
  if (magic != kMagic) return DataLossError("not an anomaly checkpoint");
  RETURN_IF_ERROR(r.U32(&version));
  if (version != kVersion) {
    return FailedPreconditionError(
        "checkpoint version " + std::to_string(version) + " is not supported (this build reads " +
        std::to_string(kVersion) + "; the detector state layout changed): start without it");
  }
  RETURN_IF_ERROR(r.Str(&fingerprint));
  if (fingerprint != options_.detector.Fingerprint()) {
    return FailedPreconditionError("checkpoint was written under other detector options (" +
                                   fingerprint + ")");
  }
  uint64_t count = 0;
  RETURN_IF_ERROR(r.Count(&count, r.remaining()));
  Status status;
  for (uint64_t i = 0; i < count && status.ok(); ++i) {
    std::string key;
    status = r.Str(&key);
    if (!status.ok()) break;
    if (key.empty() || key.size() > kMaxKeyBytes) {
      status = DataLossError("checkpoint holds a bad series key");
      break;
    }
    Shard* shard = shards_[ShardOf(key)].get();
    std::lock_guard<std::mutex> lock(shard->mu);
    auto series = Touch(shard, key);
    if (!series.ok()) {
      status = series.status();
      break;
    }
    status = (*series)->LoadState(&r);
  }
  if (status.ok() && !r.done()) status = DataLossError("checkpoint has trailing bytes");
  if (!status.ok()) {
    for (const auto& shard : shards_) {
      std::lock_guard<std::mutex> lock(shard->mu);
      shard->index.clear();
      shard->lru.clear();
    }
    evictions_.store(0);
    return status;
  }
  return Status::Ok();
}

int64_t SeriesTable::size() const {
  int64_t total = 0;
  for (const auto& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard->mu);
    total += static_cast<int64_t>(shard->lru.size());
  }
  return total;
}

}  // namespace edgeloop::anomaly
