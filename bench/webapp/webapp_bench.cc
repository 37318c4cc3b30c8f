// webapp_bench: the in-process parts of scoring a CSV upload (bench/webapp/run drives it):
//   parse          webapp::ReadCsv into typed batches, nothing else
//   floor          the model alone (Predict) on the already-parsed batches: the limit
//   parse_predict  ReadCsv with Predict per batch: the web app's path without HTTP and JSON
// Prints one JSON line with the median seconds of each over --repeat runs.
//   webapp_bench --model_dir DIR --csv FILE [--repeat 3] [--batch_rows 1024]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "inference/model.h"
#include "webapp/csv_scoring.h"

using edgeloop::Status;
namespace webapp = edgeloop::webapp;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = "examples/models/machine-failure/1";
  std::string csv_path;
  int repeat = 3;
  int64_t batch_rows = 1024;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--model_dir")
      model_dir = argv[i + 1];
    else if (flag == "--csv")
      csv_path = argv[i + 1];
    else if (flag == "--repeat")
      repeat = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--batch_rows")
      batch_rows = std::max(1, std::atoi(argv[i + 1]));
  }
  std::ifstream in(csv_path, std::ios::binary);
  if (!in) {
    std::cerr << "webapp_bench: cannot read --csv " << csv_path << "\n";
    return 2;
  }
  std::ostringstream text;
  text << in.rdbuf();
  const std::string csv = text.str();
  auto config = edgeloop::inference::LoadModelConfig(model_dir, "bench", 1);
  if (!config.ok()) {
    std::cerr << "webapp_bench: " << config.status().message() << "\n";
    return 2;
  }
  auto model = edgeloop::inference::LoadModel(*config);
  auto schema = webapp::SchemaFor(*config, "", std::nullopt);
  if (!model.ok() || !schema.ok()) {
    std::cerr << "webapp_bench: cannot load the model or its schema\n";
    return 2;
  }
  webapp::CsvOptions options;
  options.batch_rows = batch_rows;
  std::vector<double> parse, floor, parse_predict;
  int64_t rows = 0;
  for (int r = 0; r < repeat; ++r) {
    std::vector<webapp::ParsedBatch> batches;
    auto start = std::chrono::steady_clock::now();
    Status status =
        webapp::ReadCsv(csv, *schema, *config, options, nullptr, [&](webapp::ParsedBatch& batch) {
          batches.push_back(std::move(batch));
          return Status::Ok();
        });
    parse.push_back(Seconds(start));
    if (!status.ok()) {
      std::cerr << "webapp_bench: " << status.message() << "\n";
      return 1;
    }
    rows = 0;
    start = std::chrono::steady_clock::now();
    for (const auto& batch : batches) {
      std::vector<edgeloop::inference::Tensor> outputs;
      if (!(*model)->Predict(batch.inputs, schema->outputs, &outputs).ok()) return 1;
      rows += batch.rows;
    }
    floor.push_back(Seconds(start));
    start = std::chrono::steady_clock::now();
    status =
        webapp::ReadCsv(csv, *schema, *config, options, nullptr, [&](webapp::ParsedBatch& batch) {
          std::vector<edgeloop::inference::Tensor> outputs;
          return (*model)->Predict(batch.inputs, schema->outputs, &outputs);
        });
    parse_predict.push_back(Seconds(start));
    if (!status.ok()) return 1;
  }
  std::printf("{\"rows\": %lld, \"parse_s\": %.6f, \"floor_s\": %.6f, \"parse_predict_s\": %.6f}\n",
              static_cast<long long>(rows), Median(parse), Median(floor), Median(parse_predict));
  return 0;
}
