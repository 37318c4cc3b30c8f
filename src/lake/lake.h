// The lake: tables of immutable data files and a catalog (SQLite, following DuckLake's design)
// in which one transaction is one commit.
//
//   LAKE/catalog.sqlite                      snapshots, schemas, files, statistics, watermarks
//   LAKE/tables/<table>/[<col>=<value>/]<uuid>.csv.zst   (.col.zst: tables without strings)
//
// Snapshots are global to the lake and numbered 1, 2, 3...: every commit (to one or several
// tables at once) creates the next one, with its time, the operation and a summary. A data file
// belongs to a table from the snapshot that added it until the one that removed it, so reading a
// table at any retained snapshot (time travel) sees exactly the files that were live then.
//
// Durability and isolation: data files are written and fsynced before the catalog transaction
// that adds them commits (SQLite WAL, synchronous=FULL); a reader sees a commit entirely or not at
// all; after kill -9 a table is at the previous or the next snapshot. Files of a commit that did
// not happen are orphans that Expire removes.
//
// Concurrency: any number of readers and processes. Writers take the catalog's write lock only to
// commit. Appends never conflict; a commit that removes files (overwrite, compaction) fails with
// kAborted when another commit removed one of them first, and can be retried.
//
// Thread-safe: one Lake may be used from several threads; TableWriter, TableReader and
// Transaction are not thread-safe.
#ifndef EDGELOOP_LAKE_LAKE_H_
#define EDGELOOP_LAKE_LAKE_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "lake/batch.h"
#include "lake/data_file.h"
#include "lake/types.h"

namespace edgeloop::lake {

// Hive-style partitioning by one column: `day` and `month` derive the folder value from a
// timestamp or date column ("day=2026-11-27", "month=2026-11"); `identity` uses the value itself
// (strings are escaped for file names). Null values go to "<col>=__null__".
struct PartitionSpec {
  enum class Transform { kNone, kIdentity, kDay, kMonth };
  Transform transform = Transform::kNone;
  std::string column;
};
StatusOr<PartitionSpec> ParsePartitionSpec(std::string_view text);  // "day(ts)", "region", ""
std::string PartitionSpecToString(const PartitionSpec& spec);

struct SnapshotInfo {
  int64_t id = 0;
  Clock::WallTime time;
  std::string operation;  // "create", "append", "overwrite", "compact", "alter", "expire"
  std::map<std::string, std::string> summary;  // free-form, e.g. {"pipeline": "..."}
  int64_t rows_added = 0;
  int64_t rows_removed = 0;
  int64_t files_added = 0;
  int64_t files_removed = 0;
};

struct DataFileInfo {
  std::string path;       // relative to the lake root
  std::string partition;  // "day=2026-11-27" or ""
  FileStats stats;
  int32_t schema_version = 0;
  int64_t added_snapshot = 0;
};

struct TableInfo {
  std::string name;
  Schema schema;
  PartitionSpec partition;
  int64_t created_snapshot = 0;
  int64_t rows = 0;
  int64_t files = 0;
  int64_t bytes = 0;
};

struct SchemaChange {
  enum class Kind { kAddColumn, kRenameColumn, kWidenColumn, kDropColumn };
  Kind kind = Kind::kAddColumn;
  std::string column;
  std::string new_name;       // kRenameColumn
  Type type = Type::kString;  // kAddColumn, kWidenColumn
};

class Lake;

// Accumulates written files for one table; its rows become visible when the owning
// Transaction commits. Data files roll over at `target_file_bytes`.
class TableWriter {
 public:
  virtual ~TableWriter() = default;
  // `batch` must have the table's current schema (see Lake::Describe).
  virtual Status Write(const Batch& batch) = 0;
  virtual int64_t rows_written() const = 0;
  // Memory held between writes: the open data files' buffers and compression contexts (at most
  // 8 files are open at once). Does not grow with the number of rows written.
  virtual int64_t memory_bytes() const = 0;
};

// One atomic commit over one or more tables. Not thread-safe. Destroying it without Commit()
// aborts it (its files become orphans).
class Transaction {
 public:
  virtual ~Transaction() = default;
  // Appends to `table`. With `overwrite`, the commit also removes every file the table had at
  // the transaction's start snapshot.
  virtual StatusOr<TableWriter*> Writer(const std::string& table, bool overwrite = false) = 0;
  // Sets a named watermark of `table` (e.g. pipeline "ingest" -> "2026-11-27T04:00:00Z"),
  // recorded by this commit and only if it succeeds.
  virtual void SetWatermark(const std::string& table, const std::string& name,
                            const std::string& value) = 0;
  virtual void SetSummary(const std::string& key, const std::string& value) = 0;
  // Commits everything as one new snapshot. kAborted on a conflict (retry with a new
  // transaction); nothing is visible on failure.
  virtual StatusOr<SnapshotInfo> Commit() = 0;
  virtual int64_t start_snapshot() const = 0;
};

// Streams a table's rows at a snapshot. Not thread-safe.
class TableReader {
 public:
  virtual ~TableReader() = default;
  // Fills `batch` with the next rows (in the read schema); false when done.
  virtual StatusOr<bool> Next(Batch* batch) = 0;
  virtual const std::shared_ptr<const Schema>& schema() const = 0;
};

struct LakeOptions {
  Clock* clock = Clock::Real();
  int64_t target_file_bytes = 128 << 20;  // compressed bytes per data file before rolling
  int compression_level = 3;
  int64_t read_batch_rows = 8192;
  std::string writer_id;  // recorded in snapshot summaries (e.g. user@host)
  // Tests only: called at named points of a commit ("files_written": data files are durable,
  // the catalog transaction has not begun; "catalog_commit": inside the catalog transaction,
  // just before COMMIT), so a test can kill the process there.
  std::function<void(std::string_view point)> fault_hook;
};

struct ScanOptions {
  std::optional<int64_t> snapshot;   // latest when unset
  std::vector<std::string> columns;  // all when empty
  // Only files whose partition value is in this list (e.g. {"day=2026-11-27"}); all when empty.
  std::vector<std::string> partitions;
  // Parse each data file on this many threads (plus one that decompresses); rows still come
  // in the same order. 1: on the caller's thread.
  int threads = 1;
};

struct CompactOptions {
  int64_t target_file_bytes = 128 << 20;
  int64_t small_file_bytes = 16 << 20;  // files below this are merged, per partition
};

struct ExpireOptions {
  // Keep the newest `keep_last` snapshots (at least the latest one) and every snapshot newer
  // than `older_than`.
  int64_t keep_last = 10;
  std::optional<Clock::WallTime> older_than;
  bool delete_orphans = true;  // files no snapshot references (from failed commits)
};

class Lake {
 public:
  // Opens (creating when `create`) the lake at `root`. kNotFound when absent and !create.
  static StatusOr<std::unique_ptr<Lake>> Open(const std::filesystem::path& root,
                                              const LakeOptions& options, bool create);
  virtual ~Lake() = default;

  virtual const std::filesystem::path& root() const = 0;

  virtual StatusOr<SnapshotInfo> CreateTable(const std::string& name, const Schema& schema,
                                             const PartitionSpec& partition) = 0;
  virtual StatusOr<std::vector<TableInfo>> ListTables() = 0;
  // The table as of `snapshot` (latest when unset). kNotFound for unknown tables, or a table
  // that did not exist at that snapshot.
  virtual StatusOr<TableInfo> Describe(const std::string& table,
                                       std::optional<int64_t> snapshot = std::nullopt) = 0;
  virtual StatusOr<std::vector<DataFileInfo>> Files(
      const std::string& table, std::optional<int64_t> snapshot = std::nullopt) = 0;
  // Snapshots that changed `table` (all snapshots when empty), newest first.
  virtual StatusOr<std::vector<SnapshotInfo>> History(const std::string& table) = 0;
  virtual StatusOr<int64_t> LatestSnapshot() = 0;

  virtual StatusOr<std::unique_ptr<Transaction>> Begin() = 0;
  virtual StatusOr<std::unique_ptr<TableReader>> Scan(const std::string& table,
                                                      const ScanOptions& options) = 0;

  // The watermark `name` of `table` at `snapshot` (latest when unset); nullopt when never set.
  virtual StatusOr<std::optional<std::string>> Watermark(
      const std::string& table, const std::string& name,
      std::optional<int64_t> snapshot = std::nullopt) = 0;

  // Schema evolution as its own commit. Adding a column, renaming, dropping, and widening
  // (CanWiden) rewrite no data; anything else is kInvalidArgument.
  virtual StatusOr<SnapshotInfo> AlterTable(const std::string& table,
                                            const SchemaChange& change) = 0;
  // Merges small files per partition into larger ones, as a commit that changes no row. When no
  // partition has two small files, nothing is committed and the latest snapshot is returned.
  virtual StatusOr<SnapshotInfo> Compact(const std::string& table,
                                         const CompactOptions& options) = 0;
  // Forgets old snapshots and deletes files only they referenced. Readers of retained snapshots
  // are unaffected. Returns the number of files deleted.
  virtual StatusOr<int64_t> Expire(const ExpireOptions& options) = 0;
};

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_LAKE_H_
