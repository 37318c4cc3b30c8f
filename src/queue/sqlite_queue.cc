#include "queue/sqlite_queue.h"

#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <vector>

#include "common/logging.h"
#include "queue/internal.h"
#include "queue/uuid.h"

namespace edgeloop::queue {
namespace {

constexpr int64_t kSchemaVersion = 1;

// WAL pages after which the checkpointer copies the WAL into the database (SQLite's own default
// for its automatic checkpoints).
constexpr int kCheckpointPages = 1000;

// Row states.
constexpr int kReady = 0;
constexpr int kLeased = 1;
constexpr int kDead = 2;
constexpr int kRetry = 3;

const char* StateName(int state) {
  switch (state) {
    case kReady:
      return "ready";
    case kLeased:
      return "leased";
    case kDead:
      return "dead";
    default:
      return "retry";
  }
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS events(
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  priority INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  enq_qt INTEGER NOT NULL,
  enq_wall INTEGER NOT NULL,
  state INTEGER NOT NULL,
  visible_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  fence INTEGER NOT NULL,
  consumer TEXT NOT NULL,
  history TEXT NOT NULL,
  dead_reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payloads(seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_ready ON events(priority DESC, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS events_timed ON events(visible_at) WHERE state IN (1, 3);
CREATE INDEX IF NOT EXISTS events_drop ON events(priority, seq);
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS drops(reason TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(k, v) VALUES ('schema', 1);
)sql";

Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string message = std::string(what) + ": " + sqlite3_errstr(rc);
  if (db != nullptr && sqlite3_errcode(db) == rc)
    message += " (" + std::string(sqlite3_errmsg(db)) + ")";
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return ResourceExhaustedError("queue database: disk full: " + message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return DataLossError("queue database is corrupt: " + message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return UnavailableError("queue database is busy: " + message);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return PermissionDeniedError("queue database: " + message);
    default:
      return InternalError("queue database: " + message);
  }
}

// A prepared statement, reset after every use.
class Stmt {
 public:
  Stmt() = default;
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status Prepare(sqlite3* db, const char* sql) {
    db_ = db;
    const int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, std::string("prepare ") + sql);
    return Status::Ok();
  }
  Stmt& Bind(int i, int64_t value) {
    sqlite3_bind_int64(stmt_, i, value);
    return *this;
  }
  Stmt& BindText(int i, std::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // The bytes must stay alive until the statement is reset.
  Stmt& BindBlobStatic(int i, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
    return *this;
  }
  // SQLITE_ROW → true, SQLITE_DONE → false (and resets), else an error (and resets).
  StatusOr<bool> Step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    Reset();
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, "step");
  }
  Status Exec() {
    ASSIGN_OR_RETURN(bool row, Step());
    if (row) Reset();
    return Status::Ok();
  }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  int64_t Int(int i) const { return sqlite3_column_int64(stmt_, i); }
  std::string Text(int i) const {
    const void* data = sqlite3_column_blob(stmt_, i);
    const int size = sqlite3_column_bytes(stmt_, i);
    return data == nullptr ? std::string() : std::string(static_cast<const char*>(data), size);
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

std::optional<int64_t> ParseHandle(std::string_view handle) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(handle.data(), handle.data() + handle.size(), value);
  if (ec != std::errc() || end != handle.data() + handle.size() || value <= 0) return std::nullopt;
  return value;
}

// Payloads live in their own table so that state changes (leases, nacks) rewrite small rows.
constexpr const char* kColumns =
    "e.seq, id, type, priority, p.payload, enq_qt, enq_wall, state, visible_at, attempts, fence, "
    "consumer, history, dead_reason";

}  // namespace

class SqliteQueue::Db {
 public:
  ~Db() {
    // Statements first, then the connection.
    statements_.clear();
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  Status Open(const std::string& path, bool read_only) {
    const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, "open " + path);
    sqlite3_extended_result_codes(db_, 0);
    sqlite3_busy_timeout(db_, 10'000);
    if (!read_only) {
      RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
      RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL"));
      RETURN_IF_ERROR(Exec("PRAGMA journal_size_limit=67108864"));
      // 16 MiB of page cache (the default is 2): a leased batch's pages are still cached when
      // its ack deletes the rows.
      RETURN_IF_ERROR(Exec("PRAGMA cache_size=-16384"));
      // Debian builds SQLite with secure_delete on, which zeroes every freed page and so writes
      // each acked payload's page to the WAL once more. FAST still zeroes deleted content in the
      // pages a commit writes anyway, so acked payloads do not linger in live pages.
      RETURN_IF_ERROR(Exec("PRAGMA secure_delete=FAST"));
      RETURN_IF_ERROR(Exec(kSchema));
    }
    return Status::Ok();
  }

  // A second connection that only runs checkpoints.
  Status OpenForCheckpoints(const std::string& path) {
    const int rc =
        sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, "open " + path);
    sqlite3_busy_timeout(db_, 10'000);
    return Exec("PRAGMA synchronous=FULL");
  }

  Status Exec(const char* sql) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
      Status status = SqliteError(db_, rc, std::string(sql).substr(0, 60));
      sqlite3_free(error);
      return status;
    }
    return Status::Ok();
  }

  // Runs `sql` (a string literal, no rows) through a cached prepared statement: transaction
  // control runs several times per commit, and parsing it each time costs microseconds.
  Status ExecCached(const char* sql) {
    ASSIGN_OR_RETURN(Stmt * stmt, Get(sql));
    return stmt->Exec();
  }

  // A cached prepared statement for `sql` (a string literal).
  StatusOr<Stmt*> Get(const char* sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) return it->second.get();
    auto stmt = std::make_unique<Stmt>();
    RETURN_IF_ERROR(stmt->Prepare(db_, sql));
    Stmt* raw = stmt.get();
    statements_.emplace(sql, std::move(stmt));
    return raw;
  }

  int Changes() const { return sqlite3_changes(db_); }
  sqlite3* raw() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::map<const char*, std::unique_ptr<Stmt>> statements_;
};

// Called by SQLite after each commit of the writer's connection, with the WAL's size in pages.
int WalHook(void* arg, sqlite3* db, const char* name, int pages);

StatusOr<std::unique_ptr<Queue>> SqliteQueue::Open(const std::string& dir,
                                                   const QueueOptions& options) {
  // SQLite's memory statistics take a global mutex on every allocation, and nothing here reads
  // them. Only possible before SQLite initialises; later it is refused and changes nothing.
  static const bool kNoMemStatus = [] {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)kNoMemStatus;
  namespace fs = std::filesystem;
  const fs::path db_path = fs::path(dir) / "queue.db";
  std::error_code ec;
  if (options.read_only) {
    if (!fs::exists(db_path, ec)) return NotFoundError("no queue at " + dir);
  } else {
    fs::create_directories(dir, ec);
    if (ec) return PermissionDeniedError("cannot create queue folder " + dir + ": " + ec.message());
    if (!fs::is_directory(dir, ec)) return InvalidArgumentError(dir + " is not a folder");
  }
  auto db = std::make_unique<Db>();
  RETURN_IF_ERROR(db->Open(db_path.string(), options.read_only));
  std::unique_ptr<Db> checkpoint_db;
  if (!options.read_only) {
    checkpoint_db = std::make_unique<Db>();
    RETURN_IF_ERROR(checkpoint_db->OpenForCheckpoints(db_path.string()));
  }
  std::unique_ptr<SqliteQueue> queue(
      new SqliteQueue(dir, options, std::move(db), std::move(checkpoint_db)));
  // Check the schema and initialise queue time from what was persisted.
  const Status run_status = queue->Run([q = queue.get()]() -> Status {
    ASSIGN_OR_RETURN(Stmt * stmt, q->db_->Get("SELECT v FROM meta WHERE k = 'schema'"));
    ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) return DataLossError("queue database has no schema version");
    const int64_t version = stmt->Int(0);
    stmt->Reset();
    if (version != kSchemaVersion) {
      return FailedPreconditionError("queue database has schema version " +
                                     std::to_string(version) + ", this build reads " +
                                     std::to_string(kSchemaVersion));
    }
    return Status::Ok();
  });
  RETURN_IF_ERROR(run_status);
  return std::unique_ptr<Queue>(std::move(queue));
}

SqliteQueue::SqliteQueue(std::string dir, const QueueOptions& options, std::unique_ptr<Db> db,
                         std::unique_ptr<Db> checkpoint_db)
    : dir_(std::move(dir)),
      options_(options),
      db_(std::move(db)),
      checkpoint_db_(std::move(checkpoint_db)) {
  qt_steady_base_ = options_.clock->Now();
  std::random_device device;
  rng_.seed((static_cast<uint64_t>(device()) << 32) | device());
  if (!options_.read_only) {
    // The writer no longer checkpoints itself (that would stall its commits on the database's
    // fsync); its WAL hook wakes the checkpointer instead.
    sqlite3_wal_hook(db_->raw(), WalHook, this);
    checkpointer_ = std::thread([this] { CheckpointLoop(); });
    writer_ = std::thread([this] { WriterLoop(); });
  }
}

SqliteQueue::~SqliteQueue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
  if (!options_.read_only) sqlite3_wal_hook(db_->raw(), nullptr, nullptr);
}

std::string SqliteQueue::Describe() const {
  return "file://" + std::filesystem::absolute(dir_).lexically_normal().string();
}

int64_t SqliteQueue::WallMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             options_.clock->WallNow().time_since_epoch())
      .count();
}

double SqliteQueue::Uniform01() {
  if (options_.uniform01) return options_.uniform01();
  std::lock_guard<std::mutex> lock(rng_mu_);
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

Status SqliteQueue::Run(std::function<Status()> body, bool durable, bool isolated) {
  auto op = std::make_shared<Op>();
  op->body = std::move(body);
  op->durable = durable;
  op->isolated = isolated;
  if (options_.read_only) {
    std::lock_guard<std::mutex> lock(run_mu_);
    std::deque<OpPtr> batch{op};
    RETURN_IF_ERROR(RunBatch(batch));
    return op->status;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return CancelledError("queue is closing");
    pending_.push_back(op);
  }
  work_cv_.notify_one();
  std::unique_lock<std::mutex> lock(op->mu);
  op->done_cv.wait(lock, [&] { return op->done; });
  return op->status;
}

void SqliteQueue::WriterLoop() {
  while (true) {
    std::deque<OpPtr> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, nothing left
      batch.swap(pending_);
    }
    const Status status = RunBatch(batch);
    // Each caller waits on its own op, so a commit wakes exactly its callers and nobody
    // contends for mu_ on the way out. The writer's reference keeps the op alive until the
    // signal is sent.
    for (const OpPtr& op : batch) {
      {
        std::lock_guard<std::mutex> lock(op->mu);
        if (!status.ok() && op->status.ok()) op->status = status;
        op->done = true;
      }
      op->done_cv.notify_one();
    }
  }
}

int WalHook(void* arg, sqlite3*, const char*, int pages) {
  auto* queue = static_cast<SqliteQueue*>(arg);
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(queue->checkpoint_mu_);
    queue->wal_pages_ = pages;
    wake = pages >= kCheckpointPages;
  }
  if (wake) queue->checkpoint_cv_.notify_one();
  return SQLITE_OK;
}

void SqliteQueue::CheckpointLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(checkpoint_mu_);
      checkpoint_cv_.wait(lock, [&] { return checkpoint_stop_ || wal_pages_ >= kCheckpointPages; });
      if (checkpoint_stop_) return;
      wal_pages_ = 0;
    }
    // PASSIVE: copies what it can without blocking the writer; the next commit after a complete
    // copy starts the WAL over. A failure (busy, I/O) is retried at the next trigger.
    const int rc = sqlite3_wal_checkpoint_v2(checkpoint_db_->raw(), nullptr,
                                             SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      log::Warn("queue checkpoint failed", {{"queue", dir_}, {"error", sqlite3_errstr(rc)}});
    }
  }
}

Status SqliteQueue::RunBatch(std::deque<OpPtr>& batch) {
  const bool read_only = options_.read_only;
  if (!read_only) {
    bool durable = false;
    for (const OpPtr& op : batch) durable = durable || op->durable;
    if (durable != synchronous_full_) {
      RETURN_IF_ERROR(db_->Exec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
      synchronous_full_ = durable;
    }
  }
  RETURN_IF_ERROR(db_->ExecCached(read_only ? "BEGIN" : "BEGIN IMMEDIATE"));
  Status status = LoadMeta();
  if (status.ok()) {
    const uint64_t epoch_before = meta_.appended;
    for (const OpPtr& op : batch) {
      if (read_only || !op->isolated) {
        op->status = op->body();
        if (!read_only && !op->status.ok()) {
          status = op->status;  // the transaction is in an unknown state: fail it whole
          break;
        }
        continue;
      }
      const Meta saved = meta_;
      status = db_->ExecCached("SAVEPOINT op");
      if (!status.ok()) break;
      op->status = op->body();
      if (!op->status.ok()) {
        meta_ = saved;
        status = db_->ExecCached("ROLLBACK TO op");
        if (!status.ok()) break;
      }
      status = db_->ExecCached("RELEASE op");
      if (!status.ok()) break;
    }
    if (status.ok() && !read_only) status = SaveMeta();
    if (status.ok()) status = db_->ExecCached("COMMIT");
    if (status.ok() && !read_only && meta_.appended != static_cast<int64_t>(epoch_before)) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++visible_epoch_;
      }
      visible_cv_.notify_all();
    }
  }
  if (!status.ok()) {
    (void)db_->Exec("ROLLBACK");
    log::Error("queue transaction failed", {{"queue", dir_}, {"error", status}});
  }
  return status;
}

Status SqliteQueue::LoadMeta() {
  ASSIGN_OR_RETURN(Stmt * stmt, db_->Get("SELECT k, v FROM meta"));
  Meta meta;
  int64_t stored_qtime = 0;
  while (true) {
    ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    const std::string key = stmt->Text(0);
    const int64_t value = stmt->Int(1);
    if (key == "qtime") stored_qtime = value;
    if (key == "fence") meta.fence = value;
    if (key == "bytes") meta.bytes = value;
    if (key == "appended") meta.appended = value;
    if (key == "acked") meta.acked = value;
    if (key == "dead") meta.dead = value;
  }
  // Queue time moves with the monotonic clock and never below what any process persisted.
  const Clock::SteadyTime now = options_.clock->Now();
  int64_t qtime =
      qt_base_ms_ +
      std::chrono::duration_cast<std::chrono::milliseconds>(now - qt_steady_base_).count();
  if (stored_qtime > qtime) {
    qt_base_ms_ = stored_qtime;
    qt_steady_base_ = now;
    qtime = stored_qtime;
  }
  meta.qtime_ms = qtime;
  meta_ = meta;
  return Status::Ok();
}

Status SqliteQueue::SaveMeta() {
  ASSIGN_OR_RETURN(Stmt * stmt, db_->Get("INSERT INTO meta(k, v) VALUES (?1, ?2) "
                                         "ON CONFLICT(k) DO UPDATE SET v = excluded.v"));
  const std::pair<const char*, int64_t> values[] = {
      {"qtime", meta_.qtime_ms},    {"fence", meta_.fence}, {"bytes", meta_.bytes},
      {"appended", meta_.appended}, {"acked", meta_.acked}, {"dead", meta_.dead}};
  for (const auto& [key, value] : values) {
    RETURN_IF_ERROR(stmt->BindText(1, key).Bind(2, value).Exec());
  }
  return Status::Ok();
}

Status SqliteQueue::AddDrops(const std::map<std::string, int64_t>& drops) {
  if (drops.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(Stmt * stmt, db_->Get("INSERT INTO drops(reason, n) VALUES (?1, ?2) "
                                         "ON CONFLICT(reason) DO UPDATE SET n = n + excluded.n"));
  for (const auto& [reason, count] : drops) {
    RETURN_IF_ERROR(stmt->BindText(1, reason).Bind(2, count).Exec());
  }
  return Status::Ok();
}

StatusOr<AppendResult> SqliteQueue::Append(std::vector<Event> events) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  AppendResult result;
  result.ids.reserve(events.size());
  for (Event& event : events) {
    RETURN_IF_ERROR(internal::ValidateEvent(event, options_.max_event_bytes));
    if (event.id.empty()) event.id = NewEventId(*options_.clock);
    result.ids.push_back(event.id);
  }
  if (events.empty()) return result;
  const int64_t wall_ms = WallMs();
  const Status run_status = Run(
      [&]() -> Status {
        result.rejected.clear();
        ASSIGN_OR_RETURN(
            Stmt * insert,
            db_->Get("INSERT INTO events(id, type, priority, bytes, enq_qt, enq_wall, state, "
                     "visible_at, attempts, fence, consumer, history, dead_reason) "
                     "VALUES (?1, ?2, ?3, ?5, ?6, ?7, 0, 0, 0, 0, '', '[]', '')"));
        ASSIGN_OR_RETURN(Stmt * insert_payload,
                         db_->Get("INSERT INTO payloads(seq, payload) VALUES (?1, ?2)"));
        std::map<std::string, int64_t> drops;
        const int64_t max = options_.max_bytes;
        const auto high = static_cast<int64_t>(static_cast<double>(max) * options_.high_watermark);
        const auto low = static_cast<int64_t>(static_cast<double>(max) * options_.low_watermark);
        for (const Event& event : events) {
          const int64_t need = event.StoredBytes();
          if (max > 0 && need > max) {
            result.rejected.push_back(event.id);
            ++drops["rejected:" + event.type];
            continue;
          }
          if (max > 0 && meta_.bytes + need > high) {
            // Drop lowest priority first, oldest first, never above the incoming event's priority.
            ASSIGN_OR_RETURN(Stmt * pick, db_->Get("SELECT seq, bytes, type FROM events "
                                                   "WHERE priority <= ?1 ORDER BY priority, seq "
                                                   "LIMIT 256"));
            ASSIGN_OR_RETURN(Stmt * drop, db_->Get("DELETE FROM events WHERE seq = ?1"));
            ASSIGN_OR_RETURN(Stmt * drop_payload, db_->Get("DELETE FROM payloads WHERE seq = ?1"));
            bool exhausted = false;
            while (meta_.bytes + need > low && !exhausted) {
              std::vector<std::tuple<int64_t, int64_t, std::string>> victims;
              pick->Bind(1, event.priority);
              while (true) {
                ASSIGN_OR_RETURN(bool row, pick->Step());
                if (!row) break;
                victims.emplace_back(pick->Int(0), pick->Int(1), pick->Text(2));
              }
              exhausted = victims.size() < 256;
              for (const auto& [seq, bytes, type] : victims) {
                if (meta_.bytes + need <= low) break;
                RETURN_IF_ERROR(drop->Bind(1, seq).Exec());
                RETURN_IF_ERROR(drop_payload->Bind(1, seq).Exec());
                meta_.bytes -= bytes;
                ++drops["quota:" + type];
              }
              if (victims.empty()) exhausted = true;
            }
            if (meta_.bytes + need > max) {
              result.rejected.push_back(event.id);
              ++drops["rejected:" + event.type];
              continue;
            }
          }
          insert->BindText(1, event.id)
              .BindText(2, event.type)
              .Bind(3, event.priority)
              .Bind(5, need)
              .Bind(6, meta_.qtime_ms)
              .Bind(7, wall_ms);
          RETURN_IF_ERROR(insert->Exec());
          RETURN_IF_ERROR(insert_payload->Bind(1, sqlite3_last_insert_rowid(db_->raw()))
                              .BindBlobStatic(2, event.payload)
                              .Exec());
          meta_.bytes += need;
          ++meta_.appended;
        }
        return AddDrops(drops);
      },
      /*durable=*/true, /*isolated=*/false);
  RETURN_IF_ERROR(run_status);
  if (!result.rejected.empty()) {
    log::Warn("queue full: events rejected", {{"queue", dir_}, {"count", result.rejected.size()}});
  }
  return result;
}

Status SqliteQueue::Reclaim() {
  ASSIGN_OR_RETURN(Stmt * due,
                   db_->Get("SELECT seq, state, attempts, consumer, history FROM events "
                            "WHERE state IN (1, 3) AND visible_at <= ?1 LIMIT 512"));
  ASSIGN_OR_RETURN(Stmt * ready, db_->Get("UPDATE events SET state = 0 WHERE seq = ?1"));
  ASSIGN_OR_RETURN(Stmt * expire, db_->Get("UPDATE events SET state = ?2, history = ?3, "
                                           "dead_reason = ?4 WHERE seq = ?1"));
  while (true) {
    struct Due {
      int64_t seq;
      int state;
      int64_t attempts;
      std::string consumer;
      std::string history;
    };
    std::vector<Due> rows;
    due->Bind(1, meta_.qtime_ms);
    while (true) {
      ASSIGN_OR_RETURN(bool row, due->Step());
      if (!row) break;
      rows.push_back(
          {due->Int(0), static_cast<int>(due->Int(1)), due->Int(2), due->Text(3), due->Text(4)});
    }
    for (const Due& row : rows) {
      if (row.state == kRetry) {
        RETURN_IF_ERROR(ready->Bind(1, row.seq).Exec());
        continue;
      }
      // An expired lease is a failed attempt.
      std::vector<Attempt> history = internal::DecodeHistory(row.history);
      history.push_back({WallMs(), row.consumer, "lease expired"});
      const bool dead = row.attempts >= options_.retry.max_attempts;
      RETURN_IF_ERROR(expire->Bind(1, row.seq)
                          .Bind(2, dead ? kDead : kReady)
                          .BindText(3, internal::EncodeHistory(history))
                          .BindText(4, dead ? "lease expired" : "")
                          .Exec());
      if (dead) ++meta_.dead;
    }
    if (rows.size() < 512) return Status::Ok();
  }
}

StatusOr<std::vector<Lease>> SqliteQueue::Lease(std::string_view consumer, int max,
                                                std::chrono::milliseconds visibility,
                                                std::chrono::milliseconds wait) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  if (max <= 0) return InvalidArgumentError("lease: max must be positive");
  if (consumer.empty()) return InvalidArgumentError("lease: consumer name is empty");
  if (visibility.count() < 0) return InvalidArgumentError("lease: negative visibility");
  if (visibility.count() == 0) visibility = options_.default_visibility;
  const std::string who(consumer);
  const auto wait_until = std::chrono::steady_clock::now() + wait;
  while (true) {
    uint64_t epoch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      epoch = visible_epoch_;
    }
    std::vector<queue::Lease> leases;
    const Status run_status = Run(
        [&]() -> Status {
          leases.clear();
          RETURN_IF_ERROR(Reclaim());
          ASSIGN_OR_RETURN(
              Stmt * pick,
              db_->Get("SELECT e.seq, id, type, priority, p.payload, enq_qt, enq_wall, "
                       "attempts, history FROM events e JOIN payloads p ON p.seq = e.seq "
                       "WHERE state = 0 ORDER BY priority DESC, e.seq LIMIT ?1"));
          ASSIGN_OR_RETURN(Stmt * take,
                           db_->Get("UPDATE events SET state = 1, visible_at = ?2, attempts = ?3, "
                                    "fence = ?4, consumer = ?5 WHERE seq = ?1"));
          pick->Bind(1, max);
          while (true) {
            ASSIGN_OR_RETURN(bool row, pick->Step());
            if (!row) break;
            queue::Lease lease;
            lease.handle = std::to_string(pick->Int(0));
            lease.event.id = pick->Text(1);
            lease.event.type = pick->Text(2);
            lease.event.priority = static_cast<int>(pick->Int(3));
            lease.event.payload = pick->Text(4);
            lease.age_ms = meta_.qtime_ms - pick->Int(5);
            lease.enqueued_unix_ms = pick->Int(6);
            lease.attempt = static_cast<int>(pick->Int(7)) + 1;
            lease.history = internal::DecodeHistory(pick->Text(8));
            lease.consumer = who;
            leases.push_back(std::move(lease));
          }
          for (queue::Lease& lease : leases) {
            lease.fence = static_cast<uint64_t>(++meta_.fence);
            RETURN_IF_ERROR(take->Bind(1, *ParseHandle(lease.handle))
                                .Bind(2, meta_.qtime_ms + visibility.count())
                                .Bind(3, lease.attempt)
                                .Bind(4, static_cast<int64_t>(lease.fence))
                                .BindText(5, who)
                                .Exec());
          }
          return Status::Ok();
        },
        /*durable=*/false);
    RETURN_IF_ERROR(run_status);
    if (!leases.empty() || std::chrono::steady_clock::now() >= wait_until) return leases;
    std::unique_lock<std::mutex> lock(mu_);
    const auto slice =
        std::min(wait_until, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
    visible_cv_.wait_until(lock, slice, [&] { return visible_epoch_ != epoch || stop_; });
    if (stop_) return leases;
  }
}

StatusOr<std::vector<Status>> SqliteQueue::AckBatch(const std::vector<queue::Lease>& leases) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  std::vector<Status> results;
  const Status run_status = Run(
      [&]() -> Status {
        results.clear();
        ASSIGN_OR_RETURN(Stmt * del_payload, db_->Get("DELETE FROM payloads WHERE seq = ?1"));
        ASSIGN_OR_RETURN(Stmt * del,
                         db_->Get("DELETE FROM events WHERE seq = ?1 AND fence = ?2 AND "
                                  "state = 1 RETURNING bytes"));
        for (const queue::Lease& lease : leases) {
          const std::optional<int64_t> seq = ParseHandle(lease.handle);
          if (!seq) {
            results.push_back(AbortedError("ack: unknown lease handle '" + lease.handle + "'"));
            continue;
          }
          del->Bind(1, *seq).Bind(2, static_cast<int64_t>(lease.fence));
          ASSIGN_OR_RETURN(bool row, del->Step());
          if (!row) {
            results.push_back(AbortedError("ack: lease of event " + lease.event.id + " (fence " +
                                           std::to_string(lease.fence) + ") is no longer current"));
            continue;
          }
          meta_.bytes -= del->Int(0);
          RETURN_IF_ERROR(del->Exec());  // finishes the statement
          RETURN_IF_ERROR(del_payload->Bind(1, *seq).Exec());
          ++meta_.acked;
          results.push_back(Status::Ok());
        }
        return Status::Ok();
      },
      /*durable=*/false);
  RETURN_IF_ERROR(run_status);
  return results;
}

StatusOr<NackOutcome> SqliteQueue::Nack(const queue::Lease& lease, std::string_view reason,
                                        std::optional<std::chrono::milliseconds> retry_after) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  if (retry_after && retry_after->count() < 0) {
    return InvalidArgumentError("nack: negative retry_after");
  }
  const std::optional<int64_t> seq = ParseHandle(lease.handle);
  if (!seq) return AbortedError("nack: unknown lease handle '" + lease.handle + "'");
  const double jitter = Uniform01();
  NackOutcome outcome = NackOutcome::kRetry;
  const Status run_status = Run(
      [&]() -> Status {
        ASSIGN_OR_RETURN(Stmt * find, db_->Get("SELECT attempts, history FROM events "
                                               "WHERE seq = ?1 AND fence = ?2 AND state = 1"));
        find->Bind(1, *seq).Bind(2, static_cast<int64_t>(lease.fence));
        ASSIGN_OR_RETURN(bool row, find->Step());
        if (!row) {
          return AbortedError("nack: lease of event " + lease.event.id + " (fence " +
                              std::to_string(lease.fence) + ") is no longer current");
        }
        const int64_t attempts = find->Int(0);
        std::vector<Attempt> history = internal::DecodeHistory(find->Text(1));
        find->Reset();
        history.push_back({WallMs(), lease.consumer, std::string(reason)});
        const bool dead = attempts >= options_.retry.max_attempts;
        const std::chrono::milliseconds delay =
            retry_after ? *retry_after : options_.retry.Backoff(static_cast<int>(attempts), jitter);
        ASSIGN_OR_RETURN(Stmt * update, db_->Get("UPDATE events SET state = ?2, visible_at = ?3, "
                                                 "history = ?4, dead_reason = ?5 WHERE seq = ?1"));
        RETURN_IF_ERROR(update->Bind(1, *seq)
                            .Bind(2, dead ? kDead : kRetry)
                            .Bind(3, meta_.qtime_ms + delay.count())
                            .BindText(4, internal::EncodeHistory(history))
                            .BindText(5, dead ? std::string(reason) : std::string())
                            .Exec());
        if (dead) ++meta_.dead;
        outcome = dead ? NackOutcome::kDeadLettered : NackOutcome::kRetry;
        return Status::Ok();
      },
      /*durable=*/false);
  RETURN_IF_ERROR(run_status);
  return outcome;
}

Status SqliteQueue::Release(const queue::Lease& lease, std::chrono::milliseconds delay) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  if (delay.count() < 0) return InvalidArgumentError("release: negative delay");
  const std::optional<int64_t> seq = ParseHandle(lease.handle);
  if (!seq) return AbortedError("release: unknown lease handle '" + lease.handle + "'");
  const Status run_status = Run(
      [&]() -> Status {
        // The lease is not an attempt: its count is given back. Ready at once, or waiting out
        // the delay like a retry.
        ASSIGN_OR_RETURN(Stmt * update, db_->Get("UPDATE events SET state = ?3, visible_at = ?4, "
                                                 "attempts = max(attempts - 1, 0) "
                                                 "WHERE seq = ?1 AND fence = ?2 AND state = 1"));
        RETURN_IF_ERROR(update->Bind(1, *seq)
                            .Bind(2, static_cast<int64_t>(lease.fence))
                            .Bind(3, delay.count() == 0 ? kReady : kRetry)
                            .Bind(4, meta_.qtime_ms + delay.count())
                            .Exec());
        if (db_->Changes() == 0) {
          return AbortedError("release: lease of event " + lease.event.id + " (fence " +
                              std::to_string(lease.fence) + ") is no longer current");
        }
        return Status::Ok();
      },
      /*durable=*/false);
  RETURN_IF_ERROR(run_status);
  if (delay.count() == 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++visible_epoch_;
    }
    visible_cv_.notify_all();
  }
  return Status::Ok();
}

Status SqliteQueue::DeadLetter(const queue::Lease& lease, std::string_view reason) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  const std::optional<int64_t> seq = ParseHandle(lease.handle);
  if (!seq) return AbortedError("dead-letter: unknown lease handle '" + lease.handle + "'");
  return Run(
      [&]() -> Status {
        ASSIGN_OR_RETURN(Stmt * find, db_->Get("SELECT attempts, history FROM events "
                                               "WHERE seq = ?1 AND fence = ?2 AND state = 1"));
        find->Bind(1, *seq).Bind(2, static_cast<int64_t>(lease.fence));
        ASSIGN_OR_RETURN(bool row, find->Step());
        if (!row) {
          return AbortedError("dead-letter: lease of event " + lease.event.id + " (fence " +
                              std::to_string(lease.fence) + ") is no longer current");
        }
        std::vector<Attempt> history = internal::DecodeHistory(find->Text(1));
        find->Reset();
        history.push_back({WallMs(), lease.consumer, std::string(reason)});
        ASSIGN_OR_RETURN(Stmt * update, db_->Get("UPDATE events SET state = ?2, visible_at = ?3, "
                                                 "history = ?4, dead_reason = ?5 WHERE seq = ?1"));
        RETURN_IF_ERROR(update->Bind(1, *seq)
                            .Bind(2, kDead)
                            .Bind(3, meta_.qtime_ms)
                            .BindText(4, internal::EncodeHistory(history))
                            .BindText(5, reason)
                            .Exec());
        ++meta_.dead;
        return Status::Ok();
      },
      /*durable=*/false);
}

StatusOr<QueueStats> SqliteQueue::Stats() {
  QueueStats stats;
  const Status run_status = Run(
      [&]() -> Status {
        stats = QueueStats();
        stats.backend = "file";
        stats.max_bytes = options_.max_bytes;
        stats.bytes = meta_.bytes;
        stats.appended_total = meta_.appended;
        stats.acked_total = meta_.acked;
        stats.dead_lettered_total = meta_.dead;
        ASSIGN_OR_RETURN(Stmt * counts,
                         db_->Get("SELECT state, priority, visible_at <= ?1, COUNT(*) FROM events "
                                  "GROUP BY 1, 2, 3"));
        counts->Bind(1, meta_.qtime_ms);
        while (true) {
          ASSIGN_OR_RETURN(bool row, counts->Step());
          if (!row) break;
          const int state = static_cast<int>(counts->Int(0));
          const int priority = static_cast<int>(counts->Int(1));
          const bool due = counts->Int(2) != 0;
          const int64_t n = counts->Int(3);
          if (state == kDead) {
            stats.dlq_size += n;
            continue;
          }
          stats.depth_by_priority[priority] += n;
          if (state == kReady) stats.ready += n;
          if (state == kLeased && !due) stats.leased += n;
          if ((state == kLeased && due) || state == kRetry) stats.retry += n;
        }
        ASSIGN_OR_RETURN(Stmt * oldest, db_->Get("SELECT enq_qt FROM events WHERE state != 2 "
                                                 "ORDER BY seq LIMIT 1"));
        ASSIGN_OR_RETURN(bool row, oldest->Step());
        if (row) {
          stats.oldest_age_ms = std::max<int64_t>(0, meta_.qtime_ms - oldest->Int(0));
          oldest->Reset();
        }
        ASSIGN_OR_RETURN(Stmt * drops, db_->Get("SELECT reason, n FROM drops"));
        while (true) {
          ASSIGN_OR_RETURN(bool more, drops->Step());
          if (!more) break;
          stats.drops[drops->Text(0)] = drops->Int(1);
        }
        return Status::Ok();
      },
      /*durable=*/false);
  RETURN_IF_ERROR(run_status);
  return stats;
}

namespace {

EventInfo ReadInfo(const Stmt& row, int64_t qtime_ms) {
  // Columns as in kColumns.
  EventInfo info;
  info.handle = std::to_string(row.Int(0));
  info.event.id = row.Text(1);
  info.event.type = row.Text(2);
  info.event.priority = static_cast<int>(row.Int(3));
  info.event.payload = row.Text(4);
  info.age_ms = std::max<int64_t>(0, qtime_ms - row.Int(5));
  info.enqueued_unix_ms = row.Int(6);
  int state = static_cast<int>(row.Int(7));
  if (state == kLeased && row.Int(8) <= qtime_ms) state = kRetry;  // expired, not reclaimed
  info.state = StateName(state);
  info.attempts = static_cast<int>(row.Int(9));
  info.history = internal::DecodeHistory(row.Text(12));
  info.dead_reason = row.Text(13);
  return info;
}

}  // namespace

StatusOr<std::vector<EventInfo>> SqliteQueue::Peek(int limit) {
  if (limit <= 0) return InvalidArgumentError("peek: limit must be positive");
  std::vector<EventInfo> infos;
  const Status run_status = Run(
      [&]() -> Status {
        infos.clear();
        static const std::string sql =
            std::string("SELECT ") + kColumns +
            " FROM events e JOIN payloads p ON p.seq = e.seq WHERE state != 2 "
            "ORDER BY state != 0, priority DESC, e.seq LIMIT ?1";
        ASSIGN_OR_RETURN(Stmt * stmt, db_->Get(sql.c_str()));
        stmt->Bind(1, limit);
        while (true) {
          ASSIGN_OR_RETURN(bool row, stmt->Step());
          if (!row) break;
          infos.push_back(ReadInfo(*stmt, meta_.qtime_ms));
        }
        return Status::Ok();
      },
      /*durable=*/false);
  RETURN_IF_ERROR(run_status);
  return infos;
}

StatusOr<std::vector<EventInfo>> SqliteQueue::DlqList(int limit) {
  if (limit <= 0) return InvalidArgumentError("dlq list: limit must be positive");
  std::vector<EventInfo> infos;
  const Status run_status = Run(
      [&]() -> Status {
        infos.clear();
        static const std::string sql = std::string("SELECT ") + kColumns +
                                       " FROM events e JOIN payloads p ON p.seq = e.seq WHERE "
                                       "state = 2 ORDER BY e.seq LIMIT ?1";
        ASSIGN_OR_RETURN(Stmt * stmt, db_->Get(sql.c_str()));
        stmt->Bind(1, limit);
        while (true) {
          ASSIGN_OR_RETURN(bool row, stmt->Step());
          if (!row) break;
          infos.push_back(ReadInfo(*stmt, meta_.qtime_ms));
        }
        return Status::Ok();
      },
      /*durable=*/false);
  RETURN_IF_ERROR(run_status);
  return infos;
}

StatusOr<int64_t> SqliteQueue::DlqReplay(const std::vector<std::string>& ids) {
  if (options_.read_only) return FailedPreconditionError("queue is open read-only");
  int64_t replayed = 0;
  const Status run_status = Run([&]() -> Status {
    replayed = 0;
    if (ids.empty()) {
      RETURN_IF_ERROR(
          db_->Exec("UPDATE events SET state = 0, attempts = 0, dead_reason = '' "
                    "WHERE state = 2"));
      replayed = db_->Changes();
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(Stmt * stmt, db_->Get("UPDATE events SET state = 0, attempts = 0, "
                                           "dead_reason = '' WHERE state = 2 AND id = ?1"));
    for (const std::string& id : ids) {
      RETURN_IF_ERROR(stmt->BindText(1, id).Exec());
      replayed += db_->Changes();
    }
    return Status::Ok();
  });
  RETURN_IF_ERROR(run_status);
  if (replayed > 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++visible_epoch_;
    }
    visible_cv_.notify_all();
  }
  return replayed;
}

}  // namespace edgeloop::queue
