// Store: the hub's global database of sites, tokens, model versions seen, events, feedback
// labels and the upload audit, in SQLite (embedded default) or PostgreSQL (scale), chosen by URL:
//
//   sqlite:///var/lib/edgeloop/hub.db   (or sqlite:relative/path.db)
//   postgresql://user@host:5432/db      (any libpq URI; postgres:// too)
//
// The schema is versioned (table schema_migrations) and migrated forward by Migrate(); it is the
// same in both databases (times are Unix milliseconds, BIGINT) and documented in docs/hub.md so
// that BI tools can read it directly. Event ingest is idempotent by event id.
//
// Thread-safe: the store keeps a pool of connections and each call takes one for its duration.
#ifndef EDGELOOP_HUB_STORE_H_
#define EDGELOOP_HUB_STORE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "hub/event.h"
#include "hub/sql.h"

namespace edgeloop::hub {

// The schema version this build writes and reads.
inline constexpr int kSchemaVersion = 3;

enum class Role { kSite, kRead, kAdmin };
std::string_view RoleName(Role role);
StatusOr<Role> ParseRole(std::string_view text);

struct SiteInfo {
  std::string name;
  int64_t created_at = 0;
  std::optional<int64_t> last_seen_at;  // last accepted upload
  int64_t events_total = 0;
  int64_t uploads_total = 0;
};

struct TokenRecord {
  std::string name;
  Role role = Role::kRead;
  std::string site;  // role kSite only
  int64_t created_at = 0;
  std::optional<int64_t> expires_at;
  std::optional<int64_t> revoked_at;
};

// What the audit records about one upload besides its counts.
struct UploadMeta {
  std::string site;
  int64_t received_at = 0;
  std::string idempotency_key;
  std::string encoding;
  int64_t bytes_received = 0;  // as sent (compressed)
  int64_t bytes = 0;           // decoded
};

struct IngestResult {
  int64_t accepted = 0;
  int64_t duplicates = 0;
};

// Filters shared by the queries. Empty strings and unset times mean "any".
struct QueryFilter {
  std::optional<int64_t> from_ms;  // inclusive, event time
  std::optional<int64_t> to_ms;    // exclusive
  std::string site;
  std::string model;
  std::string version;
};

// One retraining job (hub/scheduler.h) as the store keeps it. Times are Unix ms.
struct JobRecord {
  int64_t id = 0;
  std::string model;
  std::string trigger;  // cron | drift | feedback | api
  std::string status;   // queued | running | succeeded | rejected | failed | interrupted
  int64_t created_at = 0;
  std::optional<int64_t> started_at;
  std::optional<int64_t> finished_at;
  std::string exit_step;  // the step that ended the job: pipeline | train | "" (none ran)
  std::string error;
  std::optional<int64_t> gate_passed;  // 1/0, unknown until train ran
  std::string gate_metric;
  std::optional<double> challenger;  // the gate metric of the challenger and the champion
  std::optional<double> champion;
  std::string version;  // the trained model's version
  std::string digest;   // the pushed package's digest
  std::string details;  // JSON: {"steps": [...], "gate": {...}, "trained": {...}}
  std::string log;      // bounded tail of the steps' output
};

struct StoreOptions {
  int pool_size = 4;
  // Apply pending migrations when opening; otherwise an old schema is refused with a message
  // that says to run `edgeloop hub migrate`.
  bool migrate = true;
};

struct Histogram {
  double min = 0;
  double max = 0;
  double mean = 0;
  int64_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0;
  std::vector<double> lower_bounds;  // one per bin
  std::vector<int64_t> counts;
};

class Store {
 public:
  // Opens the database and its connection pool. Errors: a malformed URL kInvalidArgument, an
  // unreachable database kUnavailable, a schema newer than this build kFailedPrecondition.
  static StatusOr<std::unique_ptr<Store>> Open(const std::string& url,
                                               const StoreOptions& options = {});
  ~Store();

  Dialect dialect() const { return dialect_; }
  // The applied schema version (0 for an empty database).
  StatusOr<int> SchemaVersion();
  // Applies the migrations above the current version, each in its own transaction; returns the
  // versions applied. Safe to run from several processes at once.
  StatusOr<std::vector<int>> Migrate();

  // Sites and tokens. AddSite: kAlreadyExists when the name is taken; names are 1-64 characters
  // of [A-Za-z0-9._-].
  Status AddSite(const std::string& name, int64_t now_ms);
  StatusOr<std::vector<SiteInfo>> ListSites();
  StatusOr<bool> SiteExists(const std::string& name);
  // `hash`: HashToken(token); the token itself is never stored.
  Status AddToken(const std::string& hash, const TokenRecord& record);
  StatusOr<std::optional<TokenRecord>> FindToken(const std::string& hash);
  StatusOr<std::vector<TokenRecord>> ListTokens();
  // Revokes every token with this name; returns how many.
  StatusOr<int64_t> RevokeTokens(const std::string& name, int64_t now_ms);

  // Stores the events of one upload in one transaction: events new by id are inserted (the rest
  // count as duplicates), feedback labels, the model versions seen, the site's last-seen time and
  // an audit row (with `rejected`, the count of events the parser refused). Every event must
  // belong to meta.site.
  StatusOr<IngestResult> Ingest(const UploadMeta& meta, const std::vector<Event>& events,
                                int64_t rejected);
  // How many transactions Ingest has committed on SQLite, where concurrent uploads share one
  // (group commit); for tests and metrics.
  int64_t ingest_commits() const { return ingest_commits_.load(std::memory_order_relaxed); }

  // Queries (docs/hub.md, "Query API").
  // Events, anomalies and the anomaly rate per time bucket and per `group_by` columns
  // (subset of site, model, version).
  StatusOr<SqlTable> Counts(const QueryFilter& filter, int64_t bucket_ms,
                            const std::vector<std::string>& group_by);
  // Anomalous events, by score (highest first) or time (newest first).
  StatusOr<SqlTable> Anomalies(const QueryFilter& filter, std::optional<double> min_score,
                               bool by_score, int64_t limit);
  // Model versions seen per site.
  StatusOr<SqlTable> Versions(const QueryFilter& filter);
  // Distribution of "latency_ms" or "score".
  StatusOr<Histogram> Distribution(const QueryFilter& filter, const std::string& metric, int bins);
  // Feedback-labelled accuracy per time bucket (of the feedback), model and version.
  StatusOr<SqlTable> Accuracy(const QueryFilter& filter, int64_t bucket_ms);
  // Raw events (newest first), for export.
  StatusOr<SqlTable> Events(const QueryFilter& filter, int64_t limit);
  // The upload audit (newest first).
  StatusOr<SqlTable> Uploads(const QueryFilter& filter, int64_t limit);
  // Drift reports (newest first): event_id, site, ts, received_at, model, version,
  // window_rows, drifted_features, details (JSON text).
  StatusOr<SqlTable> DriftReports(const QueryFilter& filter, int64_t limit);
  // Events of `filter.model` joined with their feedback labels, oldest label first, labels
  // received after `after_ms` (the hub's receive time of the feedback, `labelled_at`):
  // id, site, ts, model, model_version, model_digest, prediction, inputs (JSON text), label,
  // correct, labelled_at. A label targets an event by id, or by site and request id (the
  // edge's form).
  // `until_ms` (inclusive) bounds the receive time from above.
  StatusOr<SqlTable> Labelled(const QueryFilter& filter, std::optional<int64_t> after_ms,
                              std::optional<int64_t> until_ms, int64_t limit);
  // Trigger counts for the scheduler: drift reports of `model` received at or after
  // `since_ms`, and feedback labels on its events received at or after `since_ms`.
  StatusOr<int64_t> CountDriftReports(const std::string& model, int64_t since_ms);
  StatusOr<int64_t> CountLabels(const std::string& model, int64_t since_ms);

  // Retraining jobs (jobs_store.cc). CreateJob returns the new id.
  StatusOr<int64_t> CreateJob(const JobRecord& job);
  // Writes every field but id, model, trigger and created_at.
  Status UpdateJob(const JobRecord& job);
  StatusOr<std::optional<JobRecord>> GetJob(int64_t id);
  // Newest first; `model` empty means every model. Without logs.
  StatusOr<std::vector<JobRecord>> ListJobs(const std::string& model, int64_t limit);
  // Marks every queued or running job interrupted (at start-up: their process is gone).
  StatusOr<int64_t> InterruptUnfinishedJobs(int64_t now_ms);

 private:
  class Lease;
  Store(Dialect dialect, std::vector<std::unique_ptr<SqlConn>> pool);
  Lease Acquire();
  void Release(std::unique_ptr<SqlConn> conn);

  const Dialect dialect_;
  std::mutex write_mu_;  // PostgreSQL ingest does not take it; kept for other writers
  // SQLite group commit (Ingest): uploads that arrive while a transaction is being written wait
  // here and go together into the next one, each in its own savepoint, with one COMMIT (one
  // fsync) for all of them. Each caller gets its answer only after that COMMIT.
  struct PendingIngest;
  using IngestWork = std::function<StatusOr<IngestResult>(SqlConn*)>;
  StatusOr<IngestResult> GroupCommit(const IngestWork& work);
  void CommitGroup(const std::vector<PendingIngest*>& group);
  std::mutex group_mu_;
  std::condition_variable group_cv_;
  std::vector<PendingIngest*> group_queue_;  // GUARDED_BY(group_mu_)
  bool group_leader_ = false;                // GUARDED_BY(group_mu_)
  std::atomic<int64_t> ingest_commits_{0};
  // PostgreSQL group ingest: up to pg_max_leaders_ groups (one per core, at most one per pooled
  // connection) are written at once; uploads that arrive meanwhile queue for the next group.
  struct PendingPg {
    const UploadMeta* meta;
    const std::vector<Event>* events;
    int64_t rejected;
    std::optional<StatusOr<IngestResult>> result;  // GUARDED_BY(group_mu_)
  };
  StatusOr<IngestResult> IngestOne(SqlConn* conn, const UploadMeta& meta,
                                   const std::vector<Event>& events, int64_t rejected);
  std::vector<StatusOr<IngestResult>> CommitPgGroup(const std::vector<PendingPg*>& group);
  std::vector<PendingPg*> pg_queue_;  // GUARDED_BY(group_mu_)
  size_t pg_leaders_ = 0;             // GUARDED_BY(group_mu_)
  const size_t pg_max_leaders_;
  std::mutex mu_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<SqlConn>> idle_;  // GUARDED_BY(mu_)
};

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_STORE_H_
