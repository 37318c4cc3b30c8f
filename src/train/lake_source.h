// Reads the columns a training spec needs from a lake table at a snapshot.
#ifndef EDGELOOP_TRAIN_LAKE_SOURCE_H_
#define EDGELOOP_TRAIN_LAKE_SOURCE_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "lake/lake.h"
#include "train/features.h"

namespace edgeloop::train {

struct TableRead {
  RawTable table;
  int64_t snapshot = 0;       // the snapshot read (the latest when none was asked for)
  std::string snapshot_time;  // RFC 3339
};

// Scans `table` at `snapshot` (latest when unset) and converts each requested column:
//  - kNumber: bool, int64, double, timestamp and date columns become floats (missing = NaN); a
//    string column is kInvalidArgument ("not numeric; declare an encoding").
//  - kText: strings as they are, other types in their text form (lake/types.h).
//  - kTime: timestamp (microseconds), date (midnight UTC) or int64 columns.
// kInvalidArgument names a column the table lacks (with the table's columns); kNotFound for an
// unknown table or snapshot. Data files are parsed on `threads` threads (the rows and their
// order do not depend on it).
StatusOr<TableRead> ReadLakeTable(
    lake::Lake& lake, const std::string& table, std::optional<int64_t> snapshot,
    const std::vector<std::pair<std::string, RawColumn::Kind>>& columns, int threads = 1);

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_LAKE_SOURCE_H_
