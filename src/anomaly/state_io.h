// StateWriter / StateReader: the little-endian binary encoding of detector state, so that a
// detector's learning survives a restart (checkpoints) and can be compared byte for byte.
//
// Both are thread-compatible. A reader never reads past its buffer: a truncated or corrupt buffer
// makes the next Read* fail with kDataLoss and every later one fail too.
#ifndef EDGELOOP_ANOMALY_STATE_IO_H_
#define EDGELOOP_ANOMALY_STATE_IO_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::anomaly {

class StateWriter {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Raw(&v, sizeof v); }
  void U64(uint64_t v) { Raw(&v, sizeof v); }
  void I64(int64_t v) { Raw(&v, sizeof v); }
  void F64(double v) { Raw(&v, sizeof v); }
  void Str(std::string_view s) {
    U64(s.size());
    out_.append(s);
  }
  void F64s(const std::vector<double>& v) {
    U64(v.size());
    Raw(v.data(), v.size() * sizeof(double));
  }

  const std::string& data() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string out_;
};

class StateReader {
 public:
  explicit StateReader(std::string_view data) : data_(data) {}

  Status U8(uint8_t* v) { return Raw(v, sizeof *v); }
  Status U32(uint32_t* v) { return Raw(v, sizeof *v); }
  Status U64(uint64_t* v) { return Raw(v, sizeof *v); }
  Status I64(int64_t* v) { return Raw(v, sizeof *v); }
  Status F64(double* v) { return Raw(v, sizeof *v); }
  Status Str(std::string* s);
  // `max_count` bounds the length read from the buffer, so a corrupt length cannot allocate
  // unbounded memory.
  Status F64s(std::vector<double>* v, uint64_t max_count);
  // A count (for a container) no larger than `max`.
  Status Count(uint64_t* n, uint64_t max);

  bool done() const { return pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  Status Raw(void* p, size_t n);
  std::string_view data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

// FNV-1a, 64 bits: the checksum of a checkpoint's payload (detects torn or corrupted files).
uint64_t Fnv1a64(std::string_view data);

}  // namespace edgeloop::anomaly

#endif  // EDGELOOP_ANOMALY_STATE_IO_H_
