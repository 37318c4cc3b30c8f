// The Numenta Anomaly Benchmark (NAB): its corpus reader and a scorer written from NAB's
// published method (Lavin & Ahmad 2015 and NAB's documentation).
//
// Scoring, per file and cost profile:
//  - The first min(floor(0.15 n), 750) rows are a probation period and are not scored.
//  - A label window [start, end] (timestamps) covers the rows whose timestamps fall in it. For a
//    row i in a window whose last row is r and whose width is w rows, position = -(r - i + 1)/w
//    and the row's weight is A_TP * s(position) / s(-1), with s(x) = 2 sigmoid(-5x) - 1.
//    Only the best (that is, the earliest) detection of a window counts; a window without one
//    costs -A_FN.
//  - A detection outside every window is a false positive worth A_FP * s(d / (w_prev - 1)),
//    where d is its distance in rows past the previous window's last row and w_prev that
//    window's width; -A_FP when no window precedes it or the relative distance exceeds 3.
//  - A detector's threshold is optimised once per profile over the whole corpus (a sweep over
//    its distinct scores); the raw score is the sum over files at that threshold, normalised as
//    100 (S - S_null) / (S_perfect - S_null), where the null detector never fires and the perfect
//    one detects every window on its first row.
//
// Everything here is a pure function of its inputs and thread-compatible.
#ifndef EDGELOOP_ANOMALY_NAB_H_
#define EDGELOOP_ANOMALY_NAB_H_

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace edgeloop::anomaly::nab {

// Parses "YYYY-MM-DD HH:MM:SS[.ffffff]" (or with a 'T' and an optional trailing 'Z') as UTC and
// returns milliseconds since the Unix epoch. kInvalidArgument on anything else.
StatusOr<int64_t> ParseTimestampMs(std::string_view text);

struct CostProfile {
  std::string name;
  double tp_weight = 1.0;
  double fp_weight = 0.11;
  double fn_weight = 1.0;
};

// NAB's three profiles: standard (1, 0.11, 1), reward_low_FP_rate (1, 0.22, 1),
// reward_low_FN_rate (1, 0.11, 2), in that order.
std::vector<CostProfile> DefaultProfiles();

// Reads NAB's config/profiles.json. kNotFound / kInvalidArgument.
StatusOr<std::vector<CostProfile>> LoadProfiles(const std::filesystem::path& path);

// One labelled data file of the corpus.
struct DataFile {
  std::string name;                 // "realKnownCause/nyc_taxi.csv"
  std::vector<int64_t> timestamps;  // epoch ms, one per row
  std::vector<double> values;
  std::vector<std::pair<int64_t, int64_t>> windows;  // [start, end] epoch ms, sorted
};

// Reads a `timestamp,value` CSV (header first). kNotFound, or kInvalidArgument naming the line.
StatusOr<DataFile> ReadDataFile(const std::filesystem::path& csv_path, std::string name);

// Reads the corpus under `root` (NAB's layout: data/<category>/<file>.csv and
// labels/combined_windows.json). Files are returned sorted by name.
StatusOr<std::vector<DataFile>> LoadCorpus(const std::filesystem::path& root);

// Reads the `anomaly_score` column of a NAB results CSV (timestamp,value,anomaly_score,...).
StatusOr<std::vector<double>> ReadResultScores(const std::filesystem::path& csv_path);

// A row prepared for the threshold sweep.
struct ScoredRow {
  double anomaly_score = 0;
  double weight = 0;    // what a detection here is worth (TP or FP weight), see above
  int32_t window = -1;  // corpus-wide window id; kNoWindow outside windows
  bool scored = true;   // false inside the probation period
};
inline constexpr int32_t kNoWindow = -1;

// The outcome at one threshold (rows whose score >= threshold are detections).
struct ThresholdScore {
  double threshold = 0;
  double score = 0;
  int64_t tp = 0;  // detected windows
  int64_t fn = 0;  // missed windows
  int64_t fp = 0;  // detections outside windows
};

// Accumulates files and profiles' weights, then sweeps or evaluates thresholds.
class Scorer {
 public:
  explicit Scorer(CostProfile profile) : profile_(std::move(profile)) {}

  // Adds one file's rows with the detector's scores (one per row, the same count). Windows whose
  // edges are not row timestamps are mapped to the rows inside them. kInvalidArgument when the
  // counts differ or a score is NaN.
  Status AddFile(const DataFile& file, std::span<const double> scores);

  // The score of every distinct threshold, highest threshold first (the first entry is "no
  // detections", threshold +inf).
  std::vector<ThresholdScore> Sweep() const;
  // The best entry of Sweep() (the highest threshold among ties).
  ThresholdScore Best() const;
  // The outcome with a fixed threshold.
  ThresholdScore At(double threshold) const;

  // Scores of the null (never fires) and perfect detectors over the files added so far.
  double NullScore() const { return -profile_.fn_weight * static_cast<double>(window_count()); }
  double PerfectScore() const { return profile_.tp_weight * static_cast<double>(window_count()); }
  // 100 (raw - null) / (perfect - null).
  double Normalize(double raw) const;

  // Windows with at least one scored row (outside the probation period).
  int64_t window_count() const { return window_ids_ - uncounted_; }
  const CostProfile& profile() const { return profile_; }

 private:
  CostProfile profile_;
  std::vector<ScoredRow> rows_;
  int64_t window_ids_ = 0;  // windows added (their ids are 0 .. window_ids_ - 1)
  int64_t uncounted_ = 0;   // of those, windows inside the probation period
};

// The three normalised scores (and raw details) of one detector over a corpus.
struct CorpusScore {
  std::string profile;
  ThresholdScore best;   // threshold optimised over the corpus
  ThresholdScore fixed;  // at the detector's own fixed threshold
  double normalized_best = 0;
  double normalized_fixed = 0;
};

// Scores `scores[i]` (for corpus[i]) under each profile. kInvalidArgument on size mismatches.
StatusOr<std::vector<CorpusScore>> ScoreCorpus(const std::vector<DataFile>& corpus,
                                               const std::vector<std::vector<double>>& scores,
                                               const std::vector<CostProfile>& profiles,
                                               double fixed_threshold);

}  // namespace edgeloop::anomaly::nab

#endif  // EDGELOOP_ANOMALY_NAB_H_
