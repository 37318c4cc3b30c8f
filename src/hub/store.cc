#include "hub/store.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <thread>
#include <tuple>

// GCC 12 reports std::variant<..., std::string> temporaries in initializer lists as "maybe
// uninitialized" (a known false positive, GCC bug 105593 and relatives).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace edgeloop::hub {
namespace {

// Migrations, in order. `{{ID}}` is the dialect's auto-increment key column type.
struct Migration {
  int version;
  const char* name;
  const char* sqlite;
  const char* postgres;  // nullptr: the same script as SQLite
};

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE sites (
  name TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  last_seen_at BIGINT,
  events_total BIGINT NOT NULL DEFAULT 0,
  uploads_total BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE tokens (
  hash TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('site', 'read', 'admin')),
  site TEXT REFERENCES sites (name),
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  revoked_at BIGINT
);
CREATE INDEX tokens_name ON tokens (name);
CREATE TABLE model_versions (
  site TEXT NOT NULL,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  digest TEXT NOT NULL,
  first_seen_at BIGINT NOT NULL,
  last_seen_at BIGINT NOT NULL,
  PRIMARY KEY (site, model, version, digest)
);
CREATE TABLE events (
  id TEXT PRIMARY KEY,
  site TEXT NOT NULL,
  type TEXT NOT NULL,
  ts BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  model TEXT NOT NULL,
  model_version TEXT NOT NULL,
  model_digest TEXT NOT NULL,
  request_id TEXT,
  anomaly SMALLINT,
  score DOUBLE PRECISION,
  latency_ms DOUBLE PRECISION,
  prediction TEXT,
  inputs TEXT,
  outputs TEXT
);
CREATE INDEX events_ts ON events (ts);
CREATE INDEX events_site_ts ON events (site, ts);
CREATE TABLE feedback (
  event_id TEXT PRIMARY KEY,
  site TEXT NOT NULL,
  target_id TEXT NOT NULL,
  label TEXT,
  correct SMALLINT,
  ts BIGINT NOT NULL
);
CREATE INDEX feedback_ts ON feedback (ts);
CREATE TABLE uploads (
  id {{ID}},
  site TEXT NOT NULL,
  received_at BIGINT NOT NULL,
  idempotency_key TEXT,
  encoding TEXT NOT NULL,
  bytes_received BIGINT NOT NULL,
  bytes BIGINT NOT NULL,
  events INTEGER NOT NULL,
  accepted INTEGER NOT NULL,
  duplicates INTEGER NOT NULL,
  rejected INTEGER NOT NULL
);
CREATE INDEX uploads_site ON uploads (site, received_at);
)sql";

constexpr const char* kViewsSqlite = R"sql(
CREATE VIEW events_view AS
  SELECT e.*, strftime('%Y-%m-%dT%H:%M:%fZ', ts / 1000.0, 'unixepoch') AS event_time,
         strftime('%Y-%m-%dT%H:%M:%fZ', received_at / 1000.0, 'unixepoch') AS received_time
  FROM events e;
CREATE VIEW feedback_view AS
  SELECT f.*, e.model, e.model_version, e.prediction,
         COALESCE(f.correct, CASE WHEN f.label = e.prediction THEN 1 ELSE 0 END) AS is_correct,
         strftime('%Y-%m-%dT%H:%M:%fZ', f.ts / 1000.0, 'unixepoch') AS feedback_time
  FROM feedback f LEFT JOIN events e ON e.id = f.target_id;
)sql";

constexpr const char* kViewsPostgres = R"sql(
CREATE VIEW events_view AS
  SELECT e.*, to_timestamp(ts / 1000.0) AS event_time,
         to_timestamp(received_at / 1000.0) AS received_time
  FROM events e;
CREATE VIEW feedback_view AS
  SELECT f.*, e.model, e.model_version, e.prediction,
         COALESCE(f.correct, CASE WHEN f.label = e.prediction THEN 1 ELSE 0 END) AS is_correct,
         to_timestamp(f.ts / 1000.0) AS feedback_time
  FROM feedback f LEFT JOIN events e ON e.id = f.target_id;
)sql";

// Drift reports from the edges and the retraining scheduler's job history.
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE drift_reports (
  event_id TEXT PRIMARY KEY,
  site TEXT NOT NULL,
  model TEXT NOT NULL,
  model_version TEXT NOT NULL,
  ts BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  window_rows BIGINT NOT NULL,
  drifted_features INTEGER NOT NULL,
  details TEXT NOT NULL
);
CREATE INDEX drift_reports_model ON drift_reports (model, received_at);
CREATE INDEX events_site_request ON events (site, request_id);
CREATE TABLE jobs (
  id {{ID}},
  model TEXT NOT NULL,
  trigger TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  started_at BIGINT,
  finished_at BIGINT,
  exit_step TEXT,
  error TEXT,
  gate_passed SMALLINT,
  gate_metric TEXT,
  challenger DOUBLE PRECISION,
  champion DOUBLE PRECISION,
  version TEXT,
  digest TEXT,
  details TEXT,
  log TEXT
);
CREATE INDEX jobs_model ON jobs (model, id);
)sql";

const Migration kMigrations[] = {
    {1, "initial schema", kSchemaV1, nullptr},
    {2, "views with timestamps for BI tools", kViewsSqlite, kViewsPostgres},
    {3, "drift reports and retraining jobs", kSchemaV3, nullptr},
};

std::string MigrationScript(const Migration& m, Dialect dialect) {
  std::string script =
      dialect == Dialect::kPostgres && m.postgres != nullptr ? m.postgres : m.sqlite;
  const std::string id = dialect == Dialect::kPostgres
                             ? "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
                             : "INTEGER PRIMARY KEY AUTOINCREMENT";
  for (size_t pos; (pos = script.find("{{ID}}")) != std::string::npos;) {
    script.replace(pos, 6, id);
  }
  return script;
}

int64_t AsInt(const SqlValue& value) {
  if (const auto* n = std::get_if<int64_t>(&value)) return *n;
  if (const auto* d = std::get_if<double>(&value)) return static_cast<int64_t>(*d);
  if (const auto* s = std::get_if<std::string>(&value)) return std::atoll(s->c_str());
  return 0;
}

double AsDouble(const SqlValue& value) {
  if (const auto* n = std::get_if<int64_t>(&value)) return static_cast<double>(*n);
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* s = std::get_if<std::string>(&value)) return std::atof(s->c_str());
  return 0;
}

std::optional<int64_t> AsOptInt(const SqlValue& value) {
  if (std::holds_alternative<std::monostate>(value)) return std::nullopt;
  return AsInt(value);
}

std::string AsText(const SqlValue& value) {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  if (const auto* n = std::get_if<int64_t>(&value)) return std::to_string(*n);
  return "";
}

bool ValidSiteName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// " AND <ts> >= ? AND ..." for the filter; `ts`, `site`, `model`, `version` name the columns.
std::string Where(const QueryFilter& f, std::vector<SqlValue>* params, std::string_view ts = "ts",
                  std::string_view site = "site", std::string_view model = "model",
                  std::string_view version = "model_version") {
  std::string sql;
  if (f.from_ms) {
    sql += " AND " + std::string(ts) + " >= ?";
    params->emplace_back(*f.from_ms);
  }
  if (f.to_ms) {
    sql += " AND " + std::string(ts) + " < ?";
    params->emplace_back(*f.to_ms);
  }
  if (!f.site.empty()) {
    sql += " AND " + std::string(site) + " = ?";
    params->emplace_back(f.site);
  }
  if (!f.model.empty()) {
    sql += " AND " + std::string(model) + " = ?";
    params->emplace_back(f.model);
  }
  if (!f.version.empty()) {
    sql += " AND " + std::string(version) + " = ?";
    params->emplace_back(f.version);
  }
  return sql;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kSite:
      return "site";
    case Role::kRead:
      return "read";
    case Role::kAdmin:
      return "admin";
  }
  return "read";
}

StatusOr<Role> ParseRole(std::string_view text) {
  if (text == "site") return Role::kSite;
  if (text == "read") return Role::kRead;
  if (text == "admin") return Role::kAdmin;
  return InvalidArgumentError("unknown role '" + std::string(text) + "'; use site, read or admin");
}

// A connection borrowed from the pool; returned when this goes away.
class Store::Lease {
 public:
  Lease(Store* store, std::unique_ptr<SqlConn> conn) : store_(store), conn_(std::move(conn)) {}
  Lease(Lease&&) = default;
  ~Lease() {
    if (conn_) store_->Release(std::move(conn_));
  }
  SqlConn* operator->() { return conn_.get(); }
  SqlConn& operator*() { return *conn_; }

 private:
  Store* store_;
  std::unique_ptr<SqlConn> conn_;
};

Store::Store(Dialect dialect, std::vector<std::unique_ptr<SqlConn>> pool)
    : dialect_(dialect),
      pg_max_leaders_(std::max<size_t>(
          1, std::min<size_t>(pool.size(), std::max(1u, std::thread::hardware_concurrency())))),
      idle_(std::move(pool)) {}

Store::~Store() = default;

Store::Lease Store::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  available_.wait(lock, [this] { return !idle_.empty(); });
  std::unique_ptr<SqlConn> conn = std::move(idle_.back());
  idle_.pop_back();
  return Lease(this, std::move(conn));
}

void Store::Release(std::unique_ptr<SqlConn> conn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(conn));
  }
  available_.notify_one();
}

StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& url, const StoreOptions& options) {
  Dialect dialect;
  std::string target;
  if (url.rfind("sqlite://", 0) == 0) {
    dialect = Dialect::kSqlite;
    target = url.substr(9);
  } else if (url.rfind("sqlite:", 0) == 0) {
    dialect = Dialect::kSqlite;
    target = url.substr(7);
  } else if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    dialect = Dialect::kPostgres;
    target = url;
  } else {
    return InvalidArgumentError("unsupported store '" + url +
                                "'; use sqlite://FILE or postgresql://USER@HOST:PORT/DB");
  }
  if (target.empty()) return InvalidArgumentError("the store URL '" + url + "' names no database");
  const int size = std::max(1, options.pool_size);
  std::vector<std::unique_ptr<SqlConn>> pool;
  for (int i = 0; i < size; ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<SqlConn> conn,
                     dialect == Dialect::kSqlite ? OpenSqlite(target) : OpenPostgres(target));
    pool.push_back(std::move(conn));
  }
  std::unique_ptr<Store> store(new Store(dialect, std::move(pool)));
  if (options.migrate) {
    ASSIGN_OR_RETURN(std::vector<int> applied, store->Migrate());
    (void)applied;
  }
  ASSIGN_OR_RETURN(const int version, store->SchemaVersion());
  if (version > kSchemaVersion) {
    return FailedPreconditionError("the database has schema version " + std::to_string(version) +
                                   ", newer than this build's " + std::to_string(kSchemaVersion) +
                                   "; upgrade edgeloop");
  }
  if (version < kSchemaVersion) {
    return FailedPreconditionError("the database has schema version " + std::to_string(version) +
                                   " and this build needs " + std::to_string(kSchemaVersion) +
                                   "; run `edgeloop hub migrate --store ...`");
  }
  return store;
}

StatusOr<int> Store::SchemaVersion() {
  Lease conn = Acquire();
  RETURN_IF_ERROR(
      conn->Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                 "name TEXT NOT NULL, applied_at BIGINT NOT NULL)"));
  ASSIGN_OR_RETURN(SqlTable table,
                   conn->Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}));
  return static_cast<int>(AsInt(table.rows.at(0).at(0)));
}

StatusOr<std::vector<int>> Store::Migrate() {
  std::vector<int> applied;
  ASSIGN_OR_RETURN(const int start, SchemaVersion());
  (void)start;
  Lease conn = Acquire();
  for (const Migration& m : kMigrations) {
    RETURN_IF_ERROR(conn->Begin());
    // Another process may be migrating too: serialise, then look again.
    if (dialect_ == Dialect::kPostgres) {
      if (Status s = conn->Exec("SELECT pg_advisory_xact_lock(727274)"); !s.ok()) {
        conn->Rollback();
        return s;
      }
    }
    auto current = conn->Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {});
    if (!current.ok()) {
      conn->Rollback();
      return current.status();
    }
    if (AsInt(current->rows.at(0).at(0)) >= m.version) {
      conn->Rollback();
      continue;
    }
    Status status = conn->Exec(MigrationScript(m, dialect_));
    if (status.ok()) {
      status =
          conn->Execute(
                  "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                  {int64_t{m.version}, std::string(m.name),
                   static_cast<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count())})
              .status();
    }
    if (status.ok()) status = conn->Commit();
    if (!status.ok()) {
      conn->Rollback();
      return status.WithContext("migration " + std::to_string(m.version) + " (" + m.name + ")");
    }
    applied.push_back(m.version);
  }
  return applied;
}

Status Store::AddSite(const std::string& name, int64_t now_ms) {
  if (!ValidSiteName(name)) {
    return InvalidArgumentError("invalid site name '" + name +
                                "': use 1-64 characters of letters, digits, '.', '_' and '-'");
  }
  Lease conn = Acquire();
  auto inserted = conn->Execute(
      "INSERT INTO sites (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
      {name, now_ms});
  if (!inserted.ok()) return inserted.status();
  if (*inserted == 0) return AlreadyExistsError("site '" + name + "' already exists");
  return Status::Ok();
}

StatusOr<std::vector<SiteInfo>> Store::ListSites() {
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(SqlTable table,
                   conn->Query("SELECT name, created_at, last_seen_at, events_total, uploads_total "
                               "FROM sites ORDER BY name",
                               {}));
  std::vector<SiteInfo> sites;
  for (const auto& row : table.rows) {
    sites.push_back(
        {AsText(row[0]), AsInt(row[1]), AsOptInt(row[2]), AsInt(row[3]), AsInt(row[4])});
  }
  return sites;
}

StatusOr<bool> Store::SiteExists(const std::string& name) {
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(SqlTable table, conn->Query("SELECT 1 FROM sites WHERE name = ?", {name}));
  return !table.rows.empty();
}

Status Store::AddToken(const std::string& hash, const TokenRecord& record) {
  if (record.role == Role::kSite && record.site.empty()) {
    return InvalidArgumentError("a site token needs a site");
  }
  if (record.role != Role::kSite && !record.site.empty()) {
    return InvalidArgumentError("only site tokens belong to a site");
  }
  Lease conn = Acquire();
  auto inserted = conn->Execute(
      "INSERT INTO tokens (hash, name, role, site, created_at, expires_at) VALUES (?, ?, ?, ?, ?, "
      "?)",
      {hash, record.name, std::string(RoleName(record.role)),
       record.site.empty() ? SqlValue{} : SqlValue{record.site}, record.created_at,
       record.expires_at ? SqlValue{*record.expires_at} : SqlValue{}});
  return inserted.status();
}

StatusOr<std::optional<TokenRecord>> Store::FindToken(const std::string& hash) {
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(SqlTable table,
                   conn->Query("SELECT name, role, site, created_at, expires_at, revoked_at "
                               "FROM tokens WHERE hash = ?",
                               {hash}));
  if (table.rows.empty()) return std::optional<TokenRecord>();
  const auto& row = table.rows[0];
  ASSIGN_OR_RETURN(Role role, ParseRole(AsText(row[1])));
  return std::optional<TokenRecord>(TokenRecord{AsText(row[0]), role, AsText(row[2]), AsInt(row[3]),
                                                AsOptInt(row[4]), AsOptInt(row[5])});
}

StatusOr<std::vector<TokenRecord>> Store::ListTokens() {
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(SqlTable table,
                   conn->Query("SELECT name, role, site, created_at, expires_at, revoked_at "
                               "FROM tokens ORDER BY created_at, name",
                               {}));
  std::vector<TokenRecord> tokens;
  for (const auto& row : table.rows) {
    ASSIGN_OR_RETURN(Role role, ParseRole(AsText(row[1])));
    tokens.push_back(
        {AsText(row[0]), role, AsText(row[2]), AsInt(row[3]), AsOptInt(row[4]), AsOptInt(row[5])});
  }
  return tokens;
}

StatusOr<int64_t> Store::RevokeTokens(const std::string& name, int64_t now_ms) {
  Lease conn = Acquire();
  return conn->Execute("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                       {now_ms, name});
}

namespace {

// (site, model, version, digest) → the event-time span of what that version scored.
using VersionSpans = std::map<std::tuple<std::string, std::string, std::string, std::string>,
                              std::pair<int64_t, int64_t>>;

void NoteVersions(const std::string& site, const std::vector<Event>& events, VersionSpans* spans) {
  for (const Event& e : events) {
    // A version is seen in what it scored (feedback names the model, not always the version).
    if (e.model.empty() || e.model_version.empty() || e.type == "feedback") continue;
    auto [it, first] =
        spans->try_emplace({site, e.model, e.model_version, e.model_digest}, e.ts_ms, e.ts_ms);
    if (!first) {
      it->second.first = std::min(it->second.first, e.ts_ms);
      it->second.second = std::max(it->second.second, e.ts_ms);
    }
  }
}

// One multi-row upsert into model_versions, widening each version's span.
Status UpsertVersions(SqlConn* conn, Dialect dialect, const VersionSpans& spans) {
  if (spans.empty()) return Status::Ok();
  const bool pg = dialect == Dialect::kPostgres;
  std::string sql =
      "INSERT INTO model_versions (site, model, version, digest, first_seen_at, last_seen_at) "
      "VALUES ";
  std::vector<SqlValue> params;
  for (const auto& [key, span] : spans) {
    sql += params.empty() ? "(?, ?, ?, ?, ?, ?)" : ", (?, ?, ?, ?, ?, ?)";
    params.insert(params.end(), {std::get<0>(key), std::get<1>(key), std::get<2>(key),
                                 std::get<3>(key), span.first, span.second});
  }
  sql += std::string(" ON CONFLICT (site, model, version, digest) DO UPDATE SET first_seen_at = ") +
         (pg ? "LEAST" : "MIN") + "(model_versions.first_seen_at, excluded.first_seen_at), " +
         "last_seen_at = " + (pg ? "GREATEST" : "MAX") +
         "(model_versions.last_seen_at, excluded.last_seen_at)";
  return conn->Execute(sql, params).status();
}

}  // namespace

// The work of one upload inside a transaction that the caller begins and commits.
StatusOr<IngestResult> Store::IngestOne(SqlConn* conn, const UploadMeta& meta,
                                        const std::vector<Event>& events, int64_t rejected) {
  IngestResult result;
  ASSIGN_OR_RETURN(result.accepted, conn->InsertEvents(events, meta.received_at));
  result.duplicates = static_cast<int64_t>(events.size()) - result.accepted;

  // Feedback labels, in multi-row inserts.
  constexpr size_t kRowsPerInsert = 200;
  std::vector<const Event*> feedback;
  for (const Event& e : events) {
    if (e.type == "feedback") feedback.push_back(&e);
  }
  for (size_t start = 0; start < feedback.size(); start += kRowsPerInsert) {
    const size_t end = std::min(feedback.size(), start + kRowsPerInsert);
    std::string sql =
        "INSERT INTO feedback (event_id, site, target_id, label, correct, ts) VALUES ";
    std::vector<SqlValue> params;
    for (size_t i = start; i < end; ++i) {
      const Event& e = *feedback[i];
      sql += i == start ? "(?, ?, ?, ?, ?, ?)" : ", (?, ?, ?, ?, ?, ?)";
      params.emplace_back(e.id);
      params.emplace_back(e.site);
      params.emplace_back(e.target_id);
      params.push_back(e.label ? SqlValue{*e.label} : SqlValue{});
      params.push_back(e.correct ? SqlValue{*e.correct} : SqlValue{});
      params.emplace_back(e.ts_ms);
    }
    sql += " ON CONFLICT (event_id) DO NOTHING";
    RETURN_IF_ERROR(conn->Execute(sql, params).status());
  }

  // Drift reports (only those of new events: a duplicate changes nothing).
  for (const Event& e : events) {
    if (e.type != "drift" || !e.drift) continue;
    RETURN_IF_ERROR(
        conn->Execute("INSERT INTO drift_reports (event_id, site, model, "
                      "model_version, ts, received_at, window_rows, "
                      "drifted_features, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (event_id) DO NOTHING",
                      {e.id, e.site, e.model, e.model_version, e.ts_ms, meta.received_at,
                       e.drift_window_rows, e.drifted_features, *e.drift})
            .status());
  }

  VersionSpans versions;
  NoteVersions(meta.site, events, &versions);
  RETURN_IF_ERROR(UpsertVersions(conn, dialect_, versions));

  ASSIGN_OR_RETURN(const int64_t updated,
                   conn->Execute("UPDATE sites SET last_seen_at = ?, events_total = events_total "
                                 "+ ?, uploads_total = uploads_total + 1 WHERE name = ?",
                                 {meta.received_at, result.accepted, meta.site}));
  if (updated == 0) return NotFoundError("site '" + meta.site + "' does not exist");
  RETURN_IF_ERROR(
      conn->Execute(
              "INSERT INTO uploads (site, received_at, idempotency_key, encoding, "
              "bytes_received, bytes, events, accepted, duplicates, rejected) VALUES "
              "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              {meta.site, meta.received_at,
               meta.idempotency_key.empty() ? SqlValue{} : SqlValue{meta.idempotency_key},
               meta.encoding.empty() ? std::string("identity") : meta.encoding, meta.bytes_received,
               meta.bytes, static_cast<int64_t>(events.size()) + rejected, result.accepted,
               result.duplicates, rejected})
          .status());
  return result;
}

StatusOr<IngestResult> Store::Ingest(const UploadMeta& meta, const std::vector<Event>& events,
                                     int64_t rejected) {
  for (const Event& e : events) {
    if (e.site != meta.site) {
      return PermissionDeniedError("event " + e.id + " belongs to another site");
    }
  }
  auto run = [&](SqlConn* conn) { return IngestOne(conn, meta, events, rejected); };
  // SQLite has one writer at a time and pays an fsync per COMMIT: concurrent uploads share one.
  if (dialect_ == Dialect::kSqlite) return GroupCommit(run);
  // PostgreSQL: concurrent uploads are merged into one COPY and a few multi-row statements.
  if (dialect_ == Dialect::kPostgres) {
    PendingPg self{&meta, &events, rejected, std::nullopt};
    std::unique_lock<std::mutex> lock(group_mu_);
    pg_queue_.push_back(&self);
    while (!self.result) {
      if (pg_leaders_ >= pg_max_leaders_ || pg_queue_.empty()) {
        group_cv_.wait(lock);
        continue;
      }
      ++pg_leaders_;
      constexpr size_t kMaxGroup = 64;
      const size_t take = std::min(pg_queue_.size(), kMaxGroup);
      std::vector<PendingPg*> group(pg_queue_.begin(), pg_queue_.begin() + static_cast<long>(take));
      pg_queue_.erase(pg_queue_.begin(), pg_queue_.begin() + static_cast<long>(take));
      lock.unlock();
      std::vector<StatusOr<IngestResult>> results = CommitPgGroup(group);
      lock.lock();
      for (size_t i = 0; i < group.size(); ++i) group[i]->result = std::move(results[i]);
      --pg_leaders_;
      group_cv_.notify_all();
    }
    return std::move(*self.result);
  }
  Lease conn = Acquire();
  RETURN_IF_ERROR(conn->Begin());
  StatusOr<IngestResult> result = run(&*conn);
  if (result.ok()) {
    if (Status committed = conn->Commit(); !committed.ok()) result = committed;
  }
  if (!result.ok()) conn->Rollback();
  return result;
}

struct Store::PendingIngest {
  const IngestWork* work;
  std::optional<StatusOr<IngestResult>> result;  // GUARDED_BY(group_mu_)
};

// Leader/follower: the first caller to find no transaction in progress becomes the leader, takes
// every upload queued so far (its own included) and commits them together; the others wait and
// are answered when the leader publishes the results. A caller whose upload was taken by a
// leader waits for that leader; one queued after the leader took its group leads the next group.
StatusOr<IngestResult> Store::GroupCommit(const IngestWork& work) {
  PendingIngest self{&work, std::nullopt};
  std::unique_lock<std::mutex> lock(group_mu_);
  group_queue_.push_back(&self);
  while (!self.result) {
    if (group_leader_) {
      group_cv_.wait(lock);
      continue;
    }
    group_leader_ = true;
    constexpr size_t kMaxGroup = 256;
    std::vector<PendingIngest*> group;
    if (group_queue_.size() <= kMaxGroup) {
      group.swap(group_queue_);
    } else {
      group.assign(group_queue_.begin(), group_queue_.begin() + kMaxGroup);
      group_queue_.erase(group_queue_.begin(), group_queue_.begin() + kMaxGroup);
    }
    lock.unlock();
    CommitGroup(group);  // sets each result under group_mu_
    lock.lock();
    group_leader_ = false;
    group_cv_.notify_all();
  }
  return std::move(*self.result);
}

void Store::CommitGroup(const std::vector<PendingIngest*>& group) {
  std::vector<StatusOr<IngestResult>> results;
  results.reserve(group.size());
  auto fail_all = [&](const Status& status) {
    results.assign(group.size(), StatusOr<IngestResult>(status));
  };
  {
    Lease conn = Acquire();
    if (Status begun = conn->Begin(); !begun.ok()) {
      fail_all(begun);
    } else {
      Status broken = Status::Ok();
      for (PendingIngest* pending : group) {
        // A savepoint per upload: one that fails (an unknown site) is undone alone.
        if (broken = conn->Exec("SAVEPOINT upload"); !broken.ok()) break;
        StatusOr<IngestResult> result = (*pending->work)(&*conn);
        broken = conn->Exec(result.ok() ? "RELEASE upload" : "ROLLBACK TO upload; RELEASE upload");
        if (!broken.ok()) break;
        results.push_back(std::move(result));
      }
      if (broken.ok()) broken = conn->Commit();
      if (broken.ok()) ingest_commits_.fetch_add(1, std::memory_order_relaxed);
      if (!broken.ok()) {
        conn->Rollback();
        fail_all(broken);
      }
    }
  }
  std::lock_guard<std::mutex> lock(group_mu_);
  for (size_t i = 0; i < group.size(); ++i) group[i]->result = std::move(results[i]);
}

// One transaction for a group of uploads (PostgreSQL): the events of every upload go in one
// COPY, and the model versions, the sites'
// counters and the uploads' audit rows in one multi-row statement each. Each upload's answer is
// what it would have got alone. When anything in the merged transaction fails (an unknown site,
// events stored before: a re-sent batch), it is rolled back and every upload of the group runs
// alone, in its own transaction, which gives each its own result or error.
std::vector<StatusOr<IngestResult>> Store::CommitPgGroup(const std::vector<PendingPg*>& group) {
  auto alone = [&](const PendingPg& p) -> StatusOr<IngestResult> {
    Lease conn = Acquire();
    RETURN_IF_ERROR(conn->Begin());
    StatusOr<IngestResult> result = IngestOne(&*conn, *p.meta, *p.events, p.rejected);
    if (result.ok()) {
      if (Status committed = conn->Commit(); !committed.ok()) result = committed;
    }
    if (!result.ok()) conn->Rollback();
    return result;
  };
  std::vector<StatusOr<IngestResult>> results;
  bool plain = group.size() == 1;
  for (const PendingPg* p : group) {
    for (const Event& e : *p->events) {
      // Feedback and drift reports go to tables of their own: those uploads run alone.
      if (e.type == "feedback" || e.type == "drift") plain = true;
    }
  }
  if (!plain) {
    Lease conn = Acquire();
    StatusOr<std::vector<IngestResult>> merged = [&]() -> StatusOr<std::vector<IngestResult>> {
      RETURN_IF_ERROR(conn->Begin());
      int64_t received_at = 0;
      for (const PendingPg* p : group) received_at = std::max(received_at, p->meta->received_at);
      // Ids repeated within the group count once (the first upload's); ids stored before make
      // the COPY insert fewer rows, and the group then runs upload by upload.
      std::set<std::string> skip;
      std::vector<Event> fresh;
      std::vector<IngestResult> out(group.size());
      VersionSpans seen;
      std::map<std::string, std::pair<int64_t, int64_t>> sites;  // accepted, uploads
      for (size_t g = 0; g < group.size(); ++g) {
        const PendingPg& p = *group[g];
        for (const Event& e : *p.events) {
          if (skip.insert(e.id).second) {
            fresh.push_back(e);
            ++out[g].accepted;
          }
        }
        NoteVersions(p.meta->site, *p.events, &seen);
        out[g].duplicates = static_cast<int64_t>(p.events->size()) - out[g].accepted;
        auto& site = sites[p.meta->site];
        site.first += out[g].accepted;
        site.second += 1;
      }
      ASSIGN_OR_RETURN(const int64_t inserted, conn->InsertEvents(fresh, received_at));
      if (inserted != static_cast<int64_t>(fresh.size())) {
        return AbortedError("some of the events were stored before");
      }
      RETURN_IF_ERROR(UpsertVersions(&*conn, dialect_, seen));
      {
        std::string sql =
            "UPDATE sites SET last_seen_at = GREATEST(COALESCE(sites.last_seen_at, 0), v.seen), "
            "events_total = sites.events_total + v.accepted, uploads_total = "
            "sites.uploads_total + v.uploads FROM (VALUES ";
        std::vector<SqlValue> params;
        for (const auto& [name, counts] : sites) {
          sql += params.empty() ? "(?, ?::bigint, ?::bigint, ?::bigint)"
                                : ", (?, ?::bigint, ?::bigint, ?::bigint)";
          params.insert(params.end(), {name, received_at, counts.first, counts.second});
        }
        sql += ") AS v (name, seen, accepted, uploads) WHERE sites.name = v.name";
        ASSIGN_OR_RETURN(const int64_t updated, conn->Execute(sql, params));
        if (updated != static_cast<int64_t>(sites.size())) {
          return NotFoundError("an uploading site does not exist");
        }
      }
      {
        std::string sql =
            "INSERT INTO uploads (site, received_at, idempotency_key, encoding, bytes_received, "
            "bytes, events, accepted, duplicates, rejected) VALUES ";
        std::vector<SqlValue> params;
        for (size_t g = 0; g < group.size(); ++g) {
          const UploadMeta& meta = *group[g]->meta;
          sql += g == 0 ? "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" : ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
          params.insert(
              params.end(),
              {meta.site, meta.received_at,
               meta.idempotency_key.empty() ? SqlValue{} : SqlValue{meta.idempotency_key},
               meta.encoding.empty() ? std::string("identity") : meta.encoding, meta.bytes_received,
               meta.bytes, static_cast<int64_t>(group[g]->events->size()) + group[g]->rejected,
               out[g].accepted, out[g].duplicates, group[g]->rejected});
        }
        RETURN_IF_ERROR(conn->Execute(sql, params).status());
      }
      RETURN_IF_ERROR(conn->Commit());
      return out;
    }();
    if (merged.ok()) {
      ingest_commits_.fetch_add(1, std::memory_order_relaxed);
      for (IngestResult& r : *merged) results.emplace_back(r);
      return results;
    }
    conn->Rollback();
  }
  for (const PendingPg* p : group) results.push_back(alone(*p));
  return results;
}

StatusOr<SqlTable> Store::Counts(const QueryFilter& filter, int64_t bucket_ms,
                                 const std::vector<std::string>& group_by) {
  if (bucket_ms <= 0) return InvalidArgumentError("the bucket must be positive");
  std::string columns;
  for (const std::string& g : group_by) {
    if (g == "site") {
      columns += ", site";
    } else if (g == "model") {
      columns += ", model";
    } else if (g == "version") {
      columns += ", model_version AS version";
    } else {
      return InvalidArgumentError("cannot group by '" + g + "'; use site, model or version");
    }
  }
  std::vector<SqlValue> params = {bucket_ms, bucket_ms};
  std::string sql = "SELECT (ts / ?) * ? AS bucket" + columns +
                    ", COUNT(*) AS events, SUM(CASE WHEN anomaly = 1 THEN 1 ELSE 0 END) AS "
                    "anomalies, SUM(CASE WHEN anomaly = 1 THEN 1 ELSE 0 END) * 1.0 / COUNT(*) AS "
                    "anomaly_rate, AVG(latency_ms) AS mean_latency_ms FROM events WHERE type IN "
                    "('insight', 'anomaly')" +
                    Where(filter, &params);
  std::string group = " GROUP BY 1";
  for (size_t i = 0; i < group_by.size(); ++i) group += ", " + std::to_string(i + 2);
  sql += group + " ORDER BY" + group.substr(9);
  Lease conn = Acquire();
  return conn->Query(sql, params);
}

StatusOr<SqlTable> Store::Anomalies(const QueryFilter& filter, std::optional<double> min_score,
                                    bool by_score, int64_t limit) {
  std::vector<SqlValue> params;
  std::string sql =
      "SELECT id, site, ts, model, model_version AS version, score, latency_ms, request_id, "
      "prediction, inputs, outputs FROM events WHERE anomaly = 1" +
      Where(filter, &params);
  if (min_score) {
    sql += " AND score >= ?";
    params.emplace_back(*min_score);
  }
  sql += by_score ? " ORDER BY score DESC NULLS LAST, ts DESC" : " ORDER BY ts DESC";
  sql += " LIMIT ?";
  params.emplace_back(limit);
  Lease conn = Acquire();
  return conn->Query(sql, params);
}

StatusOr<SqlTable> Store::Versions(const QueryFilter& filter) {
  std::vector<SqlValue> params;
  std::string sql =
      "SELECT site, model, version, digest, first_seen_at, last_seen_at FROM model_versions "
      "WHERE 1 = 1";
  QueryFilter f = filter;
  f.from_ms.reset();
  f.to_ms.reset();
  sql += Where(f, &params, "ts", "site", "model", "version");
  if (filter.from_ms) {
    sql += " AND last_seen_at >= ?";
    params.emplace_back(*filter.from_ms);
  }
  if (filter.to_ms) {
    sql += " AND first_seen_at < ?";
    params.emplace_back(*filter.to_ms);
  }
  sql += " ORDER BY site, model, last_seen_at DESC";
  Lease conn = Acquire();
  return conn->Query(sql, params);
}

StatusOr<Histogram> Store::Distribution(const QueryFilter& filter, const std::string& metric,
                                        int bins) {
  if (metric != "latency_ms" && metric != "score") {
    return InvalidArgumentError("unknown metric '" + metric + "'; use latency_ms or score");
  }
  if (bins < 1 || bins > 1000) return InvalidArgumentError("bins must be between 1 and 1000");
  std::vector<SqlValue> params;
  const std::string where = " FROM events WHERE " + metric +
                            " IS NOT NULL AND type IN ('insight', 'anomaly')" +
                            Where(filter, &params);
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(SqlTable summary,
                   conn->Query("SELECT COUNT(" + metric + "), MIN(" + metric + "), MAX(" + metric +
                                   "), AVG(" + metric + ")" + where,
                               params));
  Histogram h;
  h.count = AsInt(summary.rows.at(0).at(0));
  if (h.count == 0) return h;
  h.min = AsDouble(summary.rows[0][1]);
  h.max = AsDouble(summary.rows[0][2]);
  h.mean = AsDouble(summary.rows[0][3]);
  for (auto [p, out] : {std::pair{0.5, &h.p50}, std::pair{0.9, &h.p90}, std::pair{0.99, &h.p99}}) {
    std::vector<SqlValue> p_params = params;
    p_params.emplace_back(static_cast<int64_t>(std::floor(p * static_cast<double>(h.count - 1))));
    ASSIGN_OR_RETURN(SqlTable row, conn->Query("SELECT " + metric + where + " ORDER BY " + metric +
                                                   " LIMIT 1 OFFSET ?",
                                               p_params));
    if (!row.rows.empty()) *out = AsDouble(row.rows[0][0]);
  }
  const double width = h.max > h.min ? (h.max - h.min) / bins : 1.0;
  h.lower_bounds.resize(static_cast<size_t>(bins));
  h.counts.assign(static_cast<size_t>(bins), 0);
  for (int i = 0; i < bins; ++i) h.lower_bounds[static_cast<size_t>(i)] = h.min + width * i;
  // x - min >= 0, so truncation is floor in SQLite; PostgreSQL's CAST rounds, hence FLOOR.
  const std::string bin = dialect_ == Dialect::kPostgres
                              ? "CAST(FLOOR((" + metric + " - ?) / ?) AS BIGINT)"
                              : "CAST((" + metric + " - ?) / ? AS INTEGER)";
  std::vector<SqlValue> b_params = {h.min, width};
  b_params.insert(b_params.end(), params.begin(), params.end());
  ASSIGN_OR_RETURN(
      SqlTable table,
      conn->Query("SELECT " + bin + " AS b, COUNT(*)" + where + " GROUP BY 1", b_params));
  for (const auto& row : table.rows) {
    const int64_t b = std::clamp<int64_t>(AsInt(row[0]), 0, bins - 1);
    h.counts[static_cast<size_t>(b)] += AsInt(row[1]);
  }
  return h;
}

StatusOr<SqlTable> Store::Accuracy(const QueryFilter& filter, int64_t bucket_ms) {
  if (bucket_ms <= 0) return InvalidArgumentError("the bucket must be positive");
  // Two kinds of labels, as in Labelled(): those that name the event's id (with a label or an
  // explicit `correct`), and the edge's form that names the site's request id; the event's
  // `prediction` is compared with the label. Bool labels count as the classes "1" and "0".
  const std::string label =
      "CASE f.label WHEN 'true' THEN '1' WHEN 'false' THEN '0' ELSE f.label END";
  const std::string correct =
      "COALESCE(f.correct, CASE WHEN " + label + " = e.prediction THEN 1 ELSE 0 END)";
  std::vector<SqlValue> params;
  auto part = [&](const std::string& join, const std::string& condition) {
    params.emplace_back(bucket_ms);
    params.emplace_back(bucket_ms);
    return "SELECT (f.ts / ?) * ? AS bucket, COALESCE(e.model, '') AS model, "
           "COALESCE(e.model_version, '') AS version, " +
           correct + " AS correct FROM feedback f " + join + " WHERE " + condition +
           Where(filter, &params, "f.ts", "f.site", "e.model", "e.model_version");
  };
  std::string sql =
      part("LEFT JOIN events e ON e.id = f.target_id",
           "(f.correct IS NOT NULL OR (f.label IS NOT NULL AND e.prediction IS NOT NULL))");
  sql += " UNION ALL " +
         part("JOIN events e ON e.site = f.site AND e.request_id = SUBSTR(f.target_id, " +
                  std::to_string(kRequestTargetPrefix.size() + 1) + ") AND f.target_id LIKE '" +
                  std::string(kRequestTargetPrefix) + "%'",
              "e.type IN ('insight', 'anomaly') AND (f.correct IS NOT NULL OR (f.label IS NOT "
              "NULL AND e.prediction IS NOT NULL))");
  sql =
      "SELECT bucket, model, version, COUNT(*) AS labelled, SUM(correct) AS correct, "
      "SUM(correct) * 1.0 / COUNT(*) AS accuracy FROM (" +
      sql + ") labels GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
  Lease conn = Acquire();
  return conn->Query(sql, params);
}

StatusOr<SqlTable> Store::Events(const QueryFilter& filter, int64_t limit) {
  std::vector<SqlValue> params;
  std::string sql = "SELECT " + std::string(kEventColumns) + " FROM events WHERE 1 = 1" +
                    Where(filter, &params) + " ORDER BY ts DESC, id LIMIT ?";
  params.emplace_back(limit);
  Lease conn = Acquire();
  return conn->Query(sql, params);
}

StatusOr<SqlTable> Store::Uploads(const QueryFilter& filter, int64_t limit) {
  std::vector<SqlValue> params;
  QueryFilter f = filter;
  f.model.clear();
  f.version.clear();
  std::string sql =
      "SELECT id, site, received_at, idempotency_key, encoding, bytes_received, bytes, events, "
      "accepted, duplicates, rejected FROM uploads WHERE 1 = 1" +
      Where(f, &params, "received_at") + " ORDER BY id DESC LIMIT ?";
  params.emplace_back(limit);
  Lease conn = Acquire();
  return conn->Query(sql, params);
}

StatusOr<SqlTable> Store::DriftReports(const QueryFilter& filter, int64_t limit) {
  std::vector<SqlValue> params;
  std::string sql =
      "SELECT event_id, site, ts, received_at, model, model_version AS version, window_rows, "
      "drifted_features, details FROM drift_reports WHERE 1 = 1" +
      Where(filter, &params) + " ORDER BY ts DESC, event_id LIMIT ?";
  params.emplace_back(limit);
  Lease conn = Acquire();
  return conn->Query(sql, params);
}

StatusOr<SqlTable> Store::Labelled(const QueryFilter& filter, std::optional<int64_t> after_ms,
                                   std::optional<int64_t> until_ms, int64_t limit) {
  // Two joins, each served by an index: labels that name the event's id, and labels in the
  // edge's form that name the site's request id.
  auto part = [&](const std::string& join, std::vector<SqlValue>* params) {
    std::string sql =
        "SELECT e.id AS id, e.site AS site, e.ts AS ts, e.model AS model, e.model_version AS "
        "model_version, e.model_digest AS model_digest, e.prediction AS prediction, e.inputs AS "
        "inputs, f.label AS label, f.correct AS correct, fe.received_at AS labelled_at, "
        "f.event_id AS feedback_id FROM feedback f JOIN events fe ON fe.id = f.event_id JOIN "
        "events e ON " +
        join + " WHERE e.type IN ('insight', 'anomaly')" +
        Where(filter, params, "e.ts", "e.site", "e.model", "e.model_version");
    if (after_ms) {
      sql += " AND fe.received_at > ?";
      params->emplace_back(*after_ms);
    }
    if (until_ms) {
      sql += " AND fe.received_at <= ?";
      params->emplace_back(*until_ms);
    }
    return sql;
  };
  std::vector<SqlValue> params;
  std::string sql = part("e.id = f.target_id", &params);
  sql += " UNION ALL " +
         part("e.site = f.site AND e.request_id = SUBSTR(f.target_id, " +
                  std::to_string(kRequestTargetPrefix.size() + 1) + ") AND f.target_id LIKE '" +
                  std::string(kRequestTargetPrefix) + "%'",
              &params);
  sql = "SELECT * FROM (" + sql + ") labelled ORDER BY labelled_at, feedback_id LIMIT ?";
  params.emplace_back(limit);
  Lease conn = Acquire();
  return conn->Query(sql, params);
}

StatusOr<int64_t> Store::CountDriftReports(const std::string& model, int64_t since_ms) {
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(
      SqlTable table,
      conn->Query("SELECT COUNT(*) FROM drift_reports WHERE model = ? AND received_at >= ?",
                  {model, since_ms}));
  return AsInt(table.rows.at(0).at(0));
}

StatusOr<int64_t> Store::CountLabels(const std::string& model, int64_t since_ms) {
  // The feedback event names the model in the edge's form; otherwise the labelled event does.
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(SqlTable table,
                   conn->Query("SELECT COUNT(*) FROM feedback f JOIN events fe ON fe.id = "
                               "f.event_id LEFT JOIN events e ON e.id = f.target_id WHERE "
                               "fe.received_at >= ? AND (fe.model = ? OR e.model = ?)",
                               {since_ms, model, model}));
  return AsInt(table.rows.at(0).at(0));
}

namespace {

SqlValue OptInt(const std::optional<int64_t>& v) { return v ? SqlValue{*v} : SqlValue{}; }
SqlValue OptDouble(const std::optional<double>& v) { return v ? SqlValue{*v} : SqlValue{}; }
SqlValue OptText(const std::string& v) { return v.empty() ? SqlValue{} : SqlValue{v}; }

std::optional<double> AsOptDouble(const SqlValue& value) {
  if (std::holds_alternative<std::monostate>(value)) return std::nullopt;
  return AsDouble(value);
}

constexpr const char* kJobColumns =
    "id, model, trigger, status, created_at, started_at, finished_at, exit_step, error, "
    "gate_passed, gate_metric, challenger, champion, version, digest, details";

JobRecord JobFromRow(const std::vector<SqlValue>& row) {
  JobRecord job;
  job.id = AsInt(row[0]);
  job.model = AsText(row[1]);
  job.trigger = AsText(row[2]);
  job.status = AsText(row[3]);
  job.created_at = AsInt(row[4]);
  job.started_at = AsOptInt(row[5]);
  job.finished_at = AsOptInt(row[6]);
  job.exit_step = AsText(row[7]);
  job.error = AsText(row[8]);
  job.gate_passed = AsOptInt(row[9]);
  job.gate_metric = AsText(row[10]);
  job.challenger = AsOptDouble(row[11]);
  job.champion = AsOptDouble(row[12]);
  job.version = AsText(row[13]);
  job.digest = AsText(row[14]);
  job.details = AsText(row[15]);
  if (row.size() > 16) job.log = AsText(row[16]);
  return job;
}

}  // namespace

StatusOr<int64_t> Store::CreateJob(const JobRecord& job) {
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(SqlTable table,
                   conn->Query("INSERT INTO jobs (model, trigger, status, created_at, details, "
                               "log) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                               {job.model, job.trigger, job.status, job.created_at,
                                job.details.empty() ? std::string("{}") : job.details, job.log}));
  if (table.rows.empty()) return InternalError("inserting a job returned no id");
  return AsInt(table.rows[0][0]);
}

Status Store::UpdateJob(const JobRecord& job) {
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(
      const int64_t updated,
      conn->Execute("UPDATE jobs SET status = ?, started_at = ?, finished_at = ?, exit_step = ?, "
                    "error = ?, gate_passed = ?, gate_metric = ?, challenger = ?, champion = ?, "
                    "version = ?, digest = ?, details = ?, log = ? WHERE id = ?",
                    {job.status, OptInt(job.started_at), OptInt(job.finished_at),
                     OptText(job.exit_step), OptText(job.error), OptInt(job.gate_passed),
                     OptText(job.gate_metric), OptDouble(job.challenger), OptDouble(job.champion),
                     OptText(job.version), OptText(job.digest),
                     job.details.empty() ? std::string("{}") : job.details, job.log, job.id}));
  if (updated == 0) return NotFoundError("no job " + std::to_string(job.id));
  return Status::Ok();
}

StatusOr<std::optional<JobRecord>> Store::GetJob(int64_t id) {
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(
      SqlTable table,
      conn->Query("SELECT " + std::string(kJobColumns) + ", log FROM jobs WHERE id = ?", {id}));
  if (table.rows.empty()) return std::optional<JobRecord>();
  return std::optional<JobRecord>(JobFromRow(table.rows[0]));
}

StatusOr<std::vector<JobRecord>> Store::ListJobs(const std::string& model, int64_t limit) {
  std::vector<SqlValue> params;
  std::string sql = "SELECT " + std::string(kJobColumns) + " FROM jobs";
  if (!model.empty()) {
    sql += " WHERE model = ?";
    params.emplace_back(model);
  }
  sql += " ORDER BY id DESC LIMIT ?";
  params.emplace_back(limit);
  Lease conn = Acquire();
  ASSIGN_OR_RETURN(SqlTable table, conn->Query(sql, params));
  std::vector<JobRecord> jobs;
  for (const auto& row : table.rows) jobs.push_back(JobFromRow(row));
  return jobs;
}

StatusOr<int64_t> Store::InterruptUnfinishedJobs(int64_t now_ms) {
  Lease conn = Acquire();
  return conn->Execute(
      "UPDATE jobs SET status = 'interrupted', finished_at = ?, error = 'the hub stopped while "
      "the job ran' WHERE status IN ('queued', 'running')",
      {now_ms});
}

}  // namespace edgeloop::hub
