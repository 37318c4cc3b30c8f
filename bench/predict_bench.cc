// predict_bench: per-row prediction time of the xgboost backends (native and capi) on a model
// version directory, for 1-row calls and 64-row batches.
//
//   predict_bench [--model_dir=DIR] [google benchmark flags]
//
// DIR defaults to $EDGELOOP_MODEL_DIR, else examples/models/machine-failure/1. Calls cycle
// through 4096 varied rows (a single repeated row would let the branch predictor learn the
// tree walks and flatter them): the rows of examples/data/machine_failure_sample.csv with
// seeded noise when the model has its 20 features, else uniform draws over each feature's
// range of split thresholds. Each benchmark reports `ns_per_row`; the last line of output is a
// JSON summary of the medians over repetitions (on stderr with --benchmark_format=json), e.g.
//   {"summary": {"capi/rows:1": 25000.0, "native/rows:1": 1234.5, ...}, "unit": "ns_per_row"}
// Pin it to one core for stable numbers: taskset -c 1 predict_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "inference/model.h"
#include "inference/model_config.h"
#include "inference/xgboost_json.h"

namespace edgeloop::inference {
namespace {

constexpr size_t kRows = 4096;

// Passes everything to the reporter that --benchmark_format asks for, and keeps the
// ns_per_row of every reported (final, non-aggregate) run for the summary line.
class SummaryReporter : public benchmark::BenchmarkReporter {
 public:
  explicit SummaryReporter(std::unique_ptr<benchmark::BenchmarkReporter> inner)
      : inner_(std::move(inner)) {}

  bool ReportContext(const Context& context) override { return inner_->ReportContext(context); }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      auto counter = run.counters.find("ns_per_row");
      if (counter == run.counters.end()) continue;
      if (run.run_type == Run::RT_Iteration) {
        results_[run.run_name.function_name].push_back(counter->second.value);
      } else if (run.aggregate_name == "median") {
        // With --benchmark_report_aggregates_only only aggregates arrive.
        medians_[run.run_name.function_name] = counter->second.value;
      }
    }
    inner_->ReportRuns(runs);
  }
  void Finalize() override { inner_->Finalize(); }

  // {"summary": {"capi/rows:1": 25000.0, ...}, "unit": "ns_per_row"}: medians over runs.
  std::string Summary() {
    for (auto& [name, values] : results_) {
      if (medians_.count(name)) continue;
      std::sort(values.begin(), values.end());
      const size_t n = values.size();
      medians_[name] = n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
    }
    std::string summary = "{\"summary\": {";
    bool first = true;
    for (const auto& [name, median] : medians_) {
      char entry[160];
      std::snprintf(entry, sizeof(entry), "%s\"%s\": %.1f", first ? "" : ", ", name.c_str(),
                    median);
      summary += entry;
      first = false;
    }
    return summary + "}, \"unit\": \"ns_per_row\"}";
  }

 private:
  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  std::map<std::string, std::vector<double>> results_;
  std::map<std::string, double> medians_;
};

// The sample rows with multiplicative noise, or nothing when the file is not there or does not
// have `features` columns.
std::vector<float> SampleRows(const std::filesystem::path& csv, size_t features,
                              std::mt19937* rng) {
  std::ifstream in(csv);
  std::string line;
  if (!in || !std::getline(in, line)) return {};
  std::vector<float> base;
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string field;
    size_t count = 0;
    while (std::getline(fields, field, ',')) {
      base.push_back(std::strtof(field.c_str(), nullptr));
      ++count;
    }
    if (count != features) return {};
  }
  if (base.empty()) return {};
  const size_t base_rows = base.size() / features;
  std::normal_distribution<float> noise(0.0f, 0.2f);
  std::vector<float> rows(kRows * features);
  for (size_t r = 0; r < kRows; ++r) {
    for (size_t f = 0; f < features; ++f) {
      rows[r * features + f] = base[(r % base_rows) * features + f] * (1.0f + noise(*rng));
    }
  }
  return rows;
}

// Uniform draws over [min, max] of each feature's split thresholds, widened by 10%.
std::vector<float> ThresholdRows(const XgboostModel& model, std::mt19937* rng) {
  const size_t features = static_cast<size_t>(model.header.num_feature);
  std::vector<float> low(features, std::numeric_limits<float>::infinity());
  std::vector<float> high(features, -std::numeric_limits<float>::infinity());
  for (const XgboostTree& tree : model.trees) {
    for (size_t n = 0; n < tree.num_nodes(); ++n) {
      if (tree.IsLeaf(static_cast<int32_t>(n))) continue;
      const int32_t f = tree.split_indices[n];
      if (f < 0 || static_cast<size_t>(f) >= features) continue;
      const float t = tree.split_conditions[n];
      if (!std::isfinite(t)) continue;
      low[f] = std::min(low[f], t);
      high[f] = std::max(high[f], t);
    }
  }
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> rows(kRows * features);
  for (size_t r = 0; r < kRows; ++r) {
    for (size_t f = 0; f < features; ++f) {
      if (!(low[f] <= high[f])) {
        rows[r * features + f] = 0.0f;
        continue;
      }
      const float span = std::max(high[f] - low[f], 1e-3f);
      rows[r * features + f] = low[f] - 0.1f * span + 1.2f * span * unit(*rng);
    }
  }
  return rows;
}

// Batches of `batch` rows, cut from the varied rows, each an input tensor ready to use.
std::vector<std::vector<Tensor>> MakeInputs(const std::vector<float>& rows, size_t features,
                                            size_t batch, const std::string& input_name) {
  std::vector<std::vector<Tensor>> inputs;
  for (size_t first = 0; first + batch <= kRows; first += batch) {
    Tensor tensor(input_name, DataType::kFp32,
                  {static_cast<int64_t>(batch), static_cast<int64_t>(features)});
    std::copy(rows.begin() + first * features, rows.begin() + (first + batch) * features,
              tensor.values<float>().begin());
    inputs.emplace_back();
    inputs.back().push_back(std::move(tensor));
  }
  return inputs;
}

void RunPredict(benchmark::State& state, const Model* model, int output,
                const std::vector<std::vector<Tensor>>* inputs, size_t batch) {
  const int indices[] = {output};
  std::vector<Tensor> outputs;
  size_t next = 0;
  int64_t calls = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    Status status = model->Predict((*inputs)[next], indices, &outputs);
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(outputs.data());
    next = next + 1 == inputs->size() ? 0 : next + 1;
    ++calls;
  }
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  const double per_row = calls > 0 ? ns / (static_cast<double>(calls) * batch) : 0.0;
  state.counters["ns_per_row"] = per_row;
  state.SetItemsProcessed(calls * static_cast<int64_t>(batch));
}

int Main(int argc, char** argv) {
  std::filesystem::path model_dir = "examples/models/machine-failure/1";
  if (const char* env = std::getenv("EDGELOOP_MODEL_DIR")) model_dir = env;
  std::string format = "console";
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--model_dir=", 0) == 0) {
      model_dir = arg.substr(std::string("--model_dir=").size());
      continue;
    }
    if (arg.rfind("--benchmark_format=", 0) == 0) {
      format = arg.substr(std::string("--benchmark_format=").size());
    }
    args.push_back(argv[i]);
  }
  int bench_argc = static_cast<int>(args.size());
  benchmark::Initialize(&bench_argc, args.data());

  auto config = LoadModelConfig(model_dir, model_dir.parent_path().filename().string(), 1);
  if (!config.ok()) {
    std::fprintf(stderr, "predict_bench: %s\n", config.status().ToString().c_str());
    return 1;
  }
  auto data = ReadXgboostModelFile(config->model_file);
  auto parsed = data.ok() ? ParseXgboostModel(*data) : StatusOr<XgboostModel>(data.status());
  if (!parsed.ok()) {
    std::fprintf(stderr, "predict_bench: %s\n", parsed.status().ToString().c_str());
    return 1;
  }
  const size_t features = static_cast<size_t>(parsed->header.num_feature);
  std::mt19937 rng(20261127);
  std::vector<float> rows =
      SampleRows(model_dir / "../../../data/machine_failure_sample.csv", features, &rng);
  if (rows.empty()) {
    rows = SampleRows("examples/data/machine_failure_sample.csv", features, &rng);
  }
  if (rows.empty()) rows = ThresholdRows(*parsed, &rng);

  // The first output of kind prediction (or the first output) is the one measured.
  int output = 0;
  for (size_t i = 0; i < config->outputs.size(); ++i) {
    if (config->outputs[i].kind.empty() || config->outputs[i].kind == "prediction") {
      output = static_cast<int>(i);
      break;
    }
  }
  std::vector<std::unique_ptr<Model>> models;
  for (const char* backend : {"native", "capi"}) {
    ModelConfig backend_config = *config;
    backend_config.backend = backend;
    auto model = LoadModel(backend_config);
    if (!model.ok()) {
      std::fprintf(stderr, "predict_bench: %s backend: %s\n", backend,
                   model.status().ToString().c_str());
      return 1;
    }
    models.push_back(std::move(*model));
  }
  const std::string input_name = config->inputs[0].name;
  static std::vector<std::vector<Tensor>> one_row;
  static std::vector<std::vector<Tensor>> batch64;
  one_row = MakeInputs(rows, features, 1, input_name);
  batch64 = MakeInputs(rows, features, 64, input_name);
  const char* names[] = {"native", "capi"};
  for (size_t m = 0; m < models.size(); ++m) {
    for (size_t batch : {size_t{1}, size_t{64}}) {
      const std::string name = std::string(names[m]) + "/rows:" + std::to_string(batch);
      const Model* model = models[m].get();
      const auto* inputs = batch == 1 ? &one_row : &batch64;
      benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
        RunPredict(state, model, output, inputs, batch);
      });
    }
  }
  std::unique_ptr<benchmark::BenchmarkReporter> inner;
  if (format == "json") {
    inner = std::make_unique<benchmark::JSONReporter>();
  } else {
    // Colour only on a terminal, so that redirected output stays plain text.
    inner = std::make_unique<benchmark::ConsoleReporter>(
        isatty(STDOUT_FILENO) ? benchmark::ConsoleReporter::OO_ColorTabular
                              : benchmark::ConsoleReporter::OO_Tabular);
  }
  SummaryReporter reporter(std::move(inner));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  // With JSON on stdout, the summary goes to stderr so that stdout stays one JSON document.
  std::fprintf(format == "json" ? stderr : stdout, "%s\n", reporter.Summary().c_str());
  return 0;
}

}  // namespace
}  // namespace edgeloop::inference

int main(int argc, char** argv) { return edgeloop::inference::Main(argc, argv); }
