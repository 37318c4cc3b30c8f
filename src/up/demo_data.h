// The demo data set of `edgeloop up`: a factory of machines with sensor readings, an operator id
// that must not leave the site, labelled failures, injected anomalies and a concept drift partway
// through the live feed. Deterministic: the same options give the same bytes on every platform
// (own SplitMix64 generator and Box-Muller normals, no std:: distributions).
#ifndef EDGELOOP_UP_DEMO_DATA_H_
#define EDGELOOP_UP_DEMO_DATA_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace edgeloop::up {

struct DemoDataOptions {
  uint64_t seed = 7;
  int machines = 12;
  // Readings before the live feed (training history; all before the drift).
  int history_rows = 24'000;
  // Readings the live feed replays.
  int live_rows = 24'000;
  // Share of the live rows before the concept drift starts (0..1).
  double drift_at = 0.25;
  // Share of readings with an injected sensor anomaly (a spike).
  double anomaly_rate = 0.004;
  // Unix seconds of the first live reading; history ends one minute before it.
  int64_t live_start_s = 1'793'491'200;  // 2026-11-01T00:00:00Z
};

// The model's input features, in order (all numeric).
const std::vector<std::string>& DemoFeatures();

// One reading. `failure` is the label (a failure within the hour); `phase` is 0 before the drift
// and 1 after; `injected_anomaly` marks a spike the generator put in.
struct DemoRow {
  int64_t ts_s = 0;
  std::string machine_id;
  std::string operator_id;
  std::vector<double> features;  // DemoFeatures() order
  int failure = 0;
  int phase = 0;
  bool injected_anomaly = false;
};

// Generates the rows: `history` (phase 0) then `live` (phase 0 up to drift_at, then 1). Rows are
// in time order, one reading per machine per simulated minute.
struct DemoData {
  std::vector<DemoRow> history;
  std::vector<DemoRow> live;
};
StatusOr<DemoData> GenerateDemoData(const DemoDataOptions& options);

// The CSV header and row text (RFC 4180; no field needs quoting): ts (RFC 3339), machine_id,
// operator_id, the features, failure, phase, injected_anomaly.
std::string DemoCsvHeader();
std::string DemoCsvRow(const DemoRow& row);

// Writes `<dir>/history/readings.csv` and `<dir>/live.csv` (each through a temporary file and a
// rename, so a crash leaves no half file).
Status WriteDemoData(const DemoData& data, const std::filesystem::path& dir);

// Reads a file written by WriteDemoData (the live feed uses it). kInvalidArgument names the line
// of a malformed row.
StatusOr<std::vector<DemoRow>> ReadDemoCsv(const std::filesystem::path& path);

}  // namespace edgeloop::up

#endif  // EDGELOOP_UP_DEMO_DATA_H_
