#include "webapp/recent.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace edgeloop::webapp {

RecentScores::RecentScores(size_t points_per_series, size_t max_series, size_t max_anomalies)
    : points_per_series_(std::max<size_t>(1, points_per_series)),
      max_series_(std::max<size_t>(1, max_series)),
      max_anomalies_(max_anomalies) {}

void RecentScores::Add(const ScorePoint& point) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto key = std::make_pair(point.model, point.series);
  auto it = series_.find(key);
  if (it == series_.end()) {
    if (series_.size() >= max_series_) {
      auto oldest = std::min_element(series_.begin(), series_.end(), [](auto& a, auto& b) {
        return a.second.touched < b.second.touched;
      });
      series_.erase(oldest);
    }
    it = series_.emplace(key, Series{}).first;
  }
  it->second.touched = ++tick_;
  it->second.points.push_back(point);
  if (it->second.points.size() > points_per_series_) it->second.points.pop_front();
  if (point.anomaly && max_anomalies_ > 0) {
    anomalies_.push_back(point);
    if (anomalies_.size() > max_anomalies_) anomalies_.pop_front();
  }
}

std::string RecentScores::Json(const std::string& model) const {
  using JsonValue = nlohmann::json;
  JsonValue series = JsonValue::array();
  JsonValue anomalies = JsonValue::array();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, entry] : series_) {
      if (!model.empty() && key.first != model) continue;
      JsonValue points = JsonValue::array();
      for (const ScorePoint& p : entry.points) points.push_back({p.time_ms, p.score, p.anomaly});
      series.push_back({{"model", key.first}, {"series", key.second}, {"points", points}});
    }
    for (auto it = anomalies_.rbegin(); it != anomalies_.rend(); ++it) {
      if (!model.empty() && it->model != model) continue;
      anomalies.push_back({{"time_ms", it->time_ms},
                           {"model", it->model},
                           {"series", it->series},
                           {"score", it->score}});
    }
  }
  return JsonValue{{"series", series}, {"anomalies", anomalies}}.dump(
      -1, ' ', false, JsonValue::error_handler_t::replace);
}

}  // namespace edgeloop::webapp
