#include "webapp/csv_scoring.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/json_util.h"

namespace edgeloop::webapp {
namespace {

using inference::DataType;
using inference::Tensor;
using Json = nlohmann::json;

bool IsNumeric(DataType type) {
  return type != DataType::kBytes && type != DataType::kBool && type != DataType::kFp16 &&
         type != DataType::kBf16;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Where the first byte that cannot be in UTF-8 text is (NUL, other control characters besides
// tab/CR/LF, invalid sequences), or npos.
size_t FirstNonText(std::string_view data) {
  size_t i = 0;
  const size_t n = data.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(data[i]);
    if (c < 0x80) {
      if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') return i;
      if (c == 0x7f) return i;
      ++i;
      continue;
    }
    int extra = 0;
    if ((c & 0xe0) == 0xc0 && c >= 0xc2) {
      extra = 1;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
    } else if ((c & 0xf8) == 0xf0 && c <= 0xf4) {
      extra = 3;
    } else {
      return i;
    }
    if (i + extra >= n) return i;
    for (int k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(data[i + k]) & 0xc0) != 0x80) return i;
    }
    i += extra + 1;
  }
  return std::string_view::npos;
}

// RFC 4180 records: comma-separated, optional double quotes ("" inside quotes is one quote),
// LF or CRLF line ends. Unquoted fields are views into the input; quoted fields with escapes are
// copied into scratch storage that lives until the next call.
class Tokenizer {
 public:
  explicit Tokenizer(std::string_view data) : data_(data) {}

  // False at the end of the input. Errors: a quote left open.
  StatusOr<bool> Next(std::vector<std::string_view>* fields) {
    fields->clear();
    scratch_.clear();
    if (pos_ >= data_.size()) return false;
    ++line_;
    const size_t n = data_.size();
    while (true) {
      if (pos_ < n && data_[pos_] == '"') {
        const int64_t started_line = line_;
        ++pos_;
        std::string value;
        bool closed = false;
        while (pos_ < n) {
          const size_t quote = data_.find('"', pos_);
          if (quote == std::string_view::npos) break;
          for (size_t k = pos_; k < quote; ++k) {
            if (data_[k] == '\n') ++line_;
          }
          value.append(data_.substr(pos_, quote - pos_));
          if (quote + 1 < n && data_[quote + 1] == '"') {
            value.push_back('"');
            pos_ = quote + 2;
            continue;
          }
          pos_ = quote + 1;
          closed = true;
          break;
        }
        if (!closed) {
          return InvalidArgumentError("line " + std::to_string(started_line) +
                                      ": a quoted field is never closed");
        }
        scratch_.push_back(std::move(value));
        fields->push_back({});  // filled in below, once scratch_ no longer moves
        quoted_.push_back(fields->size() - 1);
        if (pos_ < n && data_[pos_] != ',' && data_[pos_] != '\n' && data_[pos_] != '\r') {
          return InvalidArgumentError("line " + std::to_string(line_) +
                                      ": text after a closing quote");
        }
      } else {
        size_t end = pos_;
        while (end < n && data_[end] != ',' && data_[end] != '\n' && data_[end] != '\r') ++end;
        fields->push_back(data_.substr(pos_, end - pos_));
        pos_ = end;
      }
      if (pos_ < n && data_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < n && data_[pos_] == '\r') ++pos_;
      if (pos_ < n && data_[pos_] == '\n') ++pos_;
      break;
    }
    for (size_t k = 0; k < quoted_.size(); ++k) (*fields)[quoted_[k]] = scratch_[k];
    quoted_.clear();
    return true;
  }

  int64_t line() const { return line_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  int64_t line_ = 0;
  std::vector<std::string> scratch_;
  std::vector<size_t> quoted_;
};

template <typename T>
bool ParseInteger(std::string_view text, T* out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// A number, or NaN for an empty field or NaN/NA/null (missing). Parsed straight into the
// element type, so FP32 values round once.
template <typename T>
bool ParseFloat(std::string_view text, T* out) {
  if (text.empty() || text == "NaN" || text == "nan" || text == "null" || text == "NA") {
    *out = std::numeric_limits<T>::quiet_NaN();
    return true;
  }
  const char* begin = text.data();
  if (*begin == '+') ++begin;
  const auto [end, ec] = std::from_chars(begin, text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Parses `text` into element `index` of `tensor`. False when it does not fit the datatype.
bool SetValue(std::string_view raw, Tensor& tensor, int64_t index) {
  const std::string_view text = Trim(raw);
  const auto i = static_cast<size_t>(index);
  switch (tensor.datatype()) {
    case DataType::kFp32:
      return ParseFloat(text, &tensor.values<float>()[i]);
    case DataType::kFp64:
      return ParseFloat(text, &tensor.values<double>()[i]);
    case DataType::kBool: {
      if (text == "1" || text == "true" || text == "True" || text == "TRUE") {
        tensor.values<uint8_t>()[i] = 1;
      } else if (text == "0" || text == "false" || text == "False" || text == "FALSE") {
        tensor.values<uint8_t>()[i] = 0;
      } else {
        return false;
      }
      return true;
    }
    case DataType::kBytes:
      tensor.strings()[i] = std::string(raw);
      return true;
    case DataType::kInt8:
      return ParseInteger(text, &tensor.values<int8_t>()[i]);
    case DataType::kInt16:
      return ParseInteger(text, &tensor.values<int16_t>()[i]);
    case DataType::kInt32:
      return ParseInteger(text, &tensor.values<int32_t>()[i]);
    case DataType::kInt64:
      return ParseInteger(text, &tensor.values<int64_t>()[i]);
    case DataType::kUint8:
      return ParseInteger(text, &tensor.values<uint8_t>()[i]);
    case DataType::kUint16:
      return ParseInteger(text, &tensor.values<uint16_t>()[i]);
    case DataType::kUint32:
      return ParseInteger(text, &tensor.values<uint32_t>()[i]);
    case DataType::kUint64:
      return ParseInteger(text, &tensor.values<uint64_t>()[i]);
    default:
      return false;
  }
}

std::string_view TypeWord(DataType type) {
  switch (type) {
    case DataType::kFp32:
    case DataType::kFp64:
      return "a number";
    case DataType::kBool:
      return "true or false";
    case DataType::kBytes:
      return "text";
    case DataType::kUint8:
    case DataType::kUint16:
    case DataType::kUint32:
    case DataType::kUint64:
      return "a whole number of at least 0";
    default:
      return "a whole number";
  }
}

std::vector<Tensor> AllocateInputs(const inference::ModelConfig& config, int64_t rows) {
  std::vector<Tensor> inputs;
  inputs.reserve(config.inputs.size());
  for (const inference::TensorSpec& spec : config.inputs) {
    inference::Shape shape = spec.shape;
    shape[0] = rows;
    inputs.emplace_back(spec.name, spec.datatype, shape);
  }
  return inputs;
}

// The elements per row of input `i`.
int64_t Width(const inference::TensorSpec& spec) {
  return spec.shape.size() == 2 ? spec.shape[1] : 1;
}

std::string Truncated(std::string_view text) {
  if (text.size() <= 40) return std::string(text);
  return std::string(text.substr(0, 37)) + "...";
}

void AppendNumber(double value, std::string* out) {
  if (!std::isfinite(value)) {
    out->append("null");
    return;
  }
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, ec == std::errc() ? end : buffer);
}

void AppendElement(const Tensor& tensor, size_t i, std::string* out) {
  switch (tensor.datatype()) {
    case DataType::kFp32:
      AppendNumber(tensor.values<float>()[i], out);
      return;
    case DataType::kFp64:
      AppendNumber(tensor.values<double>()[i], out);
      return;
    case DataType::kBool:
      out->append(tensor.values<uint8_t>()[i] ? "true" : "false");
      return;
    case DataType::kBytes:
      out->append(json::Quote(tensor.strings()[i]));
      return;
    case DataType::kInt8:
      out->append(std::to_string(tensor.values<int8_t>()[i]));
      return;
    case DataType::kInt16:
      out->append(std::to_string(tensor.values<int16_t>()[i]));
      return;
    case DataType::kInt32:
      out->append(std::to_string(tensor.values<int32_t>()[i]));
      return;
    case DataType::kInt64:
      out->append(std::to_string(tensor.values<int64_t>()[i]));
      return;
    case DataType::kUint8:
      out->append(std::to_string(tensor.values<uint8_t>()[i]));
      return;
    case DataType::kUint16:
      out->append(std::to_string(tensor.values<uint16_t>()[i]));
      return;
    case DataType::kUint32:
      out->append(std::to_string(tensor.values<uint32_t>()[i]));
      return;
    case DataType::kUint64:
      out->append(std::to_string(tensor.values<uint64_t>()[i]));
      return;
    default:
      out->append("null");
  }
}

}  // namespace

StatusOr<InputSchema> SchemaFor(const inference::ModelConfig& config, std::string_view card_json,
                                std::optional<double> server_threshold) {
  InputSchema schema;
  int wide_inputs = 0;
  for (const inference::TensorSpec& spec : config.inputs) {
    if (spec.shape.size() == 2) ++wide_inputs;
  }
  for (size_t i = 0; i < config.inputs.size(); ++i) {
    const inference::TensorSpec& spec = config.inputs[i];
    if (spec.datatype == DataType::kFp16 || spec.datatype == DataType::kBf16) {
      return UnimplementedError("input '" + spec.name + "' is " +
                                std::string(inference::DataTypeName(spec.datatype)) +
                                ", which the web app cannot fill");
    }
    if (spec.shape.size() == 1) {
      schema.columns.push_back({spec.name, spec.datatype, static_cast<int>(i), 0, {}, {}, {}});
    } else if (spec.shape.size() == 2 && spec.shape[1] > 0 && spec.shape[1] <= 100'000) {
      const bool named =
          wide_inputs == 1 && config.feature_names.size() == static_cast<size_t>(spec.shape[1]);
      for (int64_t k = 0; k < spec.shape[1]; ++k) {
        schema.columns.push_back(
            {named ? config.feature_names[k] : spec.name + "[" + std::to_string(k) + "]",
             spec.datatype,
             static_cast<int>(i),
             k,
             {},
             {},
             {}});
      }
    } else {
      return UnimplementedError("input '" + spec.name + "' has shape " +
                                inference::ShapeToString(spec.shape) +
                                "; the web app fills inputs of shape [-1] or [-1, N]");
    }
  }
  std::set<std::string> seen;
  for (const Column& column : schema.columns) {
    if (!seen.insert(column.name).second) {
      return UnimplementedError("two inputs map to the column name '" + column.name + "'");
    }
  }
  for (size_t i = 0; i < config.outputs.size(); ++i) {
    if (inference::IsDefaultOutput(config.outputs[i])) {
      schema.outputs.push_back(static_cast<int>(i));
    } else if (config.outputs[i].kind == "contributions" && config.outputs[i].shape.size() == 2) {
      schema.contributions = static_cast<int>(i);
    }
  }
  schema.threshold = server_threshold;
  if (auto it = config.parameters.find("threshold"); it != config.parameters.end()) {
    double value = 0;
    const auto [end, ec] =
        std::from_chars(it->second.data(), it->second.data() + it->second.size(), value);
    if (ec == std::errc() && end == it->second.data() + it->second.size()) {
      schema.threshold = value;
    }
  }
  if (!card_json.empty()) {
    const Json card = Json::parse(card_json, nullptr, false);
    if (card.is_object() && card.contains("reference_statistics") &&
        card["reference_statistics"].is_object() &&
        card["reference_statistics"].contains("features") &&
        card["reference_statistics"]["features"].is_object()) {
      const Json& features = card["reference_statistics"]["features"];
      for (Column& column : schema.columns) {
        if (!features.contains(column.name) || !features[column.name].is_object()) continue;
        const Json& stats = features[column.name];
        if (stats.contains("min") && stats["min"].is_number())
          column.min = stats["min"].get<double>();
        if (stats.contains("max") && stats["max"].is_number())
          column.max = stats["max"].get<double>();
        if (stats.contains("quantiles") && stats["quantiles"].is_object() &&
            stats["quantiles"].contains("values") && stats["quantiles"]["values"].is_array() &&
            stats["quantiles"]["values"].size() == 11 &&
            stats["quantiles"]["values"][5].is_number()) {
          column.median = stats["quantiles"]["values"][5].get<double>();
        }
      }
    }
  }
  return schema;
}

std::string SchemaJson(const InputSchema& schema, const inference::ModelConfig& config) {
  Json columns = Json::array();
  for (const Column& column : schema.columns) {
    Json entry = {{"name", column.name},
                  {"datatype", std::string(inference::DataTypeName(column.datatype))},
                  {"numeric", IsNumeric(column.datatype)}};
    if (column.min) entry["min"] = *column.min;
    if (column.max) entry["max"] = *column.max;
    if (column.median) entry["median"] = *column.median;
    columns.push_back(std::move(entry));
  }
  Json outputs = Json::array();
  for (int index : schema.outputs) {
    const inference::TensorSpec& spec = config.outputs[index];
    outputs.push_back({{"name", spec.name},
                       {"datatype", std::string(inference::DataTypeName(spec.datatype))},
                       {"shape", spec.shape}});
  }
  Json body = {
      {"columns", columns}, {"outputs", outputs}, {"contributions", schema.contributions >= 0}};
  if (schema.threshold) body["threshold"] = *schema.threshold;
  return body.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Status ReadCsv(std::string_view csv, const InputSchema& schema,
               const inference::ModelConfig& config, const CsvOptions& options,
               std::vector<std::string>* ignored,
               const std::function<Status(ParsedBatch&)>& on_batch) {
  if (const size_t bad = FirstNonText(csv); bad != std::string_view::npos) {
    return InvalidArgumentError("the file is not CSV text: binary data at byte " +
                                std::to_string(bad) + " (upload a UTF-8 CSV file)");
  }
  if (csv.substr(0, 3) == "\xEF\xBB\xBF") csv.remove_prefix(3);  // a byte order mark
  Tokenizer tokenizer(csv);
  std::vector<std::string_view> fields;
  ASSIGN_OR_RETURN(bool has_header, tokenizer.Next(&fields));
  if (!has_header || (fields.size() == 1 && Trim(fields[0]).empty())) {
    return InvalidArgumentError("the file is empty: the first line must name the columns");
  }
  // Header name → field index.
  std::map<std::string, size_t, std::less<>> header;
  for (size_t i = 0; i < fields.size(); ++i) {
    std::string name(Trim(fields[i]));
    if (!header.emplace(name, i).second) {
      return InvalidArgumentError("the column '" + Truncated(name) +
                                  "' appears twice in the header");
    }
  }
  std::vector<size_t> field_of(schema.columns.size());
  std::vector<std::string> missing;
  for (size_t c = 0; c < schema.columns.size(); ++c) {
    auto it = header.find(schema.columns[c].name);
    if (it == header.end()) {
      missing.push_back(schema.columns[c].name);
    } else {
      field_of[c] = it->second;
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 10; ++i) {
      list += (i ? ", " : "") + missing[i];
    }
    if (missing.size() > 10) list += " and " + std::to_string(missing.size() - 10) + " more";
    std::string expected;
    for (size_t i = 0; i < schema.columns.size() && i < 30; ++i) {
      expected += (i ? "," : "") + schema.columns[i].name;
    }
    if (schema.columns.size() > 30) expected += ",...";
    return InvalidArgumentError(
        "wrong columns: the model '" + config.name + "' needs " + std::to_string(missing.size()) +
        " column(s) the file lacks: " + list + ". Expected header: " + expected);
  }
  if (ignored != nullptr) {
    std::set<size_t> used(field_of.begin(), field_of.end());
    for (const auto& [name, index] : header) {
      if (!used.count(index)) ignored->push_back(name);
    }
  }
  const size_t expected_fields = header.size();
  const int64_t batch_rows = std::max<int64_t>(1, options.batch_rows);
  ParsedBatch batch;
  int64_t row = 0;
  auto start_batch = [&] {
    batch.first_row = row;
    batch.rows = 0;
    batch.inputs = AllocateInputs(config, batch_rows);
  };
  auto flush = [&]() -> Status {
    if (batch.rows == 0) return Status::Ok();
    if (batch.rows < batch_rows) {
      // Shrink the last batch to the rows it has.
      std::vector<Tensor> exact = AllocateInputs(config, batch.rows);
      for (size_t i = 0; i < exact.size(); ++i) {
        const Tensor& full = batch.inputs[i];
        if (full.datatype() == DataType::kBytes) {
          std::copy_n(full.strings().begin(), exact[i].strings().size(),
                      exact[i].strings().begin());
        } else {
          std::copy_n(full.bytes().begin(), exact[i].bytes().size(), exact[i].bytes().begin());
        }
      }
      batch.inputs = std::move(exact);
    }
    return on_batch(batch);
  };
  start_batch();
  while (true) {
    ASSIGN_OR_RETURN(bool more, tokenizer.Next(&fields));
    if (!more) break;
    if (fields.size() == 1 && Trim(fields[0]).empty()) continue;  // blank line
    if (fields.size() != expected_fields) {
      return InvalidArgumentError("line " + std::to_string(tokenizer.line()) + " has " +
                                  std::to_string(fields.size()) + " fields; the header has " +
                                  std::to_string(expected_fields));
    }
    if (row >= options.max_rows) {
      return InvalidArgumentError("the file has more than " + std::to_string(options.max_rows) +
                                  " rows; split it");
    }
    for (size_t c = 0; c < schema.columns.size(); ++c) {
      const Column& column = schema.columns[c];
      Tensor& tensor = batch.inputs[column.input];
      const int64_t index = batch.rows * Width(config.inputs[column.input]) + column.position;
      if (!SetValue(fields[field_of[c]], tensor, index)) {
        return InvalidArgumentError("wrong type on line " + std::to_string(tokenizer.line()) +
                                    " (row " + std::to_string(row + 1) + "), column '" +
                                    column.name + "': '" + Truncated(fields[field_of[c]]) +
                                    "' is not " + std::string(TypeWord(column.datatype)));
      }
    }
    ++batch.rows;
    ++row;
    if (batch.rows == batch_rows) {
      RETURN_IF_ERROR(on_batch(batch));
      start_batch();
    }
  }
  if (row == 0 && batch.rows == 0) {
    return InvalidArgumentError("the file has a header but no rows");
  }
  return flush();
}

StatusOr<ParsedBatch> ParseRecord(const std::vector<std::pair<std::string, std::string>>& values,
                                  const InputSchema& schema, const inference::ModelConfig& config) {
  ParsedBatch batch;
  batch.rows = 1;
  batch.inputs = AllocateInputs(config, 1);
  std::map<std::string_view, std::string_view> by_name;
  for (const auto& [name, value] : values) by_name[name] = value;
  for (const Column& column : schema.columns) {
    auto it = by_name.find(column.name);
    if (it == by_name.end()) {
      return InvalidArgumentError("the field '" + column.name + "' is missing");
    }
    if (!SetValue(it->second, batch.inputs[column.input], column.position)) {
      return InvalidArgumentError("'" + column.name + "': '" + Truncated(it->second) + "' is not " +
                                  std::string(TypeWord(column.datatype)));
    }
  }
  return batch;
}

void AppendRowValues(const std::vector<Tensor>& outputs, int64_t row, std::string* out) {
  out->push_back('[');
  for (size_t o = 0; o < outputs.size(); ++o) {
    if (o) out->push_back(',');
    const Tensor& tensor = outputs[o];
    const int64_t rows = tensor.shape().empty() ? 1 : tensor.shape()[0];
    const int64_t width = rows > 0 ? tensor.element_count() / rows : 0;
    if (width == 1) {
      AppendElement(tensor, static_cast<size_t>(row), out);
      continue;
    }
    out->push_back('[');
    for (int64_t k = 0; k < width; ++k) {
      if (k) out->push_back(',');
      AppendElement(tensor, static_cast<size_t>(row * width + k), out);
    }
    out->push_back(']');
  }
  out->push_back(']');
}

}  // namespace edgeloop::webapp
