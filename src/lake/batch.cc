#include "lake/batch.h"

#include "lake/value_text.h"

namespace edgeloop::lake {

void Column::AppendNull() {
  valid_.push_back(0);
  switch (type_) {
    case Type::kDouble:
      doubles_.push_back(0);
      break;
    case Type::kString:
      offsets_.push_back(chars_.size());
      break;
    default:
      ints_.push_back(0);
  }
}

void Column::AppendInt(int64_t value) {
  valid_.push_back(1);
  ints_.push_back(value);
}

void Column::AppendBool(bool value) {
  valid_.push_back(1);
  ints_.push_back(value ? 1 : 0);
}

void Column::AppendDouble(double value) {
  valid_.push_back(1);
  doubles_.push_back(value);
}

void Column::AppendString(std::string_view value) {
  valid_.push_back(1);
  chars_.append(value);
  offsets_.push_back(chars_.size());
}

void Column::AppendFrom(const Column& other, int64_t i) {
  if (other.IsNull(i)) {
    AppendNull();
    return;
  }
  switch (type_) {
    case Type::kDouble:
      AppendDouble(other.GetDouble(i));
      break;
    case Type::kString:
      AppendString(other.GetString(i));
      break;
    default:
      AppendInt(other.GetInt(i));
  }
}

void Column::Reserve(int64_t rows, int64_t string_bytes) {
  valid_.reserve(rows);
  switch (type_) {
    case Type::kDouble:
      doubles_.reserve(rows);
      break;
    case Type::kString:
      offsets_.reserve(rows + 1);
      chars_.reserve(string_bytes);
      break;
    default:
      ints_.reserve(rows);
  }
}

void Column::Clear() {
  valid_.clear();
  ints_.clear();
  doubles_.clear();
  chars_.clear();
  offsets_.resize(1);
  offsets_[0] = 0;
}

Batch::Batch(std::shared_ptr<const Schema> schema) : schema_(std::move(schema)) {
  columns_.reserve(schema_->fields.size());
  for (const Field& f : schema_->fields) columns_.emplace_back(f.type);
}

void Batch::AppendRow(const Batch& other, int64_t i) {
  for (size_t c = 0; c < columns_.size(); ++c) columns_[c].AppendFrom(other.columns_[c], i);
}

void Batch::Clear() {
  for (Column& c : columns_) c.Clear();
}

int64_t Batch::ByteSize() const {
  int64_t bytes = 0;
  for (const Column& c : columns_) {
    bytes += static_cast<int64_t>(c.valid().size() + c.ints().size() * 8 + c.doubles().size() * 8 +
                                  c.chars().size() + c.offsets().size() * 8);
  }
  return bytes;
}

std::string FormatValue(const Column& column, int64_t i) {
  if (column.IsNull(i)) return "";
  char buf[kMaxTimestampText];
  switch (column.type()) {
    case Type::kBool:
      return column.GetBool(i) ? "true" : "false";
    case Type::kInt64:
      return std::string(buf, WriteInt(buf, column.GetInt(i)));
    case Type::kDouble:
      return std::string(buf, WriteDouble(buf, column.GetDouble(i)));
    case Type::kString:
      return std::string(column.GetString(i));
    case Type::kTimestamp:
      return FormatTimestamp(column.GetInt(i));
    case Type::kDate:
      return FormatDate(static_cast<int32_t>(column.GetInt(i)));
  }
  return "";
}

}  // namespace edgeloop::lake
