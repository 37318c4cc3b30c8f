#include "anomaly/nab.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

namespace edgeloop::anomaly::nab {
namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool ParseDigits(std::string_view text, size_t pos, size_t count, int64_t* out) {
  if (pos + count > text.size()) return false;
  int64_t value = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + (text[i] - '0');
  }
  *out = value;
  return true;
}

// s(x) = 2 sigmoid(-5x) - 1, and -1 beyond 3 (far past a window).
double ScaledSigmoid(double position) {
  if (position > 3.0) return -1.0;
  return 2.0 / (1.0 + std::exp(5.0 * position)) - 1.0;
}

std::vector<std::string> SplitCsvLine(std::string_view line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t comma = line.find(',', start);
    fields.emplace_back(
        line.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return fields;
}

StatusOr<double> ParseDouble(std::string_view text) {
  while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return InvalidArgumentError("not a number: '" + std::string(text) + "'");
  }
  return value;
}

}  // namespace

StatusOr<int64_t> ParseTimestampMs(std::string_view text) {
  auto bad = [&] { return InvalidArgumentError("bad timestamp '" + std::string(text) + "'"); };
  int64_t y, mo, d, h, mi, s;
  if (text.size() < 19 || text[4] != '-' || text[7] != '-' ||
      (text[10] != ' ' && text[10] != 'T') || text[13] != ':' || text[16] != ':') {
    return bad();
  }
  if (!ParseDigits(text, 0, 4, &y) || !ParseDigits(text, 5, 2, &mo) ||
      !ParseDigits(text, 8, 2, &d) || !ParseDigits(text, 11, 2, &h) ||
      !ParseDigits(text, 14, 2, &mi) || !ParseDigits(text, 17, 2, &s)) {
    return bad();
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return bad();
  size_t pos = 19;
  int64_t millis = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 3) millis = millis * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return bad();
    for (int i = digits; i < 3; ++i) millis *= 10;
  }
  if (pos < text.size() && text[pos] == 'Z') ++pos;
  while (pos < text.size() && text[pos] == '\r') ++pos;
  if (pos != text.size()) return bad();
  const int64_t days = DaysFromCivil(y, mo, d);
  return ((days * 24 + h) * 60 + mi) * 60000 + s * 1000 + millis;
}

std::vector<CostProfile> DefaultProfiles() {
  return {{"standard", 1.0, 0.11, 1.0},
          {"reward_low_FP_rate", 1.0, 0.22, 1.0},
          {"reward_low_FN_rate", 1.0, 0.11, 2.0}};
}

StatusOr<std::vector<CostProfile>> LoadProfiles(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot open " + path.string());
  std::vector<CostProfile> profiles;
  try {
    const nlohmann::json doc = nlohmann::json::parse(in);
    // NAB's order, not the file's (json objects are unordered).
    for (const CostProfile& def : DefaultProfiles()) {
      if (!doc.contains(def.name)) continue;
      const auto& cost = doc.at(def.name).at("CostMatrix");
      profiles.push_back({def.name, cost.at("tpWeight").get<double>(),
                          cost.at("fpWeight").get<double>(), cost.at("fnWeight").get<double>()});
    }
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError(path.string() + ": " + e.what());
  }
  if (profiles.empty()) return InvalidArgumentError(path.string() + ": no known profile");
  return profiles;
}

StatusOr<DataFile> ReadDataFile(const std::filesystem::path& csv_path, std::string name) {
  std::ifstream in(csv_path);
  if (!in) return NotFoundError("cannot open " + csv_path.string());
  DataFile file;
  file.name = std::move(name);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line_no == 1) continue;  // header
    if (line.empty() || line == "\r") continue;
    const size_t comma = line.find(',');
    if (comma == std::string::npos) {
      return InvalidArgumentError(csv_path.string() + ":" + std::to_string(line_no) +
                                  ": expected timestamp,value");
    }
    auto ts = ParseTimestampMs(std::string_view(line).substr(0, comma));
    auto value = ParseDouble(std::string_view(line).substr(comma + 1));
    if (!ts.ok() || !value.ok()) {
      return InvalidArgumentError(csv_path.string() + ":" + std::to_string(line_no) + ": " +
                                  (ts.ok() ? value.status() : ts.status()).message());
    }
    file.timestamps.push_back(*ts);
    file.values.push_back(*value);
  }
  return file;
}

StatusOr<std::vector<DataFile>> LoadCorpus(const std::filesystem::path& root) {
  const auto labels_path = root / "labels" / "combined_windows.json";
  std::ifstream in(labels_path);
  if (!in) return NotFoundError("cannot open " + labels_path.string());
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> windows;
  try {
    const nlohmann::json doc = nlohmann::json::parse(in);
    for (const auto& [name, list] : doc.items()) {
      auto& out = windows[name];
      for (const auto& w : list) {
        ASSIGN_OR_RETURN(int64_t start, ParseTimestampMs(w.at(0).get<std::string>()));
        ASSIGN_OR_RETURN(int64_t end, ParseTimestampMs(w.at(1).get<std::string>()));
        if (end < start) return InvalidArgumentError(name + ": window ends before it starts");
        out.emplace_back(start, end);
      }
      std::sort(out.begin(), out.end());
    }
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError(labels_path.string() + ": " + e.what());
  }
  std::vector<DataFile> corpus;
  for (const auto& [name, list] : windows) {
    ASSIGN_OR_RETURN(DataFile file, ReadDataFile(root / "data" / name, name));
    file.windows = list;
    corpus.push_back(std::move(file));
  }
  return corpus;
}

StatusOr<std::vector<double>> ReadResultScores(const std::filesystem::path& csv_path) {
  std::ifstream in(csv_path);
  if (!in) return NotFoundError("cannot open " + csv_path.string());
  std::string line;
  if (!std::getline(in, line)) return InvalidArgumentError(csv_path.string() + ": empty");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const auto header = SplitCsvLine(line);
  const auto it = std::find(header.begin(), header.end(), "anomaly_score");
  if (it == header.end()) {
    return InvalidArgumentError(csv_path.string() + ": no anomaly_score column");
  }
  const size_t column = static_cast<size_t>(it - header.begin());
  std::vector<double> scores;
  int64_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    const auto fields = SplitCsvLine(line);
    if (fields.size() <= column) {
      return InvalidArgumentError(csv_path.string() + ":" + std::to_string(line_no) +
                                  ": too few fields");
    }
    auto value = ParseDouble(fields[column]);
    if (!value.ok()) {
      return InvalidArgumentError(csv_path.string() + ":" + std::to_string(line_no) + ": " +
                                  value.status().message());
    }
    scores.push_back(*value);
  }
  return scores;
}

Status Scorer::AddFile(const DataFile& file, std::span<const double> scores) {
  const size_t n = file.timestamps.size();
  if (scores.size() != n) {
    return InvalidArgumentError(file.name + ": " + std::to_string(scores.size()) + " scores for " +
                                std::to_string(n) + " rows");
  }
  for (double s : scores) {
    if (std::isnan(s)) return InvalidArgumentError(file.name + ": NaN anomaly score");
  }
  const double probation = std::min(std::floor(0.15 * static_cast<double>(n)), 0.15 * 5000.0);
  // Each window as a row range [first, last].
  struct Range {
    int64_t first, last;
  };
  std::vector<Range> ranges;
  for (const auto& [start, end] : file.windows) {
    const auto lo = std::lower_bound(file.timestamps.begin(), file.timestamps.end(), start);
    const auto hi = std::upper_bound(file.timestamps.begin(), file.timestamps.end(), end);
    if (lo >= hi) continue;  // no rows inside
    ranges.push_back({lo - file.timestamps.begin(), (hi - file.timestamps.begin()) - 1});
  }
  const double max_tp = ScaledSigmoid(-1.0);
  const int32_t first_id = static_cast<int32_t>(window_ids_);
  std::vector<bool> window_scored(ranges.size(), false);
  size_t next = 0;  // next window to enter
  int64_t prev_last = -1;
  double prev_width = 0;
  rows_.reserve(rows_.size() + n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t row = static_cast<int64_t>(i);
    ScoredRow out;
    out.anomaly_score = scores[i];
    out.scored = static_cast<double>(i) >= probation;
    if (next < ranges.size() && row >= ranges[next].first) {
      const Range& r = ranges[next];
      const double width = static_cast<double>(r.last - r.first + 1);
      const double position = -static_cast<double>(r.last - row + 1) / width;
      out.weight = ScaledSigmoid(position) * profile_.tp_weight / max_tp;
      out.window = first_id + static_cast<int32_t>(next);
      if (out.scored) window_scored[next] = true;
      if (row == r.last) {
        prev_last = r.last;
        prev_width = width;
        ++next;
      }
    } else {
      double unweighted = -1.0;
      if (prev_last >= 0) {
        // A one-row window has no width to measure distance by: every FP after it is far.
        unweighted = prev_width > 1
                         ? ScaledSigmoid(static_cast<double>(row - prev_last) / (prev_width - 1))
                         : -1.0;
      }
      out.weight = unweighted * profile_.fp_weight;
      out.window = kNoWindow;
    }
    rows_.push_back(out);
  }
  // Windows entirely inside the probation period are not scored and not counted; ids stay
  // unique because the count only grows.
  int64_t counted = 0;
  for (bool scored : window_scored) counted += scored ? 1 : 0;
  window_ids_ += static_cast<int64_t>(ranges.size());
  uncounted_ += static_cast<int64_t>(ranges.size()) - counted;
  return Status::Ok();
}

double Scorer::Normalize(double raw) const {
  const double null_score = NullScore();
  const double span = PerfectScore() - null_score;
  return span == 0 ? 0.0 : 100.0 * (raw - null_score) / span;
}

std::vector<ThresholdScore> Scorer::Sweep() const {
  std::vector<const ScoredRow*> order;
  order.reserve(rows_.size());
  for (const ScoredRow& r : rows_) {
    if (r.scored) order.push_back(&r);
  }
  std::stable_sort(order.begin(), order.end(), [](const ScoredRow* a, const ScoredRow* b) {
    return a->anomaly_score > b->anomaly_score;
  });
  const int64_t windows = window_count();
  std::vector<double> best(static_cast<size_t>(window_ids_),
                           -std::numeric_limits<double>::infinity());
  ThresholdScore current;
  current.threshold = std::numeric_limits<double>::infinity();
  current.fn = windows;
  double fp_sum = 0;
  double tp_sum = 0;
  auto total = [&] { return fp_sum + tp_sum - profile_.fn_weight * current.fn; };
  current.score = total();
  std::vector<ThresholdScore> out;
  out.push_back(current);
  for (size_t i = 0; i < order.size(); ++i) {
    const ScoredRow& row = *order[i];
    if (row.window == kNoWindow) {
      fp_sum += row.weight;
      ++current.fp;
    } else {
      double& b = best[static_cast<size_t>(row.window)];
      if (std::isinf(b)) {
        ++current.tp;
        --current.fn;
        b = row.weight;
        tp_sum += row.weight;
      } else if (row.weight > b) {
        tp_sum += row.weight - b;
        b = row.weight;
      }
    }
    if (i + 1 == order.size() || order[i + 1]->anomaly_score != row.anomaly_score) {
      current.threshold = row.anomaly_score;
      current.score = total();
      out.push_back(current);
    }
  }
  return out;
}

ThresholdScore Scorer::Best() const {
  const auto sweep = Sweep();
  ThresholdScore best = sweep.front();
  for (const ThresholdScore& t : sweep) {
    if (t.score > best.score) best = t;
  }
  return best;
}

ThresholdScore Scorer::At(double threshold) const {
  std::vector<double> best(static_cast<size_t>(window_ids_),
                           -std::numeric_limits<double>::infinity());
  ThresholdScore out;
  out.threshold = threshold;
  double sum = 0;
  for (const ScoredRow& row : rows_) {
    if (!row.scored || row.anomaly_score < threshold) continue;
    if (row.window == kNoWindow) {
      sum += row.weight;
      ++out.fp;
    } else {
      double& b = best[static_cast<size_t>(row.window)];
      b = std::max(b, row.weight);
    }
  }
  for (double b : best) {
    if (!std::isinf(b)) {
      sum += b;
      ++out.tp;
    }
  }
  out.fn = window_count() - out.tp;
  out.score = sum - profile_.fn_weight * static_cast<double>(out.fn);
  return out;
}

StatusOr<std::vector<CorpusScore>> ScoreCorpus(const std::vector<DataFile>& corpus,
                                               const std::vector<std::vector<double>>& scores,
                                               const std::vector<CostProfile>& profiles,
                                               double fixed_threshold) {
  if (scores.size() != corpus.size()) {
    return InvalidArgumentError("scores for " + std::to_string(scores.size()) +
                                " files, corpus has " + std::to_string(corpus.size()));
  }
  std::vector<CorpusScore> out;
  for (const CostProfile& profile : profiles) {
    Scorer scorer(profile);
    for (size_t i = 0; i < corpus.size(); ++i) {
      RETURN_IF_ERROR(scorer.AddFile(corpus[i], scores[i]));
    }
    CorpusScore result;
    result.profile = profile.name;
    result.best = scorer.Best();
    result.fixed = scorer.At(fixed_threshold);
    result.normalized_best = scorer.Normalize(result.best.score);
    result.normalized_fixed = scorer.Normalize(result.fixed.score);
    out.push_back(std::move(result));
  }
  return out;
}

}  // namespace edgeloop::anomaly::nab
