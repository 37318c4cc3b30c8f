// SqlConn over SQLite.
#include <sqlite3.h>

#include "hub/event.h"
#include "hub/sql.h"

namespace edgeloop::hub {
namespace {

class SqliteConn final : public SqlConn {
 public:
  explicit SqliteConn(sqlite3* db) : db_(db) {}
  ~SqliteConn() override {
    if (insert_ != nullptr) sqlite3_finalize(insert_);
    sqlite3_close_v2(db_);
  }

  Dialect dialect() const override { return Dialect::kSqlite; }

  Status Error(std::string_view what) const {
    const int rc = sqlite3_errcode(db_);
    std::string message = std::string(what) + ": " + sqlite3_errmsg(db_);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return UnavailableError(message);
    if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) return DataLossError(message);
    if (rc == SQLITE_CONSTRAINT) return AlreadyExistsError(message);
    if (rc == SQLITE_FULL || rc == SQLITE_IOERR) return UnavailableError(message);
    return InternalError(message);
  }

  Status Exec(std::string_view script) override {
    char* error = nullptr;
    const std::string sql(script);
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      std::string message = error != nullptr ? error : "sqlite3_exec failed";
      sqlite3_free(error);
      Status status = Error("sqlite");
      return Status(status.code(), message);
    }
    return Status::Ok();
  }

  StatusOr<sqlite3_stmt*> Prepare(std::string_view sql, const std::vector<SqlValue>& params) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
        SQLITE_OK) {
      return Error("prepare");
    }
    for (size_t i = 0; i < params.size(); ++i) Bind(stmt, static_cast<int>(i + 1), params[i]);
    return stmt;
  }

  static void Bind(sqlite3_stmt* stmt, int i, const SqlValue& value) {
    if (const auto* n = std::get_if<int64_t>(&value)) {
      sqlite3_bind_int64(stmt, i, *n);
    } else if (const auto* d = std::get_if<double>(&value)) {
      sqlite3_bind_double(stmt, i, *d);
    } else if (const auto* s = std::get_if<std::string>(&value)) {
      sqlite3_bind_text(stmt, i, s->data(), static_cast<int>(s->size()), SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(stmt, i);
    }
  }

  StatusOr<SqlTable> Query(std::string_view sql, const std::vector<SqlValue>& params) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql, params));
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(stmt, sqlite3_finalize);
    SqlTable table;
    const int columns = sqlite3_column_count(stmt);
    for (int c = 0; c < columns; ++c) table.columns.emplace_back(sqlite3_column_name(stmt, c));
    for (;;) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return Error("query");
      std::vector<SqlValue> row;
      row.reserve(static_cast<size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        switch (sqlite3_column_type(stmt, c)) {
          case SQLITE_INTEGER:
            row.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt, c)));
            break;
          case SQLITE_FLOAT:
            row.emplace_back(sqlite3_column_double(stmt, c));
            break;
          case SQLITE_NULL:
            row.emplace_back(std::monostate{});
            break;
          default: {
            const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
            row.emplace_back(std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt, c))));
          }
        }
      }
      table.rows.push_back(std::move(row));
    }
    return table;
  }

  StatusOr<int64_t> Execute(std::string_view sql, const std::vector<SqlValue>& params) override {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql, params));
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(stmt, sqlite3_finalize);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) return Error("execute");
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  StatusOr<int64_t> InsertEvents(const std::vector<Event>& events, int64_t received_at) override {
    if (insert_ == nullptr) {
      const std::string sql =
          "INSERT INTO events (" + std::string(kEventColumns) +
          ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING";
      if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &insert_, nullptr) !=
          SQLITE_OK) {
        return Error("prepare insert");
      }
    }
    int64_t inserted = 0;
    for (const Event& e : events) {
      sqlite3_reset(insert_);
      auto text = [&](int i, std::string_view s) {
        sqlite3_bind_text(insert_, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
      };
      auto opt_text = [&](int i, const std::optional<std::string>& s) {
        if (s) {
          text(i, *s);
        } else {
          sqlite3_bind_null(insert_, i);
        }
      };
      auto opt_double = [&](int i, const std::optional<double>& d) {
        if (d) {
          sqlite3_bind_double(insert_, i, *d);
        } else {
          sqlite3_bind_null(insert_, i);
        }
      };
      text(1, e.id);
      text(2, e.site);
      text(3, e.type);
      sqlite3_bind_int64(insert_, 4, e.ts_ms);
      sqlite3_bind_int64(insert_, 5, received_at);
      text(6, e.model);
      text(7, e.model_version);
      text(8, e.model_digest);
      opt_text(9, e.request_id);
      if (e.anomaly) {
        sqlite3_bind_int64(insert_, 10, *e.anomaly);
      } else {
        sqlite3_bind_null(insert_, 10);
      }
      opt_double(11, e.score);
      opt_double(12, e.latency_ms);
      opt_text(13, e.prediction);
      opt_text(14, e.inputs);
      opt_text(15, e.outputs);
      if (sqlite3_step(insert_) != SQLITE_DONE) {
        Status status = Error("insert event");
        sqlite3_reset(insert_);
        return status;
      }
      inserted += sqlite3_changes(db_);
    }
    sqlite3_reset(insert_);
    sqlite3_clear_bindings(insert_);
    return inserted;
  }

  Status Begin() override { return Exec("BEGIN IMMEDIATE"); }
  Status Commit() override { return Exec("COMMIT"); }
  void Rollback() override {
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* insert_ = nullptr;
};

}  // namespace

StatusOr<std::unique_ptr<SqlConn>> OpenSqlite(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  auto conn = std::make_unique<SqliteConn>(db);
  if (rc != SQLITE_OK) return UnavailableError("cannot open " + path + ": " + sqlite3_errmsg(db));
  sqlite3_busy_timeout(db, 30'000);
  RETURN_IF_ERROR(conn->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
  return std::unique_ptr<SqlConn>(std::move(conn));
}

}  // namespace edgeloop::hub
