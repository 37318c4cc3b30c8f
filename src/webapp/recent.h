// RecentScores: a bounded in-memory record of recent scores per series and of recent anomalies,
// for the web app's "Recent anomalies" page. Nothing is persisted: it shows what this server saw
// since it started. Bounds: `points_per_series` per series, `max_series` series (the least
// recently updated goes), `max_anomalies` anomalies. Thread-safe.
#ifndef EDGELOOP_WEBAPP_RECENT_H_
#define EDGELOOP_WEBAPP_RECENT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace edgeloop::webapp {

struct ScorePoint {
  int64_t time_ms = 0;  // wall clock, epoch milliseconds
  std::string model;
  std::string series;  // "" for tabular models
  double score = 0;
  bool anomaly = false;
};

class RecentScores {
 public:
  RecentScores(size_t points_per_series, size_t max_series, size_t max_anomalies);

  void Add(const ScorePoint& point);
  // {"series":[{"model","series","points":[[t,score,anomaly],...]}],"anomalies":[{...}] (newest
  // first)}; `model` filters when not empty.
  std::string Json(const std::string& model) const;

 private:
  struct Series {
    std::deque<ScorePoint> points;
    uint64_t touched = 0;
  };
  const size_t points_per_series_, max_series_, max_anomalies_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Series> series_;  // GUARDED_BY(mu_)
  std::deque<ScorePoint> anomalies_;                              // GUARDED_BY(mu_)
  uint64_t tick_ = 0;                                             // GUARDED_BY(mu_)
};

}  // namespace edgeloop::webapp

#endif  // EDGELOOP_WEBAPP_RECENT_H_
