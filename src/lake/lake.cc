#include "lake/lake.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "common/logging.h"
#include "lake/fs.h"
#include "lake/sqlite_db.h"
#include "lake/value_text.h"

namespace edgeloop::lake {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kCatalogVersion = 1;
constexpr size_t kMaxOpenPartitionFiles = 8;

// Version 1 of the catalog. Every later version adds a migration to kMigrations below.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE lake_metadata(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE snapshots(
  snapshot_id INTEGER PRIMARY KEY,
  time_us INTEGER NOT NULL,
  operation TEXT NOT NULL,
  summary TEXT NOT NULL,
  rows_added INTEGER NOT NULL,
  rows_removed INTEGER NOT NULL,
  files_added INTEGER NOT NULL,
  files_removed INTEGER NOT NULL);
CREATE TABLE snapshot_changes(
  snapshot_id INTEGER NOT NULL,
  table_id INTEGER NOT NULL,
  PRIMARY KEY(snapshot_id, table_id));
CREATE TABLE tables(
  table_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  partition_transform TEXT NOT NULL,
  partition_field_id INTEGER,
  begin_snapshot INTEGER NOT NULL,
  end_snapshot INTEGER);
CREATE TABLE schema_versions(
  table_id INTEGER NOT NULL,
  schema_version INTEGER NOT NULL,
  begin_snapshot INTEGER NOT NULL,
  PRIMARY KEY(table_id, schema_version));
CREATE TABLE columns(
  table_id INTEGER NOT NULL,
  schema_version INTEGER NOT NULL,
  position INTEGER NOT NULL,
  field_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  PRIMARY KEY(table_id, schema_version, position));
CREATE TABLE data_files(
  file_id INTEGER PRIMARY KEY,
  table_id INTEGER NOT NULL,
  path TEXT NOT NULL UNIQUE,
  partition TEXT NOT NULL,
  format TEXT NOT NULL,
  record_count INTEGER NOT NULL,
  file_size_bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  begin_snapshot INTEGER NOT NULL,
  end_snapshot INTEGER);
CREATE INDEX data_files_by_table ON data_files(table_id, end_snapshot);
CREATE TABLE file_column_stats(
  file_id INTEGER NOT NULL,
  field_id INTEGER NOT NULL,
  null_count INTEGER NOT NULL,
  min_value TEXT,
  max_value TEXT,
  PRIMARY KEY(file_id, field_id));
CREATE TABLE watermarks(
  table_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  snapshot_id INTEGER NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(table_id, name, snapshot_id));
)sql";

int64_t ToMicros(Clock::WallTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
Clock::WallTime FromMicros(int64_t us) {
  return Clock::WallTime(
      std::chrono::duration_cast<Clock::WallTime::duration>(std::chrono::microseconds(us)));
}

Status ValidateTableName(const std::string& name) {
  if (name.empty() || name.size() > 128) {
    return InvalidArgumentError("table name '" + name + "' must be 1-128 characters");
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      return InvalidArgumentError("table name '" + name +
                                  "' may hold only letters, digits, '_' and '-'");
    }
  }
  return Status::Ok();
}

std::string_view TransformName(PartitionSpec::Transform t) {
  switch (t) {
    case PartitionSpec::Transform::kNone:
      return "none";
    case PartitionSpec::Transform::kIdentity:
      return "identity";
    case PartitionSpec::Transform::kDay:
      return "day";
    case PartitionSpec::Transform::kMonth:
      return "month";
  }
  return "none";
}

PartitionSpec::Transform TransformFromName(std::string_view name) {
  if (name == "identity") return PartitionSpec::Transform::kIdentity;
  if (name == "day") return PartitionSpec::Transform::kDay;
  if (name == "month") return PartitionSpec::Transform::kMonth;
  return PartitionSpec::Transform::kNone;
}

// A path segment that cannot escape its folder: bytes outside [A-Za-z0-9_.-] become %XX, a
// leading '.' too (no "." or ".."), and long values are cut and suffixed with a hash.
std::string EscapePathSegment(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    const bool plain = std::isalnum(c) || c == '_' || c == '-' || (c == '.' && i > 0);
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (out.size() > 150) {
    uint64_t h = 1469598103934665603ULL;  // FNV-1a of the whole value
    for (char c : value) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    out.resize(120);
    while (!out.empty() && out.back() == '%') out.pop_back();
    if (out.size() >= 2 && out[out.size() - 2] == '%') out.resize(out.size() - 2);
    out.push_back('~');
    for (int i = 15; i >= 0; --i) out.push_back(kHex[(h >> (i * 4)) & 15]);
  }
  return out;
}

std::string SummaryToJson(const std::map<std::string, std::string>& summary) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : summary) j[k] = v;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::map<std::string, std::string> SummaryFromJson(const std::string& text) {
  std::map<std::string, std::string> out;
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return out;
  for (const auto& [k, v] : j.items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

// The lock that marks a transaction alive while its data files are not yet committed: Expire
// leaves files of a transaction whose lock is held alone. flock locks vanish with the process,
// so a killed writer's files become collectable orphans.
class TxnLock {
 public:
  static StatusOr<std::unique_ptr<TxnLock>> Acquire(const fs::path& dir, const std::string& id) {
    const fs::path tmp = dir / (id + ".lock.tmp");
    const fs::path path = dir / (id + ".lock");
    const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return InternalError("cannot create " + tmp.string() + ": " + ErrnoText(errno));
    // Locked before it gets the name Expire looks at, so it is never seen unlocked while alive.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return InternalError("cannot lock " + path.string() + ": " + ErrnoText(err));
    }
    return std::unique_ptr<TxnLock>(new TxnLock(path, fd));
  }
  ~TxnLock() {
    ::unlink(path_.c_str());
    ::close(fd_);
  }

 private:
  TxnLock(fs::path path, int fd) : path_(std::move(path)), fd_(fd) {}
  fs::path path_;
  int fd_;
};

enum class LockState { kAbsent, kAlive, kDead };

// Whether the transaction `id` is still running. A dead one's lock file is removed.
LockState ProbeTxnLock(const fs::path& dir, const std::string& id) {
  const fs::path path = dir / (id + ".lock");
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return LockState::kAbsent;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return LockState::kAlive;
  }
  ::unlink(path.c_str());
  ::close(fd);
  return LockState::kDead;
}

struct TableRow {
  int64_t table_id = 0;
  std::string name;
  std::string transform;
  std::optional<int32_t> partition_field_id;
  int64_t begin_snapshot = 0;
};

struct NewFile {
  std::string path;  // relative to the root
  std::string partition;
  FileStats stats;
};

class LakeImpl;

// The files of one table in one transaction, written through one writer per partition.
class TableWriterImpl : public TableWriter {
 public:
  TableWriterImpl(LakeImpl* lake, TableRow table, std::shared_ptr<const Schema> schema,
                  PartitionSpec partition, std::string txn_id, int64_t target_bytes)
      : lake_(lake),
        table_(std::move(table)),
        schema_(std::move(schema)),
        partition_(std::move(partition)),
        partition_index_(partition_.transform == PartitionSpec::Transform::kNone
                             ? -1
                             : schema_->IndexOf(partition_.column)),
        txn_id_(std::move(txn_id)),
        target_bytes_(target_bytes) {}

  Status Write(const Batch& batch) override;
  int64_t rows_written() const override { return rows_; }
  int64_t memory_bytes() const override {
    int64_t bytes = 0;
    for (const auto& [partition, file] : open_) bytes += file.writer->memory_bytes();
    return bytes;
  }

  // Finishes every open file; `files` then holds everything written.
  Status FinishAll();

  const TableRow& table() const { return table_; }
  const std::shared_ptr<const Schema>& schema() const { return schema_; }
  std::vector<NewFile>& files() { return files_; }
  bool overwrite = false;
  bool closed = false;            // set when the transaction commits
  std::vector<int64_t> removals;  // file ids this commit removes (compaction)

 private:
  struct OpenFile {
    std::unique_ptr<DataFileWriter> writer;
    std::string path;
    uint64_t last_use = 0;
  };

  // The folder name of row `i`'s partition, e.g. "day=2026-11-27".
  std::string PartitionOf(const Batch& batch, int64_t i) const;
  Status WriteTo(const std::string& partition, const Batch& batch);
  Status Close(const std::string& partition);

  LakeImpl* lake_;
  TableRow table_;
  std::shared_ptr<const Schema> schema_;
  PartitionSpec partition_;
  int partition_index_;
  std::string txn_id_;
  int64_t target_bytes_;
  std::map<std::string, OpenFile> open_;
  std::map<std::string, Batch> scratch_;  // per-partition rows of the current batch
  std::vector<NewFile> files_;
  int64_t rows_ = 0;
  int64_t seq_ = 0;
  uint64_t uses_ = 0;
};

class TransactionImpl : public Transaction {
 public:
  TransactionImpl(LakeImpl* lake, int64_t start) : lake_(lake), start_(start) {}
  StatusOr<TableWriter*> Writer(const std::string& table, bool overwrite) override;
  void SetWatermark(const std::string& table, const std::string& name,
                    const std::string& value) override {
    watermarks_[table][name] = value;
  }
  void SetSummary(const std::string& key, const std::string& value) override {
    summary_[key] = value;
  }
  StatusOr<SnapshotInfo> Commit() override;
  int64_t start_snapshot() const override { return start_; }

  // Compaction: a writer with its own file size that removes `removals`.
  StatusOr<TableWriterImpl*> WriterFor(const std::string& table, int64_t target_bytes);
  void set_operation(std::string op) { operation_ = std::move(op); }

 private:
  Status EnsureLock();

  LakeImpl* lake_;
  int64_t start_;
  std::string id_ = RandomId();
  std::unique_ptr<TxnLock> lock_;
  std::map<std::string, std::unique_ptr<TableWriterImpl>> writers_;
  std::map<std::string, std::map<std::string, std::string>> watermarks_;
  std::map<std::string, std::string> summary_;
  std::string operation_;
  bool committed_ = false;
};

class TableReaderImpl : public TableReader {
 public:
  struct FileToRead {
    fs::path path;
    int64_t bytes = 0;
    std::shared_ptr<const Schema> schema;
  };
  TableReaderImpl(std::shared_ptr<const Schema> schema, std::vector<FileToRead> files,
                  int64_t batch_rows, int threads)
      : schema_(std::move(schema)),
        files_(std::move(files)),
        batch_rows_(batch_rows),
        threads_(threads) {}

  StatusOr<bool> Next(Batch* batch) override {
    while (true) {
      if (reader_ == nullptr) {
        if (next_ >= files_.size()) return false;
        const FileToRead& f = files_[next_++];
        std::error_code ec;
        const auto size = fs::file_size(f.path, ec);
        if (ec)
          return DataLossError("data file " + f.path.string() + " is missing: " + ec.message());
        if (static_cast<int64_t>(size) != f.bytes) {
          return DataLossError("data file " + f.path.string() + " has " + std::to_string(size) +
                               " bytes, the catalog recorded " + std::to_string(f.bytes));
        }
        ASSIGN_OR_RETURN(reader_, OpenDataFileReader(f.path, f.schema, schema_, threads_));
      }
      ASSIGN_OR_RETURN(const bool more, reader_->Next(batch, batch_rows_));
      if (more) return true;
      reader_.reset();
    }
  }
  const std::shared_ptr<const Schema>& schema() const override { return schema_; }

 private:
  std::shared_ptr<const Schema> schema_;
  std::vector<FileToRead> files_;
  size_t next_ = 0;
  int64_t batch_rows_;
  int threads_;
  std::unique_ptr<DataFileReader> reader_;
};

class LakeImpl : public Lake {
 public:
  LakeImpl(fs::path root, LakeOptions options)
      : root_(std::move(root)), options_(std::move(options)) {}

  Status Init(bool create);

  const fs::path& root() const override { return root_; }
  const LakeOptions& options() const { return options_; }

  StatusOr<SnapshotInfo> CreateTable(const std::string& name, const Schema& schema,
                                     const PartitionSpec& partition) override;
  StatusOr<std::vector<TableInfo>> ListTables() override;
  StatusOr<TableInfo> Describe(const std::string& table, std::optional<int64_t> snapshot) override;
  StatusOr<std::vector<DataFileInfo>> Files(const std::string& table,
                                            std::optional<int64_t> snapshot) override;
  StatusOr<std::vector<SnapshotInfo>> History(const std::string& table) override;
  StatusOr<int64_t> LatestSnapshot() override;
  StatusOr<std::unique_ptr<Transaction>> Begin() override;
  StatusOr<std::unique_ptr<TableReader>> Scan(const std::string& table,
                                              const ScanOptions& options) override;
  StatusOr<std::optional<std::string>> Watermark(const std::string& table, const std::string& name,
                                                 std::optional<int64_t> snapshot) override;
  StatusOr<SnapshotInfo> AlterTable(const std::string& table, const SchemaChange& change) override;
  StatusOr<SnapshotInfo> Compact(const std::string& table, const CompactOptions& options) override;
  StatusOr<int64_t> Expire(const ExpireOptions& options) override;

  // A pooled catalog connection, returned on destruction.
  class Conn {
   public:
    Conn(LakeImpl* lake, std::unique_ptr<Db> db) : lake_(lake), db_(std::move(db)) {}
    Conn(Conn&&) = default;
    ~Conn() {
      if (db_ != nullptr) lake_->Release(std::move(db_));
    }
    Db* operator->() { return db_.get(); }
    Db* get() { return db_.get(); }

   private:
    LakeImpl* lake_;
    std::unique_ptr<Db> db_;
  };
  StatusOr<Conn> Acquire();
  void Release(std::unique_ptr<Db> db) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < 8) idle_.push_back(std::move(db));
  }

  // Catalog reads used by several operations; all take an open connection.
  StatusOr<int64_t> Latest(Db* db);
  // `snapshot` resolved (latest when unset) and checked to exist.
  StatusOr<int64_t> Resolve(Db* db, std::optional<int64_t> snapshot);
  StatusOr<TableRow> FindTable(Db* db, const std::string& name, int64_t snapshot);
  StatusOr<std::shared_ptr<const Schema>> LoadSchema(Db* db, int64_t table_id, int32_t version);
  StatusOr<int32_t> SchemaVersionAt(Db* db, int64_t table_id, int64_t snapshot);
  StatusOr<TableInfo> DescribeAt(Db* db, const TableRow& row, int64_t snapshot);
  StatusOr<std::vector<DataFileInfo>> FilesAt(Db* db, int64_t table_id, int64_t snapshot,
                                              bool with_stats);
  StatusOr<SnapshotInfo> InsertSnapshot(Db* db, int64_t id, const std::string& operation,
                                        std::map<std::string, std::string> summary,
                                        int64_t rows_added, int64_t rows_removed,
                                        int64_t files_added, int64_t files_removed);
  void Fault(std::string_view point) const {
    if (options_.fault_hook) options_.fault_hook(point);
  }
  fs::path txn_dir() const { return root_ / "txn"; }

 private:
  Status InsertSchema(Db* db, int64_t table_id, const Schema& schema, int64_t snapshot);

  const fs::path root_;
  const LakeOptions options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Db>> idle_;  // GUARDED_BY(mu_)
};

SnapshotInfo ReadSnapshot(const Stmt& s) {
  SnapshotInfo info;
  info.id = s.Int(0);
  info.time = FromMicros(s.Int(1));
  info.operation = s.Text(2);
  info.summary = SummaryFromJson(s.Text(3));
  info.rows_added = s.Int(4);
  info.rows_removed = s.Int(5);
  info.files_added = s.Int(6);
  info.files_removed = s.Int(7);
  return info;
}

constexpr const char* kSnapshotColumns =
    "snapshot_id, time_us, operation, summary, rows_added, rows_removed, files_added, "
    "files_removed";

// ---------------------------------------------------------------------------------------------
// LakeImpl: catalog

Status LakeImpl::Init(bool create) {
  const fs::path catalog = root_ / "catalog.sqlite";
  std::error_code ec;
  if (!fs::exists(catalog, ec)) {
    if (!create) return NotFoundError("no lake at " + root_.string() + " (no catalog.sqlite)");
    fs::create_directories(root_, ec);
    if (ec) return InternalError("cannot create " + root_.string() + ": " + ec.message());
  }
  for (const char* sub : {"tables", "txn"}) {
    fs::create_directories(root_ / sub, ec);
    if (ec) return InternalError("cannot create " + (root_ / sub).string() + ": " + ec.message());
  }
  ASSIGN_OR_RETURN(auto db, Db::Open(catalog, create));
  {
    ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), true));
    ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT count(*) FROM sqlite_master WHERE name = "
                                         "'lake_metadata'"));
    ASSIGN_OR_RETURN(const bool row, q.Step());
    const bool fresh = !row || q.Int(0) == 0;
    if (fresh) {
      RETURN_IF_ERROR(db->Exec(kSchemaV1));
      ASSIGN_OR_RETURN(auto ins,
                       db->Prepare("INSERT INTO lake_metadata(key, value) VALUES (?, ?)"));
      RETURN_IF_ERROR(
          ins.Bind(1, "catalog_version").Bind(2, std::to_string(kCatalogVersion)).Run());
      ins.Reset();
      RETURN_IF_ERROR(
          ins.Bind(1, "created_at").Bind(2, FormatRfc3339(options_.clock->WallNow())).Run());
      ins.Reset();
      RETURN_IF_ERROR(ins.Bind(1, "data_format").Bind(2, DefaultDataFormat().name).Run());
    } else {
      ASSIGN_OR_RETURN(auto v, db->Prepare("SELECT value FROM lake_metadata WHERE key = "
                                           "'catalog_version'"));
      ASSIGN_OR_RETURN(const bool has, v.Step());
      const int64_t version = has ? std::stoll(v.Text(0)) : 0;
      if (version > kCatalogVersion) {
        return FailedPreconditionError("the catalog of " + root_.string() + " has version " +
                                       std::to_string(version) + "; this build reads up to " +
                                       std::to_string(kCatalogVersion));
      }
      if (version < 1) return DataLossError("the catalog of " + root_.string() + " has no version");
      // Migrations from older versions go here, one step per version.
    }
    RETURN_IF_ERROR(txn->Commit());
  }
  RETURN_IF_ERROR(SyncDirectory(root_));
  Release(std::move(db));
  return Status::Ok();
}

StatusOr<LakeImpl::Conn> LakeImpl::Acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto db = std::move(idle_.back());
      idle_.pop_back();
      return Conn(this, std::move(db));
    }
  }
  ASSIGN_OR_RETURN(auto db, Db::Open(root_ / "catalog.sqlite", false));
  return Conn(this, std::move(db));
}

StatusOr<int64_t> LakeImpl::Latest(Db* db) {
  ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT coalesce(max(snapshot_id), 0) FROM snapshots"));
  ASSIGN_OR_RETURN(const bool row, q.Step());
  return row ? q.Int(0) : 0;
}

StatusOr<int64_t> LakeImpl::Resolve(Db* db, std::optional<int64_t> snapshot) {
  ASSIGN_OR_RETURN(const int64_t latest, Latest(db));
  if (!snapshot) return latest;
  if (*snapshot < 1 || *snapshot > latest) {
    return NotFoundError("snapshot " + std::to_string(*snapshot) +
                         " does not exist (the latest is " + std::to_string(latest) + ")");
  }
  ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT coalesce(min(snapshot_id), 0) FROM snapshots"));
  ASSIGN_OR_RETURN(const bool row, q.Step());
  const int64_t oldest = row ? q.Int(0) : 0;
  if (*snapshot < oldest) {
    return NotFoundError("snapshot " + std::to_string(*snapshot) +
                         " was expired (the oldest retained snapshot is " + std::to_string(oldest) +
                         ")");
  }
  return *snapshot;
}

StatusOr<TableRow> LakeImpl::FindTable(Db* db, const std::string& name, int64_t snapshot) {
  ASSIGN_OR_RETURN(auto q,
                   db->Prepare("SELECT table_id, partition_transform, partition_field_id, "
                               "begin_snapshot FROM tables WHERE name = ? AND begin_snapshot <= ? "
                               "AND (end_snapshot IS NULL OR end_snapshot > ?)"));
  q.Bind(1, name).Bind(2, snapshot).Bind(3, snapshot);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) {
    return NotFoundError("table '" + name + "' does not exist" +
                         (snapshot > 0 ? " at snapshot " + std::to_string(snapshot) : ""));
  }
  TableRow t;
  t.table_id = q.Int(0);
  t.name = name;
  t.transform = q.Text(1);
  if (!q.IsNull(2)) t.partition_field_id = static_cast<int32_t>(q.Int(2));
  t.begin_snapshot = q.Int(3);
  return t;
}

StatusOr<std::shared_ptr<const Schema>> LakeImpl::LoadSchema(Db* db, int64_t table_id,
                                                             int32_t version) {
  ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT field_id, name, type FROM columns WHERE table_id = "
                                       "? AND schema_version = ? ORDER BY position"));
  q.Bind(1, table_id).Bind(2, int64_t{version});
  auto schema = std::make_shared<Schema>();
  schema->version = version;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(const Type type, ParseType(q.Text(2)));
    schema->fields.push_back({static_cast<int32_t>(q.Int(0)), q.Text(1), type});
  }
  if (schema->fields.empty()) {
    return DataLossError("catalog has no columns for schema version " + std::to_string(version) +
                         " of table id " + std::to_string(table_id));
  }
  return std::shared_ptr<const Schema>(std::move(schema));
}

StatusOr<int32_t> LakeImpl::SchemaVersionAt(Db* db, int64_t table_id, int64_t snapshot) {
  ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT max(schema_version) FROM schema_versions WHERE "
                                       "table_id = ? AND begin_snapshot <= ?"));
  q.Bind(1, table_id).Bind(2, snapshot);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row || q.IsNull(0)) return DataLossError("catalog has no schema for the table");
  return static_cast<int32_t>(q.Int(0));
}

StatusOr<TableInfo> LakeImpl::DescribeAt(Db* db, const TableRow& row, int64_t snapshot) {
  TableInfo info;
  info.name = row.name;
  ASSIGN_OR_RETURN(const int32_t version, SchemaVersionAt(db, row.table_id, snapshot));
  ASSIGN_OR_RETURN(auto schema, LoadSchema(db, row.table_id, version));
  info.schema = *schema;
  info.partition.transform = TransformFromName(row.transform);
  if (row.partition_field_id) {
    for (const Field& f : schema->fields) {
      if (f.id == *row.partition_field_id) info.partition.column = f.name;
    }
  }
  info.created_snapshot = row.begin_snapshot;
  ASSIGN_OR_RETURN(auto q,
                   db->Prepare("SELECT count(*), coalesce(sum(record_count), 0), "
                               "coalesce(sum(file_size_bytes), 0) FROM data_files WHERE table_id "
                               "= ? AND begin_snapshot <= ? AND (end_snapshot IS NULL OR "
                               "end_snapshot > ?)"));
  q.Bind(1, row.table_id).Bind(2, snapshot).Bind(3, snapshot);
  ASSIGN_OR_RETURN(const bool got, q.Step());
  if (got) {
    info.files = q.Int(0);
    info.rows = q.Int(1);
    info.bytes = q.Int(2);
  }
  return info;
}

StatusOr<std::vector<DataFileInfo>> LakeImpl::FilesAt(Db* db, int64_t table_id, int64_t snapshot,
                                                      bool with_stats) {
  ASSIGN_OR_RETURN(auto q,
                   db->Prepare("SELECT file_id, path, partition, record_count, file_size_bytes, "
                               "sha256, schema_version, begin_snapshot FROM data_files WHERE "
                               "table_id = ? AND begin_snapshot <= ? AND (end_snapshot IS NULL "
                               "OR end_snapshot > ?) ORDER BY file_id"));
  q.Bind(1, table_id).Bind(2, snapshot).Bind(3, snapshot);
  std::vector<DataFileInfo> files;
  std::vector<int64_t> ids;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    DataFileInfo f;
    ids.push_back(q.Int(0));
    f.path = q.Text(1);
    f.partition = q.Text(2);
    f.stats.rows = q.Int(3);
    f.stats.bytes = q.Int(4);
    f.stats.sha256 = q.Text(5);
    f.schema_version = static_cast<int32_t>(q.Int(6));
    f.added_snapshot = q.Int(7);
    files.push_back(std::move(f));
  }
  if (with_stats) {
    ASSIGN_OR_RETURN(auto s, db->Prepare("SELECT field_id, null_count, min_value, max_value FROM "
                                         "file_column_stats WHERE file_id = ? ORDER BY field_id"));
    for (size_t i = 0; i < files.size(); ++i) {
      s.Reset();
      s.Bind(1, ids[i]);
      while (true) {
        ASSIGN_OR_RETURN(const bool row, s.Step());
        if (!row) break;
        ColumnStats c;
        c.field_id = static_cast<int32_t>(s.Int(0));
        c.null_count = s.Int(1);
        c.min = s.OptText(2);
        c.max = s.OptText(3);
        files[i].stats.columns.push_back(std::move(c));
      }
    }
  }
  return files;
}

StatusOr<SnapshotInfo> LakeImpl::InsertSnapshot(Db* db, int64_t id, const std::string& operation,
                                                std::map<std::string, std::string> summary,
                                                int64_t rows_added, int64_t rows_removed,
                                                int64_t files_added, int64_t files_removed) {
  if (!options_.writer_id.empty() && !summary.contains("writer")) {
    summary["writer"] = options_.writer_id;
  }
  SnapshotInfo info;
  info.id = id;
  info.time = options_.clock->WallNow();
  info.operation = operation;
  info.summary = std::move(summary);
  info.rows_added = rows_added;
  info.rows_removed = rows_removed;
  info.files_added = files_added;
  info.files_removed = files_removed;
  ASSIGN_OR_RETURN(auto q, db->Prepare("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  q.Bind(1, id)
      .Bind(2, ToMicros(info.time))
      .Bind(3, operation)
      .Bind(4, SummaryToJson(info.summary))
      .Bind(5, rows_added)
      .Bind(6, rows_removed)
      .Bind(7, files_added)
      .Bind(8, files_removed);
  RETURN_IF_ERROR(q.Run());
  return info;
}

Status LakeImpl::InsertSchema(Db* db, int64_t table_id, const Schema& schema, int64_t snapshot) {
  ASSIGN_OR_RETURN(auto v, db->Prepare("INSERT INTO schema_versions VALUES (?, ?, ?)"));
  RETURN_IF_ERROR(v.Bind(1, table_id).Bind(2, int64_t{schema.version}).Bind(3, snapshot).Run());
  ASSIGN_OR_RETURN(auto c, db->Prepare("INSERT INTO columns VALUES (?, ?, ?, ?, ?, ?)"));
  for (size_t i = 0; i < schema.fields.size(); ++i) {
    const Field& f = schema.fields[i];
    c.Reset();
    RETURN_IF_ERROR(c.Bind(1, table_id)
                        .Bind(2, int64_t{schema.version})
                        .Bind(3, static_cast<int64_t>(i))
                        .Bind(4, int64_t{f.id})
                        .Bind(5, f.name)
                        .Bind(6, TypeName(f.type))
                        .Run());
  }
  return Status::Ok();
}

Status AddChange(Db* db, int64_t snapshot, int64_t table_id) {
  ASSIGN_OR_RETURN(auto q, db->Prepare("INSERT OR IGNORE INTO snapshot_changes VALUES (?, ?)"));
  return q.Bind(1, snapshot).Bind(2, table_id).Run();
}

StatusOr<SnapshotInfo> LakeImpl::CreateTable(const std::string& name, const Schema& schema_in,
                                             const PartitionSpec& partition) {
  RETURN_IF_ERROR(ValidateTableName(name));
  Schema schema = schema_in;
  schema.version = 1;
  RETURN_IF_ERROR(ValidateSchema(schema));
  int32_t next_id = schema.next_field_id();
  for (Field& f : schema.fields) {
    if (f.id == 0) f.id = next_id++;
  }
  std::optional<int32_t> partition_field;
  if (partition.transform != PartitionSpec::Transform::kNone) {
    const Field* f = schema.Find(partition.column);
    if (f == nullptr) {
      return InvalidArgumentError("partition column '" + partition.column + "' is not a column");
    }
    if ((partition.transform == PartitionSpec::Transform::kDay ||
         partition.transform == PartitionSpec::Transform::kMonth) &&
        f->type != Type::kTimestamp && f->type != Type::kDate) {
      return InvalidArgumentError("partition " + PartitionSpecToString(partition) +
                                  " needs a timestamp or date column; '" + f->name + "' is " +
                                  std::string(TypeName(f->type)));
    }
    partition_field = f->id;
  }
  std::error_code ec;
  fs::create_directories(root_ / "tables" / name, ec);
  if (ec) return InternalError("cannot create the table folder: " + ec.message());
  RETURN_IF_ERROR(SyncDirectory(root_ / "tables"));

  ASSIGN_OR_RETURN(auto db, Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), true));
  ASSIGN_OR_RETURN(const int64_t latest, Latest(db.get()));
  if (FindTable(db.get(), name, latest).ok()) {
    return AlreadyExistsError("table '" + name + "' already exists");
  }
  const int64_t snapshot = latest + 1;
  ASSIGN_OR_RETURN(auto ins,
                   db->Prepare("INSERT INTO tables(name, partition_transform, "
                               "partition_field_id, begin_snapshot) VALUES (?, ?, ?, ?)"));
  ins.Bind(1, name).Bind(2, TransformName(partition.transform)).Bind(4, snapshot);
  if (partition_field) ins.Bind(3, int64_t{*partition_field});
  RETURN_IF_ERROR(ins.Run());
  const int64_t table_id = db->LastInsertId();
  RETURN_IF_ERROR(InsertSchema(db.get(), table_id, schema, snapshot));
  RETURN_IF_ERROR(AddChange(db.get(), snapshot, table_id));
  ASSIGN_OR_RETURN(auto info,
                   InsertSnapshot(db.get(), snapshot, "create", {{"table", name}}, 0, 0, 0, 0));
  RETURN_IF_ERROR(txn->Commit());
  log::Info("lake table created", {{"table", name}, {"snapshot", snapshot}});
  return info;
}

StatusOr<std::vector<TableInfo>> LakeImpl::ListTables() {
  ASSIGN_OR_RETURN(auto db, Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), false));
  ASSIGN_OR_RETURN(const int64_t latest, Latest(db.get()));
  ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT name FROM tables WHERE end_snapshot IS NULL "
                                       "ORDER BY name"));
  std::vector<std::string> names;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    names.push_back(q.Text(0));
  }
  std::vector<TableInfo> out;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(const TableRow t, FindTable(db.get(), name, latest));
    ASSIGN_OR_RETURN(auto info, DescribeAt(db.get(), t, latest));
    out.push_back(std::move(info));
  }
  return out;
}

StatusOr<TableInfo> LakeImpl::Describe(const std::string& table, std::optional<int64_t> snapshot) {
  ASSIGN_OR_RETURN(auto db, Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), false));
  ASSIGN_OR_RETURN(const int64_t s, Resolve(db.get(), snapshot));
  ASSIGN_OR_RETURN(const TableRow t, FindTable(db.get(), table, s));
  return DescribeAt(db.get(), t, s);
}

StatusOr<std::vector<DataFileInfo>> LakeImpl::Files(const std::string& table,
                                                    std::optional<int64_t> snapshot) {
  ASSIGN_OR_RETURN(auto db, Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), false));
  ASSIGN_OR_RETURN(const int64_t s, Resolve(db.get(), snapshot));
  ASSIGN_OR_RETURN(const TableRow t, FindTable(db.get(), table, s));
  return FilesAt(db.get(), t.table_id, s, true);
}

StatusOr<std::vector<SnapshotInfo>> LakeImpl::History(const std::string& table) {
  ASSIGN_OR_RETURN(auto db, Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), false));
  std::string sql = "SELECT " + std::string(kSnapshotColumns) + " FROM snapshots";
  if (!table.empty()) {
    ASSIGN_OR_RETURN(auto t, db->Prepare("SELECT count(*) FROM tables WHERE name = ?"));
    t.Bind(1, table);
    ASSIGN_OR_RETURN(const bool row, t.Step());
    if (!row || t.Int(0) == 0) return NotFoundError("table '" + table + "' does not exist");
    sql +=
        " WHERE snapshot_id IN (SELECT c.snapshot_id FROM snapshot_changes c JOIN tables t ON "
        "c.table_id = t.table_id WHERE t.name = ?)";
  }
  sql += " ORDER BY snapshot_id DESC";
  ASSIGN_OR_RETURN(auto q, db->Prepare(sql));
  if (!table.empty()) q.Bind(1, table);
  std::vector<SnapshotInfo> out;
  while (true) {
    ASSIGN_OR_RETURN(const bool row, q.Step());
    if (!row) break;
    out.push_back(ReadSnapshot(q));
  }
  return out;
}

StatusOr<int64_t> LakeImpl::LatestSnapshot() {
  ASSIGN_OR_RETURN(auto db, Acquire());
  return Latest(db.get());
}

StatusOr<std::unique_ptr<Transaction>> LakeImpl::Begin() {
  ASSIGN_OR_RETURN(const int64_t start, LatestSnapshot());
  return std::unique_ptr<Transaction>(new TransactionImpl(this, start));
}

StatusOr<std::unique_ptr<TableReader>> LakeImpl::Scan(const std::string& table,
                                                      const ScanOptions& options) {
  ASSIGN_OR_RETURN(auto db, Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), false));
  ASSIGN_OR_RETURN(const int64_t s, Resolve(db.get(), options.snapshot));
  ASSIGN_OR_RETURN(const TableRow t, FindTable(db.get(), table, s));
  ASSIGN_OR_RETURN(const int32_t version, SchemaVersionAt(db.get(), t.table_id, s));
  ASSIGN_OR_RETURN(auto table_schema, LoadSchema(db.get(), t.table_id, version));
  std::shared_ptr<const Schema> read_schema = table_schema;
  if (!options.columns.empty()) {
    auto projected = std::make_shared<Schema>();
    projected->version = table_schema->version;
    for (const std::string& name : options.columns) {
      const Field* f = table_schema->Find(name);
      if (f == nullptr) {
        return InvalidArgumentError("table '" + table + "' has no column '" + name + "'");
      }
      projected->fields.push_back(*f);
    }
    RETURN_IF_ERROR(ValidateSchema(*projected));
    read_schema = std::move(projected);
  }
  ASSIGN_OR_RETURN(auto files, FilesAt(db.get(), t.table_id, s, false));
  std::map<int32_t, std::shared_ptr<const Schema>> schemas{{version, table_schema}};
  std::vector<TableReaderImpl::FileToRead> to_read;
  for (const DataFileInfo& f : files) {
    if (!options.partitions.empty() &&
        std::find(options.partitions.begin(), options.partitions.end(), f.partition) ==
            options.partitions.end()) {
      continue;
    }
    auto it = schemas.find(f.schema_version);
    if (it == schemas.end()) {
      ASSIGN_OR_RETURN(auto fs_schema, LoadSchema(db.get(), t.table_id, f.schema_version));
      it = schemas.emplace(f.schema_version, std::move(fs_schema)).first;
    }
    to_read.push_back({root_ / f.path, f.stats.bytes, it->second});
  }
  return std::unique_ptr<TableReader>(new TableReaderImpl(
      std::move(read_schema), std::move(to_read), options_.read_batch_rows, options.threads));
}

StatusOr<std::optional<std::string>> LakeImpl::Watermark(const std::string& table,
                                                         const std::string& name,
                                                         std::optional<int64_t> snapshot) {
  ASSIGN_OR_RETURN(auto db, Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), false));
  ASSIGN_OR_RETURN(const int64_t s, Resolve(db.get(), snapshot));
  ASSIGN_OR_RETURN(const TableRow t, FindTable(db.get(), table, s));
  ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT value FROM watermarks WHERE table_id = ? AND name "
                                       "= ? AND snapshot_id <= ? ORDER BY snapshot_id DESC "
                                       "LIMIT 1"));
  q.Bind(1, t.table_id).Bind(2, name).Bind(3, s);
  ASSIGN_OR_RETURN(const bool row, q.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(q.Text(0));
}

StatusOr<SnapshotInfo> LakeImpl::AlterTable(const std::string& table, const SchemaChange& change) {
  ASSIGN_OR_RETURN(auto db, Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), true));
  ASSIGN_OR_RETURN(const int64_t latest, Latest(db.get()));
  ASSIGN_OR_RETURN(const TableRow t, FindTable(db.get(), table, latest));
  ASSIGN_OR_RETURN(const int32_t version, SchemaVersionAt(db.get(), t.table_id, latest));
  ASSIGN_OR_RETURN(auto current, LoadSchema(db.get(), t.table_id, version));
  Schema next = *current;
  next.version = version + 1;
  const int index = next.IndexOf(change.column);
  auto missing = [&]() {
    return InvalidArgumentError("table '" + table + "' has no column '" + change.column + "'");
  };
  std::string what;
  switch (change.kind) {
    case SchemaChange::Kind::kAddColumn: {
      if (index >= 0) {
        return InvalidArgumentError("table '" + table + "' already has a column '" + change.column +
                                    "'");
      }
      // Field ids are never reused, not even those of dropped columns.
      ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT coalesce(max(field_id), 0) FROM columns WHERE "
                                           "table_id = ?"));
      q.Bind(1, t.table_id);
      ASSIGN_OR_RETURN(const bool row, q.Step());
      const int32_t id = static_cast<int32_t>(row ? q.Int(0) : 0) + 1;
      next.fields.push_back({id, change.column, change.type});
      what = "add column " + change.column + " " + std::string(TypeName(change.type));
      break;
    }
    case SchemaChange::Kind::kRenameColumn:
      if (index < 0) return missing();
      if (next.IndexOf(change.new_name) >= 0) {
        return InvalidArgumentError("table '" + table + "' already has a column '" +
                                    change.new_name + "'");
      }
      next.fields[index].name = change.new_name;
      what = "rename column " + change.column + " to " + change.new_name;
      break;
    case SchemaChange::Kind::kWidenColumn: {
      if (index < 0) return missing();
      const Type from = next.fields[index].type;
      if (!CanWiden(from, change.type)) {
        return InvalidArgumentError(
            "cannot change column '" + change.column + "' from " + std::string(TypeName(from)) +
            " to " + std::string(TypeName(change.type)) +
            ": only int64 -> double, date -> timestamp and any type -> string are allowed");
      }
      if (t.partition_field_id && *t.partition_field_id == next.fields[index].id &&
          change.type == Type::kString && t.transform != "identity") {
        return InvalidArgumentError("cannot change the partition column '" + change.column +
                                    "' of " + t.transform + "() partitioning to string");
      }
      next.fields[index].type = change.type;
      what = "widen column " + change.column + " to " + std::string(TypeName(change.type));
      break;
    }
    case SchemaChange::Kind::kDropColumn:
      if (index < 0) return missing();
      if (t.partition_field_id && *t.partition_field_id == next.fields[index].id) {
        return InvalidArgumentError("cannot drop column '" + change.column +
                                    "': the table is partitioned by it");
      }
      if (next.fields.size() == 1) {
        return InvalidArgumentError("cannot drop '" + change.column + "', the only column");
      }
      next.fields.erase(next.fields.begin() + index);
      what = "drop column " + change.column;
      break;
  }
  RETURN_IF_ERROR(ValidateSchema(next));
  const int64_t snapshot = latest + 1;
  RETURN_IF_ERROR(InsertSchema(db.get(), t.table_id, next, snapshot));
  RETURN_IF_ERROR(AddChange(db.get(), snapshot, t.table_id));
  ASSIGN_OR_RETURN(auto info, InsertSnapshot(db.get(), snapshot, "alter",
                                             {{"table", table},
                                              {"change", what},
                                              {"schema_version", std::to_string(next.version)}},
                                             0, 0, 0, 0));
  RETURN_IF_ERROR(txn->Commit());
  return info;
}

StatusOr<SnapshotInfo> LakeImpl::Compact(const std::string& table, const CompactOptions& options) {
  ASSIGN_OR_RETURN(auto txn_base, Begin());
  auto* txn = static_cast<TransactionImpl*>(txn_base.get());
  txn->set_operation("compact");
  std::vector<DataFileInfo> files;
  std::map<int32_t, std::shared_ptr<const Schema>> schemas;
  int64_t table_id = 0;
  {
    ASSIGN_OR_RETURN(auto db, Acquire());
    ASSIGN_OR_RETURN(auto read, DbTransaction::Begin(db.get(), false));
    ASSIGN_OR_RETURN(const TableRow t, FindTable(db.get(), table, txn->start_snapshot()));
    table_id = t.table_id;
    ASSIGN_OR_RETURN(files, FilesAt(db.get(), t.table_id, txn->start_snapshot(), false));
    for (const DataFileInfo& f : files) {
      if (!schemas.contains(f.schema_version)) {
        ASSIGN_OR_RETURN(schemas[f.schema_version],
                         LoadSchema(db.get(), t.table_id, f.schema_version));
      }
    }
  }
  // Small files per partition; only partitions with two or more are worth a rewrite.
  std::map<std::string, std::vector<const DataFileInfo*>> small;
  for (const DataFileInfo& f : files) {
    if (f.stats.bytes < options.small_file_bytes) small[f.partition].push_back(&f);
  }
  ASSIGN_OR_RETURN(TableWriterImpl * writer, txn->WriterFor(table, options.target_file_bytes));
  std::vector<int64_t> removed_ids;
  {
    ASSIGN_OR_RETURN(auto db, Acquire());
    ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT file_id FROM data_files WHERE path = ?"));
    for (const auto& [partition, group] : small) {
      if (group.size() < 2) continue;
      for (const DataFileInfo* f : group) {
        q.Reset();
        q.Bind(1, f->path);
        ASSIGN_OR_RETURN(const bool row, q.Step());
        if (!row) return AbortedError("data file " + f->path + " vanished during compaction");
        removed_ids.push_back(q.Int(0));
      }
    }
  }
  (void)table_id;
  if (removed_ids.empty()) {
    ASSIGN_OR_RETURN(auto history, History(""));
    if (history.empty()) return NotFoundError("the lake has no snapshots");
    return history.front();
  }
  Batch batch;
  for (const auto& [partition, group] : small) {
    if (group.size() < 2) continue;
    for (const DataFileInfo* f : group) {
      ASSIGN_OR_RETURN(auto reader, OpenDataFileReader(root_ / f->path, schemas[f->schema_version],
                                                       writer->schema()));
      while (true) {
        ASSIGN_OR_RETURN(const bool more, reader->Next(&batch, options_.read_batch_rows));
        if (!more) break;
        RETURN_IF_ERROR(writer->Write(batch));
      }
    }
  }
  writer->removals = std::move(removed_ids);
  txn->SetSummary("table", table);
  return txn->Commit();
}

StatusOr<int64_t> LakeImpl::Expire(const ExpireOptions& options) {
  std::vector<std::string> doomed;
  int64_t expired_snapshots = 0;
  {
    ASSIGN_OR_RETURN(auto db, Acquire());
    ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), true));
    ASSIGN_OR_RETURN(const int64_t latest, Latest(db.get()));
    if (latest > 0) {
      // Retained snapshots are a suffix: the newest keep_last, and those newer than older_than.
      int64_t keep_from =
          std::max<int64_t>(1, latest - std::max<int64_t>(1, options.keep_last) + 1);
      if (options.older_than) {
        ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT min(snapshot_id) FROM snapshots WHERE "
                                             "time_us >= ?"));
        q.Bind(1, ToMicros(*options.older_than));
        ASSIGN_OR_RETURN(const bool row, q.Step());
        if (row && !q.IsNull(0)) keep_from = std::min(keep_from, q.Int(0));
      }
      ASSIGN_OR_RETURN(auto files, db->Prepare("SELECT path FROM data_files WHERE end_snapshot IS "
                                               "NOT NULL AND end_snapshot <= ?"));
      files.Bind(1, keep_from);
      while (true) {
        ASSIGN_OR_RETURN(const bool row, files.Step());
        if (!row) break;
        doomed.push_back(files.Text(0));
      }
      ASSIGN_OR_RETURN(auto count, db->Prepare("SELECT count(*) FROM snapshots WHERE snapshot_id "
                                               "< ?"));
      count.Bind(1, keep_from);
      ASSIGN_OR_RETURN(const bool got, count.Step());
      expired_snapshots = got ? count.Int(0) : 0;
      const std::string k = std::to_string(keep_from);
      RETURN_IF_ERROR(db->Exec(
          "DELETE FROM file_column_stats WHERE file_id IN (SELECT file_id FROM data_files WHERE "
          "end_snapshot IS NOT NULL AND end_snapshot <= " +
          k +
          ");"
          "DELETE FROM data_files WHERE end_snapshot IS NOT NULL AND end_snapshot <= " +
          k +
          ";"
          "DELETE FROM snapshots WHERE snapshot_id < " +
          k +
          ";"
          "DELETE FROM snapshot_changes WHERE snapshot_id < " +
          k +
          ";"
          // A watermark older than the oldest retained snapshot is needed only if it is the
          // latest one at that snapshot.
          "DELETE FROM watermarks WHERE snapshot_id < (SELECT max(w.snapshot_id) FROM "
          "watermarks w WHERE w.table_id = watermarks.table_id AND w.name = watermarks.name AND "
          "w.snapshot_id <= " +
          k + ");"));
    }
    RETURN_IF_ERROR(txn->Commit());
  }
  int64_t deleted = 0;
  for (const std::string& path : doomed) {
    std::error_code ec;
    if (fs::remove(root_ / path, ec)) ++deleted;
  }
  if (options.delete_orphans) {
    // Order matters: files on disk first, then whose transactions are alive, then the catalog.
    // A transaction that commits after its lock was seen released is already in the catalog.
    std::vector<std::pair<fs::path, std::string>> candidates;  // path, transaction id
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root_ / "tables", ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file()) continue;
      const std::string name = it->path().filename().string();
      const size_t dash = name.find('-');
      if (dash != 32 || (name.find(DefaultDataFormat().extension) == std::string::npos &&
                         name.find(ColumnarDataFormat().extension) == std::string::npos)) {
        continue;
      }
      candidates.emplace_back(it->path(), name.substr(0, 32));
    }
    std::map<std::string, LockState> states;
    std::vector<std::pair<fs::path, std::string>> unlocked;
    for (auto& [path, id] : candidates) {
      auto it = states.find(id);
      if (it == states.end()) it = states.emplace(id, ProbeTxnLock(txn_dir(), id)).first;
      if (it->second != LockState::kAlive) unlocked.emplace_back(path, id);
    }
    std::set<std::string> known;
    {
      ASSIGN_OR_RETURN(auto db, Acquire());
      ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT path FROM data_files"));
      while (true) {
        ASSIGN_OR_RETURN(const bool row, q.Step());
        if (!row) break;
        known.insert(q.Text(0));
      }
    }
    for (const auto& [path, id] : unlocked) {
      const std::string rel = fs::relative(path, root_).generic_string();
      if (known.contains(rel)) continue;
      if (fs::remove(path, ec)) ++deleted;
    }
    // Lock files of transactions that died before writing anything.
    for (auto it = fs::directory_iterator(txn_dir(), ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() == 37 && name.ends_with(".lock"))
        (void)ProbeTxnLock(txn_dir(), name.substr(0, 32));
    }
  }
  log::Info("lake expired", {{"snapshots", expired_snapshots}, {"files_deleted", deleted}});
  return deleted;
}

// ---------------------------------------------------------------------------------------------
// Writing

std::string TableWriterImpl::PartitionOf(const Batch& batch, int64_t i) const {
  const Column& col = batch.column(static_cast<size_t>(partition_index_));
  char buf[kMaxTimestampText];
  switch (partition_.transform) {
    case PartitionSpec::Transform::kNone:
      return "";
    case PartitionSpec::Transform::kDay:
    case PartitionSpec::Transform::kMonth: {
      const std::string prefix =
          partition_.transform == PartitionSpec::Transform::kDay ? "day=" : "month=";
      if (col.IsNull(i)) return prefix + "__null__";
      int64_t days = col.GetInt(i);
      if (col.type() == Type::kTimestamp) days = FloorDiv(days, kMicrosPerDay);
      days = std::clamp<int64_t>(days, kMinDate, kMaxDate);
      const char* end = WriteDate(buf, days);
      const size_t len = partition_.transform == PartitionSpec::Transform::kDay ? end - buf : 7;
      return prefix + std::string(buf, len);
    }
    case PartitionSpec::Transform::kIdentity: {
      const std::string key = EscapePathSegment(partition_.column) + "=";
      if (col.IsNull(i)) return key + "__null__";
      std::string value = FormatValue(col, i);
      // A real "__null__" must not land in the null folder.
      if (value == "__null__") return key + "%5F_null__";
      return key + EscapePathSegment(value);
    }
  }
  return "";
}

Status TableWriterImpl::Write(const Batch& batch) {
  if (closed) return FailedPreconditionError("the transaction of this writer has ended");
  const auto& fields = schema_->fields;
  if (batch.columns().size() != fields.size()) {
    return InvalidArgumentError("batch has " + std::to_string(batch.columns().size()) +
                                " columns; table '" + table_.name + "' has " +
                                std::to_string(fields.size()) + " (schema version " +
                                std::to_string(schema_->version) + ")");
  }
  for (size_t c = 0; c < fields.size(); ++c) {
    const bool name_ok = batch.schema() == nullptr ||
                         batch.schema()->fields.size() != fields.size() ||
                         batch.schema()->fields[c].name == fields[c].name;
    if (batch.column(c).type() != fields[c].type || !name_ok) {
      return InvalidArgumentError("batch column " + std::to_string(c) + " does not match column '" +
                                  fields[c].name + "' (" + std::string(TypeName(fields[c].type)) +
                                  ") of table '" + table_.name + "'");
    }
  }
  const int64_t rows = batch.num_rows();
  if (rows == 0) return Status::Ok();
  if (partition_index_ < 0) {
    RETURN_IF_ERROR(WriteTo("", batch));
  } else {
    // Most batches of time-ordered data fall in one partition: write those whole.
    std::vector<std::string> keys(static_cast<size_t>(rows));
    bool same = true;
    for (int64_t i = 0; i < rows; ++i) {
      if (partition_.transform != PartitionSpec::Transform::kIdentity && i > 0 &&
          batch.column(partition_index_).IsNull(i) ==
              batch.column(partition_index_).IsNull(i - 1) &&
          batch.column(partition_index_).GetInt(i) ==
              batch.column(partition_index_).GetInt(i - 1)) {
        keys[i] = keys[i - 1];
      } else {
        keys[i] = PartitionOf(batch, i);
      }
      same = same && keys[i] == keys[0];
    }
    if (same) {
      RETURN_IF_ERROR(WriteTo(keys[0], batch));
    } else {
      for (int64_t i = 0; i < rows; ++i) {
        auto it = scratch_.find(keys[i]);
        if (it == scratch_.end()) it = scratch_.emplace(keys[i], Batch(schema_)).first;
        it->second.AppendRow(batch, i);
      }
      for (auto& [key, part] : scratch_) {
        if (part.num_rows() == 0) continue;
        RETURN_IF_ERROR(WriteTo(key, part));
      }
      // Not kept between batches: each would hold a batch's worth of capacity per partition.
      scratch_.clear();
    }
  }
  rows_ += rows;
  return Status::Ok();
}

Status TableWriterImpl::WriteTo(const std::string& partition, const Batch& batch) {
  auto it = open_.find(partition);
  if (it == open_.end()) {
    if (open_.size() >= kMaxOpenPartitionFiles) {
      // Too many partitions at once: close the least recently used file (compaction can merge
      // the small files this makes).
      auto oldest = std::min_element(open_.begin(), open_.end(), [](const auto& a, const auto& b) {
        return a.second.last_use < b.second.last_use;
      });
      RETURN_IF_ERROR(Close(oldest->first));
    }
    std::string rel = "tables/" + table_.name + "/";
    if (!partition.empty()) rel += partition + "/";
    rel += txn_id_ + "-" + std::to_string(seq_++) + DataFormatFor(*schema_).extension;
    ASSIGN_OR_RETURN(auto writer, OpenDataFileWriter(lake_->root() / rel, schema_,
                                                     lake_->options().compression_level));
    it = open_.emplace(partition, OpenFile{std::move(writer), rel, 0}).first;
  }
  it->second.last_use = ++uses_;
  RETURN_IF_ERROR(it->second.writer->Write(batch));
  if (it->second.writer->bytes_written() >= target_bytes_) RETURN_IF_ERROR(Close(partition));
  return Status::Ok();
}

Status TableWriterImpl::Close(const std::string& partition) {
  auto it = open_.find(partition);
  if (it == open_.end()) return Status::Ok();
  ASSIGN_OR_RETURN(FileStats stats, it->second.writer->Finish());
  files_.push_back({it->second.path, partition, std::move(stats)});
  open_.erase(it);
  return Status::Ok();
}

Status TableWriterImpl::FinishAll() {
  while (!open_.empty()) RETURN_IF_ERROR(Close(open_.begin()->first));
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Transactions

Status TransactionImpl::EnsureLock() {
  if (lock_ != nullptr) return Status::Ok();
  ASSIGN_OR_RETURN(lock_, TxnLock::Acquire(lake_->txn_dir(), id_));
  return Status::Ok();
}

StatusOr<TableWriterImpl*> TransactionImpl::WriterFor(const std::string& table,
                                                      int64_t target_bytes) {
  if (committed_) return FailedPreconditionError("transaction already committed");
  auto it = writers_.find(table);
  if (it != writers_.end()) return it->second.get();
  RETURN_IF_ERROR(EnsureLock());
  ASSIGN_OR_RETURN(auto db, lake_->Acquire());
  ASSIGN_OR_RETURN(auto read, DbTransaction::Begin(db.get(), false));
  if (start_ == 0) return NotFoundError("table '" + table + "' does not exist");
  ASSIGN_OR_RETURN(const TableRow t, lake_->FindTable(db.get(), table, start_));
  ASSIGN_OR_RETURN(const TableInfo info, lake_->DescribeAt(db.get(), t, start_));
  auto writer = std::make_unique<TableWriterImpl>(
      lake_, t, std::make_shared<const Schema>(info.schema), info.partition, id_, target_bytes);
  auto* raw = writer.get();
  writers_.emplace(table, std::move(writer));
  return raw;
}

StatusOr<TableWriter*> TransactionImpl::Writer(const std::string& table, bool overwrite) {
  ASSIGN_OR_RETURN(TableWriterImpl * w, WriterFor(table, lake_->options().target_file_bytes));
  w->overwrite = w->overwrite || overwrite;
  return w;
}

StatusOr<SnapshotInfo> TransactionImpl::Commit() {
  if (committed_) return FailedPreconditionError("transaction already committed");
  committed_ = true;
  for (auto& [name, w] : writers_) {
    w->closed = true;
    RETURN_IF_ERROR(w->FinishAll());
  }
  lake_->Fault("files_written");
  ASSIGN_OR_RETURN(auto db, lake_->Acquire());
  ASSIGN_OR_RETURN(auto txn, DbTransaction::Begin(db.get(), true));
  ASSIGN_OR_RETURN(const int64_t latest, lake_->Latest(db.get()));
  const int64_t snapshot = latest + 1;
  int64_t rows_added = 0, rows_removed = 0, files_added = 0, files_removed = 0;
  bool overwrite = false;
  std::set<int64_t> changed;
  std::map<std::string, int64_t> table_ids;
  auto table_id = [&](const std::string& name) -> StatusOr<int64_t> {
    auto it = table_ids.find(name);
    if (it != table_ids.end()) return it->second;
    auto t = lake_->FindTable(db.get(), name, latest);
    if (!t.ok()) return t.status();
    table_ids[name] = t->table_id;
    return t->table_id;
  };

  ASSIGN_OR_RETURN(auto live, db->Prepare("SELECT end_snapshot, record_count, path FROM data_files "
                                          "WHERE file_id = ?"));
  ASSIGN_OR_RETURN(auto remove, db->Prepare("UPDATE data_files SET end_snapshot = ? WHERE "
                                            "file_id = ?"));
  ASSIGN_OR_RETURN(auto add,
                   db->Prepare("INSERT INTO data_files(table_id, path, partition, format, "
                               "record_count, file_size_bytes, sha256, schema_version, "
                               "begin_snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  ASSIGN_OR_RETURN(auto stat, db->Prepare("INSERT INTO file_column_stats VALUES (?, ?, ?, ?, ?)"));
  for (auto& [name, w] : writers_) {
    ASSIGN_OR_RETURN(const int64_t id, table_id(name));
    if (id != w->table().table_id) {
      return AbortedError("table '" + name + "' was replaced by another commit; retry");
    }
    std::vector<int64_t> removals = w->removals;
    if (w->overwrite) {
      overwrite = true;
      ASSIGN_OR_RETURN(auto q, db->Prepare("SELECT file_id FROM data_files WHERE table_id = ? AND "
                                           "begin_snapshot <= ? AND (end_snapshot IS NULL OR "
                                           "end_snapshot > ?)"));
      q.Bind(1, id).Bind(2, start_).Bind(3, start_);
      while (true) {
        ASSIGN_OR_RETURN(const bool row, q.Step());
        if (!row) break;
        removals.push_back(q.Int(0));
      }
    }
    for (const int64_t file_id : removals) {
      live.Reset();
      live.Bind(1, file_id);
      ASSIGN_OR_RETURN(const bool row, live.Step());
      if (!row || !live.IsNull(0)) {
        return AbortedError("conflict on table '" + name + "': a file this commit removes (" +
                            (row ? live.Text(2) : std::to_string(file_id)) +
                            ") was already removed by snapshot " +
                            (row ? std::to_string(live.Int(0)) : std::string("?")) +
                            "; retry with a new transaction");
      }
      rows_removed += live.Int(1);
      ++files_removed;
      remove.Reset();
      RETURN_IF_ERROR(remove.Bind(1, snapshot).Bind(2, file_id).Run());
    }
    if (!removals.empty()) changed.insert(id);
    for (const NewFile& f : w->files()) {
      add.Reset();
      RETURN_IF_ERROR(add.Bind(1, id)
                          .Bind(2, f.path)
                          .Bind(3, f.partition)
                          .Bind(4, DataFormatFor(*w->schema()).name)
                          .Bind(5, f.stats.rows)
                          .Bind(6, f.stats.bytes)
                          .Bind(7, f.stats.sha256)
                          .Bind(8, int64_t{w->schema()->version})
                          .Bind(9, snapshot)
                          .Run());
      const int64_t file_id = db->LastInsertId();
      for (const ColumnStats& c : f.stats.columns) {
        stat.Reset();
        RETURN_IF_ERROR(stat.Bind(1, file_id)
                            .Bind(2, int64_t{c.field_id})
                            .Bind(3, c.null_count)
                            .BindOpt(4, c.min)
                            .BindOpt(5, c.max)
                            .Run());
      }
      rows_added += f.stats.rows;
      ++files_added;
      changed.insert(id);
    }
  }
  ASSIGN_OR_RETURN(auto wm, db->Prepare("INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?, ?)"));
  for (const auto& [table, values] : watermarks_) {
    ASSIGN_OR_RETURN(const int64_t id, table_id(table));
    for (const auto& [name, value] : values) {
      wm.Reset();
      RETURN_IF_ERROR(wm.Bind(1, id).Bind(2, name).Bind(3, snapshot).Bind(4, value).Run());
    }
    changed.insert(id);
  }
  for (const int64_t id : changed) RETURN_IF_ERROR(AddChange(db.get(), snapshot, id));
  // Which tables and schema versions the commit wrote, for people reading the history.
  if (writers_.size() == 1 && !summary_.contains("table"))
    summary_["table"] = writers_.begin()->first;
  for (const auto& [name, w] : writers_) {
    summary_["schema_version" + (writers_.size() == 1 ? std::string() : "." + name)] =
        std::to_string(w->schema()->version);
  }
  std::string operation = operation_;
  if (operation.empty()) operation = overwrite ? "overwrite" : "append";
  ASSIGN_OR_RETURN(auto info,
                   lake_->InsertSnapshot(db.get(), snapshot, operation, summary_, rows_added,
                                         rows_removed, files_added, files_removed));
  lake_->Fault("catalog_commit");
  RETURN_IF_ERROR(txn->Commit());
  lock_.reset();
  return info;
}

}  // namespace

StatusOr<PartitionSpec> ParsePartitionSpec(std::string_view text) {
  PartitionSpec spec;
  auto trim = [](std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
  };
  text = trim(text);
  if (text.empty()) return spec;
  const size_t open = text.find('(');
  if (open == std::string_view::npos) {
    spec.transform = PartitionSpec::Transform::kIdentity;
    spec.column = std::string(text);
    return spec;
  }
  if (text.back() != ')') {
    return InvalidArgumentError("partition spec '" + std::string(text) +
                                "' must look like day(column), month(column) or column");
  }
  const std::string_view fn = trim(text.substr(0, open));
  const std::string_view column = trim(text.substr(open + 1, text.size() - open - 2));
  if (fn == "day") {
    spec.transform = PartitionSpec::Transform::kDay;
  } else if (fn == "month") {
    spec.transform = PartitionSpec::Transform::kMonth;
  } else if (fn == "identity") {
    spec.transform = PartitionSpec::Transform::kIdentity;
  } else {
    return InvalidArgumentError("unknown partition transform '" + std::string(fn) +
                                "' (expected day, month or identity)");
  }
  if (column.empty()) {
    return InvalidArgumentError("partition spec '" + std::string(text) + "' names no column");
  }
  spec.column = std::string(column);
  return spec;
}

std::string PartitionSpecToString(const PartitionSpec& spec) {
  switch (spec.transform) {
    case PartitionSpec::Transform::kNone:
      return "";
    case PartitionSpec::Transform::kIdentity:
      return spec.column;
    case PartitionSpec::Transform::kDay:
      return "day(" + spec.column + ")";
    case PartitionSpec::Transform::kMonth:
      return "month(" + spec.column + ")";
  }
  return "";
}

StatusOr<std::unique_ptr<Lake>> Lake::Open(const std::filesystem::path& root,
                                           const LakeOptions& options, bool create) {
  if (options.clock == nullptr) return InvalidArgumentError("lake options need a clock");
  if (options.target_file_bytes <= 0 || options.read_batch_rows <= 0) {
    return InvalidArgumentError("target_file_bytes and read_batch_rows must be positive");
  }
  auto lake = std::make_unique<LakeImpl>(root, options);
  RETURN_IF_ERROR(lake->Init(create));
  return std::unique_ptr<Lake>(std::move(lake));
}

}  // namespace edgeloop::lake
