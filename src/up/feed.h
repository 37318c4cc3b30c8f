// The live feed of `edgeloop up`: replays the demo's live readings against the edge server as
// a factory's clients would (one inference request per reading, routed per machine), then sends
// each reading's true label as feedback, and keeps score of how well each served model version
// does before and after the drift.
#ifndef EDGELOOP_UP_FEED_H_
#define EDGELOOP_UP_FEED_H_

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "up/demo_data.h"

namespace edgeloop::up {

// Accuracy (at `threshold`) and ROC AUC per model version and drift phase, plus a rolling
// accuracy over the latest rows. Thread-safe.
class FeedStats {
 public:
  explicit FeedStats(size_t rolling_window = 500, double threshold = 0.5);

  void Add(const std::string& version, int phase, int label, double probability);
  // ROC AUC of (score, label) pairs, ties counted half; NaN when one class is missing.
  static double Auc(const std::vector<std::pair<double, int>>& scored);

  double RollingAccuracy() const;
  // {"rolling_accuracy": .., "versions": {"1": {"0": {"rows", "accuracy", "auc"}, "1": ...}}}
  std::string ToJson() const;

 private:
  struct Cell {
    int64_t rows = 0;
    int64_t correct = 0;
    std::vector<std::pair<double, int>> scored;  // capped; enough for the AUC
  };
  const size_t window_;
  const double threshold_;
  mutable std::mutex mu_;
  std::map<std::string, std::map<int, Cell>> cells_;  // GUARDED_BY(mu_)
  std::vector<char> recent_;                          // GUARDED_BY(mu_): ring of correct flags
  size_t recent_next_ = 0;                            // GUARDED_BY(mu_)
  int64_t recent_correct_ = 0;                        // GUARDED_BY(mu_)
};

struct FeedOptions {
  std::string serve_url;  // http://127.0.0.1:PORT
  std::string model = "machine-failure";
  std::string input_name = "features";
  double rows_per_second = 20;
  size_t start = 0;                  // index of the first row to send (resume)
  std::filesystem::path state_file;  // progress and stats, rewritten every ~2 s
};

// Runs on its own thread: Run() returns when every row was sent or `stop` became true. Requests
// that fail because the server is away are retried (the row is not skipped); other failures are
// counted. Thread-safe: Position() and counters may be read from any thread.
class Feed {
 public:
  Feed(FeedOptions options, std::vector<DemoRow> rows);
  Status Run(const std::atomic<bool>& stop);

  size_t Position() const { return position_.load(); }
  size_t Total() const { return rows_.size(); }
  int64_t Requests() const { return requests_.load(); }
  int64_t Feedback() const { return feedback_.load(); }
  int64_t Errors() const { return errors_.load(); }
  std::string CurrentVersion() const;
  const FeedStats& stats() const { return stats_; }
  // The state file's content now.
  std::string StateJson() const;

 private:
  void WriteState() const;

  const FeedOptions options_;
  const std::vector<DemoRow> rows_;
  FeedStats stats_;
  std::atomic<size_t> position_;
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> feedback_{0};
  std::atomic<int64_t> errors_{0};
  mutable std::mutex mu_;
  std::string current_version_;  // GUARDED_BY(mu_)
  std::string last_error_;       // GUARDED_BY(mu_)
};

// The position saved in a feed state file (0 when it is missing or unreadable).
size_t SavedFeedPosition(const std::filesystem::path& state_file);

}  // namespace edgeloop::up

#endif  // EDGELOOP_UP_FEED_H_
