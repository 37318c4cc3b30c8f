// Function: one stage of the worker's chain. The worker leases a batch of queue events, turns
// them into Records, and runs them through its functions in order (exec → compliance → upload,
// say). Each stage sees the records that are still in play and decides, per record, what
// happens next; the worker then acks or nacks every event once.
//
// Built-in functions: ComplianceFunction (compliance.h), UploadFunction (upload.h),
// ExecFunction (exec.h). docs/worker.md describes them and their configuration.
#ifndef EDGELOOP_FUNCTIONS_FUNCTION_H_
#define EDGELOOP_FUNCTIONS_FUNCTION_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace edgeloop::functions {

// One queue event as functions see it. `body` is the parsed payload (a JSON object), which
// stages may rewrite.
struct Record {
  std::string id;
  std::string type = "insight";
  int priority = 0;
  nlohmann::json body;
  int attempt = 1;
  int64_t age_ms = 0;
  // Set by aggregation: this record's content travels inside the record at this index (its
  // aggregate); it is not sent itself and ends as that record ends. -1: not absorbed.
  int absorbed_into = -1;
};

// What happens to a record after a stage.
enum class Disposition {
  kContinue,  // on to the next stage; past the last stage the event is acked
  kDone,      // finished here (a drop rule, an event a function consumed): acked
  kRetry,     // a transient failure: handed back to the queue, visible again after a backoff
  kFail,      // a permanent failure: handed back with the reason; the DLQ after max attempts
};

struct Result {
  Disposition disposition = Disposition::kContinue;
  std::string reason;
  // kRetry only: when to try again; empty: the queue's backoff for the attempt.
  std::optional<std::chrono::milliseconds> retry_after;
};

// What the compliance stage of a batch tells the stages after it (the upload's audit record).
struct ComplianceStamp {
  std::string destination;
  std::string policy_path;
  std::string policy_sha256;
  class AuditLog* audit = nullptr;  // not owned
  int64_t dropped = 0;              // records finished by drop rules or aggregation
};

// Per-batch context. Not thread-safe; one batch runs on one thread.
struct Context {
  Clock* clock = Clock::Real();
  // Set when the worker is draining and its deadline passed: long operations (a subprocess, an
  // HTTP request, a bandwidth wait) should stop and return kCancelled.
  const std::atomic<bool>* cancelled = nullptr;
  // Filled in by the compliance stage; null when the batch passed no compliance stage.
  std::optional<ComplianceStamp> compliance;

  bool IsCancelled() const { return cancelled != nullptr && cancelled->load(); }
};

// A stage. Implementations document their own thread safety; the worker calls Run from several
// threads at once (one batch per thread), so built-in functions are thread-safe.
class Function {
 public:
  virtual ~Function() = default;

  // "compliance", "upload:hub", "exec:enrich" (used in metrics and logs).
  virtual const std::string& name() const = 0;

  // Processes the records whose result is kContinue (results.size() == records.size()) and
  // updates their results; records already decided must be left alone. A non-OK status applies
  // to every record still in play: kUnavailable means the destination (or the policy) is not
  // usable now, and the worker stops leasing until Probe succeeds; other codes retry the
  // records with the queue's backoff.
  virtual Status Run(std::vector<Record>& records, std::vector<Result>& results,
                     Context& context) = 0;

  // OK when the function can do its work now (a destination reachable, a policy loaded). The
  // worker calls it, without leasing anything, while it holds back after kUnavailable, so an
  // outage costs no delivery attempts. Default: OK.
  virtual Status Probe() { return Status::Ok(); }
};

}  // namespace edgeloop::functions

#endif  // EDGELOOP_FUNCTIONS_FUNCTION_H_
