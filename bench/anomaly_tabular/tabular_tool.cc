// anomaly_tabular_tool: fits or loads a tabular detector (src/anomaly/tabular.h) and scores rows
// from raw little-endian float32 files, timing fit and score. Used by bench/anomaly_tabular/run
// and to make the black-box test's fixtures.
//
//   anomaly_tabular_tool --cols D (--data TRAIN.f32 --kind K [--seed S] [--param k=v ...]
//                                  | --load DETECTOR.json)
//                        [--score-data ROWS.f32] [--scores OUT.f64] [--model OUT.json]
//                        [--repeat R]
//
// Rows are row-major [n, D]. Scoring uses --score-data, else the training rows. Prints one JSON
// line: {"kind":..., "fit_rows":n, "fit_s":t, "score_rows":m, "score_s":t} where the times are
// medians over R repetitions (fits are repeated too, and must give identical bytes), in CPU
// seconds of this (single-threaded) process: the machine is shared, and wall time would count
// the other processes.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "anomaly/tabular.h"

namespace {

using edgeloop::anomaly::TabularDetector;

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "anomaly_tabular_tool: " << message << "\n";
  std::exit(2);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteFile(const std::string& path, const char* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data, static_cast<std::streamsize>(size));
  if (!out) Fail("cannot write " + path);
}

std::vector<float> ReadRows(const std::string& path, int64_t cols) {
  const std::string bytes = ReadFile(path);
  if (bytes.size() % (sizeof(float) * static_cast<size_t>(cols)) != 0) {
    Fail(path + " does not hold whole rows of " + std::to_string(cols) + " float32 values");
  }
  std::vector<float> rows(bytes.size() / sizeof(float));
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(rows.data()));
  return rows;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t cols = 0;
  int repeat = 1;
  std::string data_path, load_path, score_path, scores_out, model_out;
  edgeloop::anomaly::TabularFitOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) Fail("missing value for " + flag);
    const std::string value = argv[++i];
    if (flag == "--cols") {
      cols = std::atoll(value.c_str());
    } else if (flag == "--data") {
      data_path = value;
    } else if (flag == "--load") {
      load_path = value;
    } else if (flag == "--kind") {
      options.kind = value;
    } else if (flag == "--seed") {
      options.seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--param") {
      const size_t eq = value.find('=');
      if (eq == std::string::npos) Fail("--param takes name=value");
      options.params[value.substr(0, eq)] = value.substr(eq + 1);
    } else if (flag == "--score-data") {
      score_path = value;
    } else if (flag == "--scores") {
      scores_out = value;
    } else if (flag == "--model") {
      model_out = value;
    } else if (flag == "--repeat") {
      repeat = std::max(1, std::atoi(value.c_str()));
    } else {
      Fail("unknown flag " + flag);
    }
  }
  if (cols < 1) Fail("--cols must be positive");
  if (data_path.empty() == load_path.empty()) Fail("give exactly one of --data and --load");

  std::unique_ptr<TabularDetector> detector;
  std::vector<float> train;
  std::vector<double> fit_times;
  if (!load_path.empty()) {
    auto loaded = edgeloop::anomaly::LoadTabularDetector(ReadFile(load_path));
    if (!loaded.ok()) Fail(loaded.status().ToString());
    detector = std::move(loaded).value();
  } else {
    train = ReadRows(data_path, cols);
    const auto n = static_cast<int64_t>(train.size()) / cols;
    std::string first_bytes;
    for (int r = 0; r < repeat; ++r) {
      const double start = CpuSeconds();
      auto fitted = edgeloop::anomaly::FitTabularDetector(train.data(), n, cols, options);
      fit_times.push_back(CpuSeconds() - start);
      if (!fitted.ok()) Fail(fitted.status().ToString());
      const std::string bytes = (*fitted)->Serialize();
      if (r == 0) first_bytes = bytes;
      if (bytes != first_bytes) Fail("two fits with the same seed gave different models");
      detector = std::move(fitted).value();
    }
  }
  if (detector->num_features() != cols) Fail("the detector has a different feature count");
  const std::vector<float> rows = score_path.empty() ? train : ReadRows(score_path, cols);
  if (rows.empty()) Fail("nothing to score (give --score-data)");
  const auto m = static_cast<int64_t>(rows.size()) / cols;
  std::vector<double> scores(static_cast<size_t>(m));
  std::vector<double> score_times;
  for (int r = 0; r < repeat; ++r) {
    const double start = CpuSeconds();
    detector->Score(rows.data(), m, scores.data());
    score_times.push_back(CpuSeconds() - start);
  }
  if (!scores_out.empty()) {
    WriteFile(scores_out, reinterpret_cast<const char*>(scores.data()),
              scores.size() * sizeof(double));
  }
  if (!model_out.empty()) {
    const std::string bytes = detector->Serialize();
    WriteFile(model_out, bytes.data(), bytes.size());
  }
  std::ostringstream line;
  line.precision(9);
  line << "{\"kind\":\"" << detector->kind() << "\",\"fit_rows\":" << train.size() / cols
       << ",\"fit_s\":" << (fit_times.empty() ? 0.0 : Median(fit_times)) << ",\"score_rows\":" << m
       << ",\"score_s\":" << Median(score_times) << "}";
  std::cout << line.str() << std::endl;
  return 0;
}
