// A thin SQLite wrapper private to the lake: one connection, prepared statements, errors as
// Status. Not thread-safe (the lake keeps a pool and uses each connection from one thread at a
// time).
#ifndef EDGELOOP_LAKE_SQLITE_DB_H_
#define EDGELOOP_LAKE_SQLITE_DB_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace edgeloop::lake {

class Db;

class Stmt {
 public:
  Stmt(Db* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept : db_(other.db_), stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Binds parameter `i` (1-based) and returns *this for chaining.
  Stmt& Bind(int i, int64_t value);
  Stmt& Bind(int i, std::string_view value);
  Stmt& BindOpt(int i, const std::optional<std::string>& value);
  Stmt& BindNull(int i);
  // true when a row is available, false when done.
  StatusOr<bool> Step();
  // Runs a statement that returns no rows.
  Status Run();
  void Reset();

  int64_t Int(int col) const;
  std::string Text(int col) const;
  bool IsNull(int col) const;
  std::optional<std::string> OptText(int col) const;

 private:
  Db* db_;
  sqlite3_stmt* stmt_;
};

class Db {
 public:
  static StatusOr<std::unique_ptr<Db>> Open(const std::filesystem::path& path, bool create);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status Exec(const std::string& sql);
  StatusOr<Stmt> Prepare(std::string_view sql);
  // The error of the last failed call as a Status (busy -> kUnavailable, corrupt -> kDataLoss).
  Status Error(int rc, std::string_view what) const;
  int64_t LastInsertId() const;
  sqlite3* handle() { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// Rolls back an open transaction unless Commit() succeeded.
class DbTransaction {
 public:
  DbTransaction(const DbTransaction&) = delete;
  DbTransaction& operator=(const DbTransaction&) = delete;
  // BEGIN IMMEDIATE (takes the write lock, waiting up to the busy timeout) or BEGIN (a read
  // transaction: a consistent view of the catalog).
  static StatusOr<std::unique_ptr<DbTransaction>> Begin(Db* db, bool write);
  ~DbTransaction();
  Status Commit();

 private:
  explicit DbTransaction(Db* db) : db_(db) {}
  Db* db_;
  bool done_ = false;
};

}  // namespace edgeloop::lake

#endif  // EDGELOOP_LAKE_SQLITE_DB_H_
