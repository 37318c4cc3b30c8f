// The steps of a retraining job as child processes: StepLauncher is the seam between the
// scheduler (hub/scheduler.h) and processes, so that the scheduler's tests run fake steps
// and the hub runs `edgeloop pipeline run` and `edgeloop train` through ProcessLauncher.
#ifndef EDGELOOP_HUB_JOBS_H_
#define EDGELOOP_HUB_JOBS_H_

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace edgeloop::hub {

struct StepRequest {
  std::string name;                        // "pipeline", "train"
  std::vector<std::string> args;           // after the program: {"train", "spec.yaml", ...}
  std::map<std::string, std::string> env;  // added to (or replacing in) the hub's environment
  std::filesystem::path log_file;          // stderr is appended here
  std::filesystem::path stdout_file;       // stdout is written here
  std::chrono::milliseconds timeout{30 * 60'000};
};

struct StepResult {
  int exit_code = 0;       // the child's exit status; 128+N when killed by signal N
  bool timed_out = false;  // killed after `timeout`
  bool cancelled = false;  // killed by Cancel()
  double seconds = 0;
};

class StepLauncher {
 public:
  virtual ~StepLauncher() = default;
  // Runs one step to its end. An error means the step could not start (no such program, an
  // unwritable log file); a step that ran and failed is an OK result with its exit code.
  virtual StatusOr<StepResult> Run(const StepRequest& request) = 0;
  // Ends every running step (they finish with cancelled = true) and refuses new ones.
  virtual void Cancel() = 0;
};

// Runs steps as child processes of `program` (the hub's own binary, /proc/self/exe). Each child
// is its own process group, dies with the hub (PR_SET_PDEATHSIG: a hub killed with -9 leaves no
// step that could still push or promote), and is killed (the whole group) at its timeout.
// Thread-safe: several jobs may run steps at once.
class ProcessLauncher : public StepLauncher {
 public:
  explicit ProcessLauncher(std::string program = "/proc/self/exe");
  StatusOr<StepResult> Run(const StepRequest& request) override;
  void Cancel() override;

 private:
  const std::string program_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::set<int> running_;  // GUARDED_BY(mu_): process ids
};

// The last `max_bytes` of a file (from a line start when it had to cut), or "".
std::string ReadTail(const std::filesystem::path& file, size_t max_bytes);

}  // namespace edgeloop::hub

#endif  // EDGELOOP_HUB_JOBS_H_
