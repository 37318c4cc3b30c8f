// Compliance: what may leave the site for one destination, and the record of what did.
//
// A policy is a YAML file per destination (docs/worker.md has the reference; examples in
// examples/policies/). It is fail-closed:
//   * only fields on the allow-list leave (dotted paths into the event, `*` matches one key;
//     naming an object allows everything under it);
//   * drop rules finish events that must not leave at all;
//   * coarsening rounds numbers to a step and truncates timestamps;
//   * pseudonymised fields are replaced by a keyed HMAC-SHA256 of their value, under a per-site
//     secret and a key epoch derived from the event's timestamp: the same value gives the same
//     pseudonym within an epoch and an unlinkable one in the next;
//   * optional aggregation replaces events by per-group counts and means, and suppresses
//     groups smaller than the minimum group size k.
// A policy that does not load (missing file, bad YAML, unknown key, missing or short key)
// blocks egress: ComplianceFunction reports kUnavailable and the worker leases nothing for
// that chain until the file is fixed. Every batch that leaves is written to the audit log.
#ifndef EDGELOOP_FUNCTIONS_COMPLIANCE_H_
#define EDGELOOP_FUNCTIONS_COMPLIANCE_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "functions/function.h"

namespace edgeloop::functions {

struct CoarsenRule {
  std::vector<std::string> path;
  double round = 0;      // > 0: numbers (and arrays of numbers) to the nearest multiple
  std::string truncate;  // "second", "minute", "hour" or "day": RFC 3339 strings and Unix ms
};

struct DropRule {
  std::vector<std::string> path;
  std::optional<nlohmann::json> equals;
  std::optional<nlohmann::json> not_equals;
  std::vector<nlohmann::json> in;
  std::optional<bool> exists;
};

struct AggregateRule {
  std::vector<std::vector<std::string>> group_by;
  int64_t min_group_size = 1;  // k
  std::vector<std::vector<std::string>> mean;
};

struct Policy {
  std::string path;    // the file it came from
  std::string sha256;  // of the file's bytes
  std::string destination;
  std::vector<std::vector<std::string>> allow;
  std::vector<DropRule> drop;
  std::vector<CoarsenRule> coarsen;
  std::vector<std::vector<std::string>> pseudonymise;
  std::string key;  // the site secret (raw bytes); empty when nothing is pseudonymised
  int64_t epoch_seconds = 30 * 86400;
  std::optional<AggregateRule> aggregate;
};

// Parses a policy. Relative key files are resolved against `base_dir`. kInvalidArgument names
// the problem (unknown keys are errors, so a typo never silently lets data out).
StatusOr<Policy> ParsePolicy(std::string_view yaml_text, const std::filesystem::path& base_dir);
// Reads and parses a policy file; kNotFound when it is missing.
StatusOr<Policy> LoadPolicy(const std::filesystem::path& path);

// The pseudonym of `value` (its JSON text for non-strings) in field `field` (a dotted path) for
// key epoch `epoch`: "ps:<epoch>:<32 hex>". Pure; thread-safe.
std::string Pseudonym(std::string_view site_key, int64_t epoch, std::string_view field,
                      const nlohmann::json& value);
// The epoch number of an event: floor(timestamp / epoch_seconds), from its RFC 3339 or Unix-ms
// `timestamp` field, else from `now`.
int64_t KeyEpoch(const Policy& policy, const nlohmann::json& event, Clock::WallTime now);

// Applies drop rules, coarsening, pseudonymisation and the allow-list to one event. nullopt:
// a drop rule matched. Pure; thread-safe.
std::optional<nlohmann::json> ApplyPolicy(const Policy& policy, const nlohmann::json& event,
                                          Clock::WallTime now);

// Dotted paths of every leaf in `value` (arrays are leaves), sorted, without repeats, added to
// `out`.
void CollectLeafPaths(const nlohmann::json& value, std::vector<std::string>* out);

// RFC 3339 timestamp to Unix milliseconds; nullopt when it does not parse.
std::optional<int64_t> ParseRfc3339Ms(std::string_view text);

// An append-only JSON Lines file of audit records, each fsynced before Append returns.
// Thread-safe.
class AuditLog {
 public:
  static StatusOr<std::unique_ptr<AuditLog>> Open(const std::filesystem::path& path);
  ~AuditLog();
  Status Append(const nlohmann::json& record);
  const std::filesystem::path& path() const { return path_; }

 private:
  AuditLog(std::filesystem::path path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::filesystem::path path_;
  std::mutex mu_;
  int fd_;  // GUARDED_BY(mu_)
};

struct ComplianceOptions {
  std::filesystem::path policy_file;
  std::filesystem::path audit_log;  // required
  Clock* clock = Clock::Real();
  metrics::Registry* metrics = nullptr;  // may be null
};

// The compliance stage. Reloads the policy when the file changes (checked at most once per
// batch or probe); while it does not load, Run and Probe return kUnavailable. Thread-safe.
class ComplianceFunction : public Function {
 public:
  // Fails only when the audit log cannot be opened; a policy that does not load is not an
  // error here (it blocks egress; see Probe).
  static StatusOr<std::unique_ptr<ComplianceFunction>> Create(const ComplianceOptions& options);

  const std::string& name() const override { return name_; }
  Status Run(std::vector<Record>& records, std::vector<Result>& results, Context& context) override;
  Status Probe() override;

  // The policy in force, or the reason there is none.
  StatusOr<std::shared_ptr<const Policy>> Current();

 private:
  ComplianceFunction(ComplianceOptions options, std::unique_ptr<AuditLog> audit);
  void Aggregate(const Policy& policy, std::vector<Record>& records, std::vector<Result>& results,
                 int64_t* dropped);

  const ComplianceOptions options_;
  const std::string name_ = "compliance";
  std::unique_ptr<AuditLog> audit_;
  std::shared_ptr<metrics::Counter> dropped_counter_;
  std::shared_ptr<metrics::Counter> suppressed_counter_;

  std::mutex mu_;
  std::shared_ptr<const Policy> policy_;          // GUARDED_BY(mu_)
  Status load_status_;                            // GUARDED_BY(mu_)
  std::filesystem::file_time_type loaded_mtime_;  // GUARDED_BY(mu_)
  uintmax_t loaded_size_ = 0;                     // GUARDED_BY(mu_)
  bool tried_ = false;                            // GUARDED_BY(mu_)
  std::shared_ptr<metrics::Gauge> loaded_;
};

}  // namespace edgeloop::functions

#endif  // EDGELOOP_FUNCTIONS_COMPLIANCE_H_
