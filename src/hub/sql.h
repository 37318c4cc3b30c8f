// A small SQL layer private to the hub: one connection to SQLite or PostgreSQL behind one
// interface, so that schema, queries and ingest share their code and only the bulk insert of
// events (COPY on PostgreSQL) is dialect-specific. Statements use '?' placeholders; the
// PostgreSQL connection rewrites them to $1, $2, ...
//
// A connection is not thread-safe: the store keeps a pool and hands each one to one thread at a
// time.
#ifndef EDGELOOP_HUB_SQL_H_
#define EDGELOOP_HUB_SQL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"

namespace edgeloop::hub {

struct Event;

enum class Dialect { kSqlite, kPostgres };

// NULL, an integer, a floating-point number or text.
using SqlValue = std::variant<std::monostate, int64_t, double, std::string>;

struct SqlTable {
  std::vector<std::string> columns;
  std::vector<std::vector<SqlValue>> rows;
};

class SqlConn {
 public:
  virtual ~SqlConn() = default;
  virtual Dialect dialect() const = 0;
  // Runs one or more statements without parameters.
  virtual Status Exec(std::string_view script) = 0;
  // Runs one statement; returns its rows (none for statements that return none).
  virtual StatusOr<SqlTable> Query(std::string_view sql, const std::vector<SqlValue>& params) = 0;
  // Runs one statement; returns the number of rows it changed.
  virtual StatusOr<int64_t> Execute(std::string_view sql, const std::vector<SqlValue>& params) = 0;
  // Inserts the events, skipping ids that are already stored (also within `events`); returns how
  // many were inserted. Runs inside the caller's transaction.
  virtual StatusOr<int64_t> InsertEvents(const std::vector<Event>& events, int64_t received_at) = 0;
  // BEGIN (taking the write lock at once on SQLite), COMMIT, ROLLBACK.
  virtual Status Begin() = 0;
  virtual Status Commit() = 0;
  virtual void Rollback() = 0;
};

// Opens a SQLite database file in WAL mode with synchronous=FULL (an acknowledged commit
// survives kill -9 and power loss), creating it when missing.
StatusOr<std::unique_ptr<SqlConn>> OpenSqlite(const std::string& path);
// Connects to PostgreSQL with a libpq connection string or URI.
StatusOr<std::unique_ptr<SqlConn>> OpenPostgres(const std::string& conninfo);

// The columns of `events` in the order InsertEvents writes them.
inline constexpr std::string_view kEventColumns =
    "id, site, type, ts, received_at, model, model_version, model_digest, request_id, anomaly, "
    "score, latency_ms, prediction, inputs, outputs";

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_SQL_H_
