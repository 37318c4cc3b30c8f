// SqlConn over libpq. Events are bulk-loaded with COPY, idempotent by id: the rows are COPYed
// straight into `events` inside a savepoint (the common case: nothing was sent before), and only
// when that COPY hits the primary key (a re-sent batch, or a concurrent upload of the same ids)
// is it undone and the slower path taken: COPY into a per-connection temporary staging table,
// then INSERT ... ON CONFLICT DO NOTHING.
#include <libpq-fe.h>

#include <charconv>
#include <memory>
#include <set>
#include <string_view>

#include "hub/event.h"
#include "hub/sql.h"

namespace edgeloop::hub {
namespace {

constexpr unsigned kInt8Oid = 20, kInt2Oid = 21, kInt4Oid = 23, kTextOid = 25, kFloat4Oid = 700,
                   kFloat8Oid = 701, kNumericOid = 1700, kBoolOid = 16;

using Result = std::unique_ptr<PGresult, void (*)(PGresult*)>;

// '?' placeholders become $1, $2, ...
std::string Rewrite(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  for (char c : sql) {
    if (c == '?') {
      out += '$';
      out += std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

void AppendDouble(std::string* out, double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, result.ptr);
}

// COPY text format: tab-separated, \N for NULL, backslash escapes.
void AppendCopyText(std::string* out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      default:
        out->push_back(c);
    }
  }
}

class PostgresConn final : public SqlConn {
 public:
  explicit PostgresConn(PGconn* conn) : conn_(conn) {}
  ~PostgresConn() override { PQfinish(conn_); }

  Dialect dialect() const override { return Dialect::kPostgres; }

  Status Error(std::string_view what, const PGresult* result) {
    std::string message =
        std::string(what) + ": " +
        (result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(conn_));
    while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
      message.pop_back();
    if (PQstatus(conn_) != CONNECTION_OK) {
      // Reconnect for the next user of this pooled connection; this call still fails.
      PQreset(conn_);
      stage_ready_ = false;
      return UnavailableError(message);
    }
    const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    if (state != nullptr) {
      const std::string_view code(state);
      if (code == "23505") return AlreadyExistsError(message);
      if (code.substr(0, 2) == "08" || code == "57P01" || code == "53300" || code == "40001" ||
          code == "40P01") {
        return UnavailableError(message);
      }
      if (code.substr(0, 2) == "22" || code.substr(0, 2) == "23")
        return InvalidArgumentError(message);
    }
    return InternalError(message);
  }

  Status Exec(std::string_view script) override {
    const std::string sql(script);
    Result result(PQexec(conn_, sql.c_str()), PQclear);
    const auto status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
      return Error("postgresql", result.get());
    return Status::Ok();
  }

  StatusOr<Result> Run(std::string_view sql, const std::vector<SqlValue>& params) {
    const std::string text = Rewrite(sql);
    std::vector<std::string> storage(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    std::vector<unsigned> types(params.size(), 0);
    for (size_t i = 0; i < params.size(); ++i) {
      if (const auto* n = std::get_if<int64_t>(&params[i])) {
        storage[i] = std::to_string(*n);
        types[i] = kInt8Oid;
      } else if (const auto* d = std::get_if<double>(&params[i])) {
        AppendDouble(&storage[i], *d);
        types[i] = kFloat8Oid;
      } else if (const auto* s = std::get_if<std::string>(&params[i])) {
        storage[i] = *s;
        types[i] = kTextOid;
      } else {
        continue;  // NULL
      }
      values[i] = storage[i].c_str();
    }
    Result result(PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), types.data(),
                               values.data(), nullptr, nullptr, 0),
                  PQclear);
    const auto status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
      return Error("postgresql", result.get());
    return result;
  }

  StatusOr<SqlTable> Query(std::string_view sql, const std::vector<SqlValue>& params) override {
    ASSIGN_OR_RETURN(Result result, Run(sql, params));
    SqlTable table;
    const int columns = PQnfields(result.get());
    const int rows = PQntuples(result.get());
    for (int c = 0; c < columns; ++c) table.columns.emplace_back(PQfname(result.get(), c));
    table.rows.reserve(static_cast<size_t>(rows));
    for (int r = 0; r < rows; ++r) {
      std::vector<SqlValue> row;
      row.reserve(static_cast<size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (PQgetisnull(result.get(), r, c)) {
          row.emplace_back(std::monostate{});
          continue;
        }
        const char* value = PQgetvalue(result.get(), r, c);
        const int length = PQgetlength(result.get(), r, c);
        switch (PQftype(result.get(), c)) {
          case kInt8Oid:
          case kInt2Oid:
          case kInt4Oid: {
            int64_t n = 0;
            std::from_chars(value, value + length, n);
            row.emplace_back(n);
            break;
          }
          case kFloat4Oid:
          case kFloat8Oid:
          case kNumericOid: {
            double d = 0;
            std::from_chars(value, value + length, d);
            row.emplace_back(d);
            break;
          }
          case kBoolOid:
            row.emplace_back(static_cast<int64_t>(value[0] == 't' ? 1 : 0));
            break;
          default:
            row.emplace_back(std::string(value, static_cast<size_t>(length)));
        }
      }
      table.rows.push_back(std::move(row));
    }
    return table;
  }

  StatusOr<int64_t> Execute(std::string_view sql, const std::vector<SqlValue>& params) override {
    ASSIGN_OR_RETURN(Result result, Run(sql, params));
    const char* tuples = PQcmdTuples(result.get());
    return tuples[0] == '\0' ? 0 : std::stoll(tuples);
  }

  StatusOr<int64_t> InsertEvents(const std::vector<Event>& events, int64_t received_at) override {
    if (events.empty()) return 0;
    std::set<std::string_view> seen;
    std::vector<const Event*> fresh;
    fresh.reserve(events.size());
    for (const Event& e : events) {
      if (seen.insert(e.id).second)
        fresh.push_back(&e);  // a repeat within the batch is a duplicate
    }
    RETURN_IF_ERROR(Exec("SAVEPOINT edgeloop_copy"));
    StatusOr<int64_t> copied = Copy("events", fresh, received_at);
    if (copied.ok() || copied.status().code() != StatusCode::kAlreadyExists) {
      if (!copied.ok()) return copied.status();
      RETURN_IF_ERROR(Exec("RELEASE SAVEPOINT edgeloop_copy"));
      return copied;
    }
    // Some of these ids are stored already (a re-sent batch): stage, then insert what is new.
    RETURN_IF_ERROR(Exec("ROLLBACK TO SAVEPOINT edgeloop_copy"));
    if (!stage_ready_) {
      RETURN_IF_ERROR(
          Exec("CREATE TEMP TABLE IF NOT EXISTS ingest_stage (LIKE events INCLUDING DEFAULTS) "
               "ON COMMIT DELETE ROWS"));
      stage_ready_ = true;
    }
    RETURN_IF_ERROR(Exec("TRUNCATE ingest_stage"));
    RETURN_IF_ERROR(Copy("ingest_stage", fresh, received_at).status());
    return Execute("INSERT INTO events (" + std::string(kEventColumns) + ") SELECT " +
                       std::string(kEventColumns) +
                       " FROM ingest_stage ON CONFLICT (id) DO NOTHING",
                   {});
  }

  Status Begin() override { return Exec("BEGIN"); }
  Status Commit() override { return Exec("COMMIT"); }
  void Rollback() override {
    Result result(PQexec(conn_, "ROLLBACK"), PQclear);
    // A staging table created in the rolled-back transaction is gone.
    stage_ready_ = false;
  }

 private:
  // COPY of `events` into `table`; the number of rows copied. kAlreadyExists when a row's id is
  // in `events` already (SQLSTATE 23505).
  StatusOr<int64_t> Copy(const std::string& table, const std::vector<const Event*>& events,
                         int64_t received_at) {
    const std::string copy = "COPY " + table + " (" + std::string(kEventColumns) + ") FROM STDIN";
    {
      Result result(PQexec(conn_, copy.c_str()), PQclear);
      if (PQresultStatus(result.get()) != PGRES_COPY_IN) return Error("COPY", result.get());
    }
    std::string data;
    data.reserve(events.size() * 256);
    const std::string received = std::to_string(received_at);
    auto text = [&](std::string_view s) {
      AppendCopyText(&data, s);
      data.push_back('\t');
    };
    auto opt_text = [&](const std::optional<std::string>& s) {
      if (s) {
        AppendCopyText(&data, *s);
      } else {
        data.append("\\N");
      }
      data.push_back('\t');
    };
    auto opt_double = [&](const std::optional<double>& d) {
      if (d) {
        AppendDouble(&data, *d);
      } else {
        data.append("\\N");
      }
      data.push_back('\t');
    };
    for (const Event* event : events) {
      const Event& e = *event;
      text(e.id);
      text(e.site);
      text(e.type);
      text(std::to_string(e.ts_ms));
      text(received);
      text(e.model);
      text(e.model_version);
      text(e.model_digest);
      opt_text(e.request_id);
      if (e.anomaly) {
        text(std::to_string(*e.anomaly));
      } else {
        data.append("\\N\t");
      }
      opt_double(e.score);
      opt_double(e.latency_ms);
      opt_text(e.prediction);
      opt_text(e.inputs);
      opt_text(e.outputs);
      data.back() = '\n';
    }
    if (PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1 ||
        PQputCopyEnd(conn_, nullptr) != 1) {
      return Error("COPY data", nullptr);
    }
    Status copy_status;
    int64_t rows = 0;
    while (PGresult* raw = PQgetResult(conn_)) {
      Result result(raw, PQclear);
      if (PQresultStatus(raw) != PGRES_COMMAND_OK) {
        if (copy_status.ok()) copy_status = Error("COPY", raw);
      } else if (const char* tuples = PQcmdTuples(raw); tuples[0] != '\0') {
        rows = std::stoll(tuples);
      }
    }
    RETURN_IF_ERROR(copy_status);
    return rows;
  }

  PGconn* conn_;
  bool stage_ready_ = false;
};

}  // namespace

StatusOr<std::unique_ptr<SqlConn>> OpenPostgres(const std::string& conninfo) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  auto owned = std::make_unique<PostgresConn>(conn);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
      message.pop_back();
    return UnavailableError("cannot connect to PostgreSQL: " + message);
  }
  RETURN_IF_ERROR(owned->Exec("SET client_min_messages = warning"));
  return std::unique_ptr<SqlConn>(std::move(owned));
}

}  // namespace edgeloop::hub
