// Batch: a block of rows stored column by column, the unit that flows through pipelines, data
// files and table scans. Columnar so that a gigabyte of CSV streams through without an
// allocation per value.
#ifndef EDGELOOP_LAKE_BATCH_H_
#define EDGELOOP_LAKE_BATCH_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lake/types.h"

namespace edgeloop::lake {

// One column of a batch. bool, int64, timestamp and date values live in `ints` (bool as 0/1),
// doubles in `doubles`, strings in `chars` with `offsets` (value i is
// chars[offsets[i], offsets[i+1])). `valid[i]` is 0 for null. Thread-compatible.
class Column {
 public:
  explicit Column(Type type = Type::kString) : type_(type) { offsets_.push_back(0); }

  Type type() const { return type_; }
  int64_t size() const { return static_cast<int64_t>(valid_.size()); }
  bool IsNull(int64_t i) const { return valid_[i] == 0; }

  int64_t GetInt(int64_t i) const { return ints_[i]; }
  bool GetBool(int64_t i) const { return ints_[i] != 0; }
  double GetDouble(int64_t i) const { return doubles_[i]; }
  std::string_view GetString(int64_t i) const {
    return std::string_view(chars_).substr(offsets_[i], offsets_[i + 1] - offsets_[i]);
  }

  void AppendNull();
  void AppendInt(int64_t value);  // int64, timestamp, date
  void AppendBool(bool value);
  void AppendDouble(double value);
  void AppendString(std::string_view value);
  // Appends row `i` of `other` (same type).
  void AppendFrom(const Column& other, int64_t i);

  void Reserve(int64_t rows, int64_t string_bytes = 0);
  void Clear();

  // Direct access for fast builders and readers.
  std::vector<uint8_t>& valid() { return valid_; }
  std::vector<int64_t>& ints() { return ints_; }
  std::vector<double>& doubles() { return doubles_; }
  std::string& chars() { return chars_; }
  std::vector<uint64_t>& offsets() { return offsets_; }
  const std::vector<uint8_t>& valid() const { return valid_; }
  const std::vector<int64_t>& ints() const { return ints_; }
  const std::vector<double>& doubles() const { return doubles_; }
  const std::string& chars() const { return chars_; }
  const std::vector<uint64_t>& offsets() const { return offsets_; }

 private:
  Type type_;
  std::vector<uint8_t> valid_;
  std::vector<int64_t> ints_;
  std::vector<double> doubles_;
  std::string chars_;
  std::vector<uint64_t> offsets_;
};

// Rows of one schema. Every column has num_rows() values. Thread-compatible.
class Batch {
 public:
  Batch() = default;
  explicit Batch(std::shared_ptr<const Schema> schema);

  const std::shared_ptr<const Schema>& schema() const { return schema_; }
  int64_t num_rows() const { return columns_.empty() ? 0 : columns_.front().size(); }
  std::vector<Column>& columns() { return columns_; }
  const std::vector<Column>& columns() const { return columns_; }
  Column& column(size_t i) { return columns_[i]; }
  const Column& column(size_t i) const { return columns_[i]; }

  // Appends row `i` of `other` (same schema).
  void AppendRow(const Batch& other, int64_t i);
  void Clear();

  // Approximate bytes held, for flush decisions.
  int64_t ByteSize() const;

 private:
  std::shared_ptr<const Schema> schema_;
  std::vector<Column> columns_;
};

// The text form of one value (see types.h); "" for null.
std::string FormatValue(const Column& column, int64_t i);

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_BATCH_H_
