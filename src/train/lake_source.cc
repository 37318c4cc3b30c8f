#include "train/lake_source.h"

#include <chrono>
#include <cmath>
#include <limits>

#include "common/clock.h"
#include "common/logging.h"

namespace edgeloop::train {
namespace {

constexpr int64_t kMicrosPerDay = 86'400'000'000LL;

Status Append(const lake::Column& in, RawColumn* out) {
  const int64_t n = in.size();
  const uint8_t* valid = in.valid().data();
  switch (out->kind) {
    case RawColumn::Kind::kNumber: {
      const size_t base = out->numbers.size();
      out->numbers.resize(base + static_cast<size_t>(n));
      float* to = out->numbers.data() + base;
      constexpr float kMissing = std::numeric_limits<float>::quiet_NaN();
      if (in.type() == lake::Type::kDouble) {
        const double* from = in.doubles().data();
        for (int64_t i = 0; i < n; ++i) to[i] = valid[i] ? static_cast<float>(from[i]) : kMissing;
      } else {
        const int64_t* from = in.ints().data();
        for (int64_t i = 0; i < n; ++i) to[i] = valid[i] ? static_cast<float>(from[i]) : kMissing;
      }
      return Status::Ok();
    }
    case RawColumn::Kind::kText:
      for (int64_t i = 0; i < n; ++i) {
        out->valid.push_back(valid[i]);
        if (!valid[i]) {
          out->texts.emplace_back();
        } else if (in.type() == lake::Type::kString) {
          out->texts.emplace_back(in.GetString(i));
        } else {
          out->texts.push_back(lake::FormatValue(in, i));
        }
      }
      return Status::Ok();
    case RawColumn::Kind::kTime:
      for (int64_t i = 0; i < n; ++i) {
        out->valid.push_back(valid[i]);
        const int64_t v = valid[i] ? in.GetInt(i) : 0;
        out->times.push_back(in.type() == lake::Type::kDate ? v * kMicrosPerDay : v);
      }
      return Status::Ok();
  }
  return Status::Ok();
}

}  // namespace

StatusOr<TableRead> ReadLakeTable(
    lake::Lake& lake, const std::string& table, std::optional<int64_t> snapshot,
    const std::vector<std::pair<std::string, RawColumn::Kind>>& columns, int threads) {
  // Pin the snapshot first, so that a commit between Describe and Scan cannot change the rows.
  int64_t pinned = 0;
  if (snapshot) {
    pinned = *snapshot;
  } else {
    ASSIGN_OR_RETURN(pinned, lake.LatestSnapshot());
  }
  ASSIGN_OR_RETURN(lake::TableInfo info, lake.Describe(table, pinned));
  TableRead read;
  read.snapshot = pinned;
  ASSIGN_OR_RETURN(std::vector<lake::SnapshotInfo> history, lake.History(""));
  for (const lake::SnapshotInfo& s : history) {
    if (s.id == pinned) read.snapshot_time = FormatRfc3339(s.time);
  }
  lake::ScanOptions scan;
  scan.snapshot = pinned;
  scan.threads = threads;
  for (const auto& [name, kind] : columns) {
    const lake::Field* field = info.schema.Find(name);
    if (field == nullptr) {
      std::string available;
      for (const lake::Field& f : info.schema.fields) {
        available += (available.empty() ? "" : ", ") + f.name;
      }
      return InvalidArgumentError("missing column '" + name + "' in table '" + table +
                                  "' at snapshot " + std::to_string(pinned) +
                                  " (columns: " + available + ")");
    }
    if (kind == RawColumn::Kind::kNumber && field->type == lake::Type::kString) {
      return InvalidArgumentError("column '" + name +
                                  "' is not numeric (string); declare an encoding for it "
                                  "(one_hot or ordinal) under 'categorical'");
    }
    if (kind == RawColumn::Kind::kTime && field->type != lake::Type::kTimestamp &&
        field->type != lake::Type::kDate && field->type != lake::Type::kInt64) {
      return InvalidArgumentError("time column '" + name + "' must be a timestamp, date or int64");
    }
    scan.columns.push_back(name);
    RawColumn column;
    column.name = name;
    column.kind = kind;
    // The snapshot's row count is known: one allocation per column, no regrowth (which would
    // briefly hold two copies of every column).
    const auto rows = static_cast<size_t>(info.rows);
    if (kind == RawColumn::Kind::kNumber) column.numbers.reserve(rows);
    if (kind != RawColumn::Kind::kNumber) column.valid.reserve(rows);
    if (kind == RawColumn::Kind::kText) column.texts.reserve(rows);
    if (kind == RawColumn::Kind::kTime) column.times.reserve(rows);
    read.table.columns.push_back(std::move(column));
  }
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<lake::TableReader> reader, lake.Scan(table, scan));
  lake::Batch batch;
  while (true) {
    ASSIGN_OR_RETURN(bool more, reader->Next(&batch));
    if (!more) break;
    const lake::Schema& schema = *batch.schema();
    for (RawColumn& column : read.table.columns) {
      const int index = schema.IndexOf(column.name);
      if (index < 0) return InternalError("the scan lacks column '" + column.name + "'");
      RETURN_IF_ERROR(Append(batch.column(index), &column));
    }
    read.table.num_rows += batch.num_rows();
  }
  log::Debug(
      "lake table read",
      {{"table", table},
       {"rows", read.table.num_rows},
       {"threads", threads},
       {"ms", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
                  .count()}});
  return read;
}

}  // namespace edgeloop::train
