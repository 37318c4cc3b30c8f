#include "up/demo_data.h"

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numbers>
#include <sstream>

#include "common/clock.h"

namespace edgeloop::up {
namespace {

// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and the same everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // In [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Standard normal by Box-Muller (one value per call; simple beats fast here).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]: log is finite
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  uint64_t state_;
};

struct Machine {
  std::string id;
  double temperature = 0;
  double vibration = 0;
  double pressure = 0;
  double rpm = 0;
  double current = 0;
  double runtime_offset_h = 0;
};

constexpr double kMaintenanceHours = 600;

double Sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

std::string Format3(double value) {
  char buffer[32];
  const int n = std::snprintf(buffer, sizeof(buffer), "%.3f", value);
  std::string text(buffer, static_cast<size_t>(n));
  if (text == "-0.000") text = "0.000";
  return text;
}

// One reading of `machine` at minute `minute` (counted from the first history reading).
DemoRow Reading(Rng& rng, const Machine& machine, int machine_index, int64_t ts_s, int64_t minute,
                int phase, double anomaly_rate) {
  DemoRow row;
  row.ts_s = ts_s;
  row.machine_id = machine.id;
  row.phase = phase;
  // Three shifts a day; one operator looks after four machines.
  const int64_t shift = minute / 480;
  const uint64_t operator_number = (static_cast<uint64_t>(shift) * 7 + machine_index / 4) % 23;
  char op[32];
  std::snprintf(op, sizeof(op), "op-%04d", 1000 + static_cast<int>(operator_number) * 37);
  row.operator_id = op;

  const double runtime_h =
      std::fmod(machine.runtime_offset_h + static_cast<double>(minute) / 60.0, kMaintenanceHours);
  const double wear = runtime_h / kMaintenanceHours;
  double temperature = machine.temperature + 6.0 * wear + 2.5 * rng.Normal();
  double vibration = machine.vibration + 0.8 * wear + 0.3 * rng.Normal();
  double pressure = machine.pressure + 0.35 * rng.Normal();
  const double rpm = machine.rpm + 40.0 * rng.Normal();
  const double current = machine.current + 1.5 * rng.Normal();
  const double oil = 20.0 + 40.0 * wear + 8.0 * rng.Normal();
  const double day_angle = 2.0 * std::numbers::pi * static_cast<double>(minute % 1440) / 1440.0;
  const double humidity = 45.0 + 10.0 * std::sin(day_angle) + 3.0 * rng.Normal();

  double z = 0;
  if (phase == 0) {
    // Before the drift, failures come from overheating, worn bearings (vibration) and dirty oil.
    z = 1.1 * (temperature - 73.0) / 3.0 + 1.2 * (vibration - 2.7) / 0.35 +
        0.5 * (oil - 40.0) / 12.0 - 3.2;
  } else {
    // After the drift (new bearings, a new hydraulic supplier): the new bearings run louder but
    // harmlessly, and failures now come from pressure and motor current.
    vibration += 1.5;
    z = 1.6 * (pressure - 6.3) / 0.35 + 1.3 * (current - 15.5) / 1.5 - 3.2;
  }
  row.failure = rng.Uniform() < Sigmoid(1.3 * z) ? 1 : 0;

  if (rng.Uniform() < anomaly_rate) {
    row.injected_anomaly = true;
    switch (rng.Next() % 3) {
      case 0:
        temperature += 25.0;
        break;  // a stuck thermocouple
      case 1:
        vibration *= 2.5;
        break;  // a loose sensor mount
      default:
        pressure -= 2.0;
        break;  // a dropped pressure line
    }
  }
  row.features = {temperature, vibration, pressure, rpm, current, oil, humidity, runtime_h};
  return row;
}

Status WriteFileAtomically(const std::filesystem::path& path, const std::string& header,
                           const std::vector<DemoRow>& rows) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec)
    return InternalError("cannot create " + path.parent_path().string() + ": " + ec.message());
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return InternalError("cannot write " + tmp.string());
    out << header << "\n";
    for (const DemoRow& row : rows) out << DemoCsvRow(row) << "\n";
    out.flush();
    if (!out) return InternalError("cannot write " + tmp.string());
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return InternalError("cannot rename " + tmp.string() + ": " + ec.message());
  return Status::Ok();
}

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, ',')) fields.push_back(field);
  if (!line.empty() && line.back() == ',') fields.emplace_back();
  return fields;
}

bool ParseDouble(const std::string& text, double* value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return ec == std::errc() && ptr == end;
}

bool ParseTimestamp(const std::string& text, int64_t* seconds) {
  // "YYYY-MM-DDTHH:MM:SSZ" (what DemoCsvRow writes).
  int y, mo, d, h, mi, s;
  char z = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &z) != 7 ||
      z != 'Z') {
    return false;
  }
  // Days from civil (Howard Hinnant's algorithm).
  y -= mo <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy =
      (153 * static_cast<unsigned>(mo + (mo > 2 ? -3 : 9)) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const int64_t days = static_cast<int64_t>(era) * 146097 + static_cast<int64_t>(doe) - 719468;
  *seconds = days * 86400 + h * 3600 + mi * 60 + s;
  return true;
}

}  // namespace

const std::vector<std::string>& DemoFeatures() {
  static const std::vector<std::string> kFeatures = {
      "temperature_c", "vibration_rms",     "pressure_bar", "rpm",
      "current_a",     "oil_particles_ppm", "humidity_pct", "runtime_h"};
  return kFeatures;
}

StatusOr<DemoData> GenerateDemoData(const DemoDataOptions& options) {
  if (options.machines < 1 || options.machines > 1000) {
    return InvalidArgumentError("machines must be between 1 and 1000");
  }
  if (options.history_rows < options.machines || options.live_rows < options.machines) {
    return InvalidArgumentError("history and live need at least one reading per machine");
  }
  if (!(options.drift_at >= 0 && options.drift_at <= 1) ||
      !(options.anomaly_rate >= 0 && options.anomaly_rate <= 1)) {
    return InvalidArgumentError("drift_at and anomaly_rate must be between 0 and 1");
  }
  Rng rng(options.seed);
  std::vector<Machine> machines;
  for (int i = 0; i < options.machines; ++i) {
    Machine m;
    char id[32];
    std::snprintf(id, sizeof(id), "press-%02d", i + 1);
    m.id = id;
    m.temperature = 68.0 + 8.0 * rng.Uniform();
    m.vibration = 2.0 + 0.6 * rng.Uniform();
    m.pressure = 6.0 + 0.5 * rng.Uniform();
    m.rpm = 1500.0 + 200.0 * rng.Uniform();
    m.current = 14.0 + 3.0 * rng.Uniform();
    m.runtime_offset_h = kMaintenanceHours * rng.Uniform();
    machines.push_back(std::move(m));
  }
  DemoData data;
  const int64_t history_minutes = (options.history_rows + options.machines - 1) / options.machines;
  const int64_t live_minutes = (options.live_rows + options.machines - 1) / options.machines;
  const int64_t drift_minute =
      history_minutes + static_cast<int64_t>(std::llround(options.drift_at * live_minutes));
  const int64_t first_ts = options.live_start_s - history_minutes * 60;
  for (int64_t minute = 0; minute < history_minutes + live_minutes; ++minute) {
    const bool live = minute >= history_minutes;
    std::vector<DemoRow>& out = live ? data.live : data.history;
    const int limit = live ? options.live_rows : options.history_rows;
    const int phase = minute >= drift_minute ? 1 : 0;
    for (int i = 0; i < options.machines; ++i) {
      DemoRow row = Reading(rng, machines[static_cast<size_t>(i)], i, first_ts + minute * 60,
                            minute, phase, options.anomaly_rate);
      if (static_cast<int>(out.size()) < limit) out.push_back(std::move(row));
    }
  }
  return data;
}

std::string DemoCsvHeader() {
  std::string header = "ts,machine_id,operator_id";
  for (const std::string& f : DemoFeatures()) header += "," + f;
  header += ",failure,phase,injected_anomaly";
  return header;
}

std::string DemoCsvRow(const DemoRow& row) {
  std::string line = FormatRfc3339(Clock::WallTime(std::chrono::seconds(row.ts_s)));
  // FormatRfc3339 writes milliseconds; the data is per minute, so drop ".000".
  if (line.size() == 24 && line.compare(19, 4, ".000") == 0) line = line.substr(0, 19) + "Z";
  line += "," + row.machine_id + "," + row.operator_id;
  for (double v : row.features) line += "," + Format3(v);
  line += "," + std::to_string(row.failure) + "," + std::to_string(row.phase) + "," +
          (row.injected_anomaly ? "1" : "0");
  return line;
}

Status WriteDemoData(const DemoData& data, const std::filesystem::path& dir) {
  RETURN_IF_ERROR(
      WriteFileAtomically(dir / "history" / "readings.csv", DemoCsvHeader(), data.history));
  return WriteFileAtomically(dir / "live.csv", DemoCsvHeader(), data.live);
}

StatusOr<std::vector<DemoRow>> ReadDemoCsv(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot read " + path.string());
  std::string line;
  if (!std::getline(in, line) || line != DemoCsvHeader()) {
    return InvalidArgumentError(path.string() + ": line 1: not the demo data header");
  }
  const size_t features = DemoFeatures().size();
  std::vector<DemoRow> rows;
  int64_t number = 1;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    std::vector<std::string> fields = SplitCsv(line);
    auto bad = [&](const std::string& why) {
      return InvalidArgumentError(path.string() + ": line " + std::to_string(number) + ": " + why);
    };
    if (fields.size() != features + 6)
      return bad("expected " + std::to_string(features + 6) + " fields");
    DemoRow row;
    if (!ParseTimestamp(fields[0], &row.ts_s)) return bad("bad timestamp '" + fields[0] + "'");
    row.machine_id = fields[1];
    row.operator_id = fields[2];
    for (size_t i = 0; i < features; ++i) {
      double v;
      if (!ParseDouble(fields[3 + i], &v)) return bad("bad number '" + fields[3 + i] + "'");
      row.features.push_back(v);
    }
    const std::string& failure = fields[3 + features];
    const std::string& phase = fields[4 + features];
    const std::string& injected = fields[5 + features];
    if ((failure != "0" && failure != "1") || (phase != "0" && phase != "1") ||
        (injected != "0" && injected != "1")) {
      return bad("failure, phase and injected_anomaly must be 0 or 1");
    }
    row.failure = failure == "1";
    row.phase = phase == "1";
    row.injected_anomaly = injected == "1";
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace edgeloop::up
