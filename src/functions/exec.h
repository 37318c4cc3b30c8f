// Exec: a custom function in any language, run as a subprocess per batch that speaks JSON Lines.
//
// The worker starts `command` (argv, no shell), writes one line per record to its stdin
//   {"id": "...", "type": "insight", "priority": 0, "attempt": 1, "event": {...}}
// closes stdin, and reads one line per record from its stdout, in any order:
//   {"id": "...", "event": {...}}   replaces the event, which goes on to the next stage
//   {"id": "...", "drop": true}     finishes the event here (acked, sent nowhere)
//   {"id": "...", "error": "..."}   fails it (retried; the DLQ after max attempts)
// A record without an answer, a process that exits non-zero, or output that is not JSON Lines
// fails the records left unanswered. Past the timeout the process group is killed (SIGKILL) and
// every unanswered record is retried. stderr is passed through to the worker's stderr.
#ifndef EDGELOOP_FUNCTIONS_EXEC_H_
#define EDGELOOP_FUNCTIONS_EXEC_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "functions/function.h"

namespace edgeloop::functions {

struct ExecOptions {
  std::string name;               // "exec:<name>" in metrics and logs
  std::vector<std::string> argv;  // argv[0] is looked up on PATH when it has no slash
  std::chrono::milliseconds timeout{30'000};
  size_t max_output_bytes = 64 << 20;
  metrics::Registry* metrics = nullptr;
};

// Thread-safe: every Run starts its own process.
class ExecFunction : public Function {
 public:
  static StatusOr<std::unique_ptr<ExecFunction>> Create(ExecOptions options);

  const std::string& name() const override { return name_; }
  Status Run(std::vector<Record>& records, std::vector<Result>& results, Context& context) override;

 private:
  explicit ExecFunction(ExecOptions options);
  ExecOptions options_;
  const std::string name_;
  std::shared_ptr<metrics::Counter> runs_ok_, runs_failed_, runs_timeout_;
};

}  // namespace edgeloop::functions

#endif  // EDGELOOP_FUNCTIONS_EXEC_H_
