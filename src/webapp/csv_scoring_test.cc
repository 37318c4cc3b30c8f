#include "webapp/csv_scoring.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "inference/model.h"

namespace edgeloop::webapp {
namespace {

using inference::ModelConfig;

ModelConfig ExampleConfig() {
  auto config = inference::LoadModelConfig(edgeloop::testing::ExampleModelDir(), "mf", 1);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

ModelConfig StreamingConfig() {
  auto config = inference::ParseModelConfig(R"(framework: streaming_anomaly
model_file: detector.yaml
inputs:
  - {name: timestamp, datatype: INT64, shape: [-1]}
  - {name: value, datatype: FP64, shape: [-1]}
  - {name: series, datatype: BYTES, shape: [-1]}
outputs:
  - {name: score, datatype: FP64, shape: [-1]}
  - {name: anomaly, datatype: BOOL, shape: [-1]}
)",
                                            "sensors", 1, "/tmp");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

std::string Header(const InputSchema& schema) {
  std::string line;
  for (size_t i = 0; i < schema.columns.size(); ++i) {
    line += (i ? "," : "") + schema.columns[i].name;
  }
  return line + "\n";
}

// Rows whose value in column c of row r is r + c / 100.
std::string Rows(size_t columns, int rows) {
  std::string text;
  for (int r = 0; r < rows; ++r) {
    for (size_t c = 0; c < columns; ++c) {
      text += (c ? "," : "") + std::to_string(r) + "." + (c < 10 ? "0" : "") + std::to_string(c);
    }
    text += "\n";
  }
  return text;
}

std::vector<ParsedBatch> ReadAll(std::string_view csv, const InputSchema& schema,
                                 const ModelConfig& config, int64_t batch_rows, Status* status,
                                 std::vector<std::string>* ignored = nullptr) {
  std::vector<ParsedBatch> batches;
  CsvOptions options;
  options.batch_rows = batch_rows;
  *status = ReadCsv(csv, schema, config, options, ignored, [&](ParsedBatch& batch) {
    batches.push_back(std::move(batch));
    return Status::Ok();
  });
  return batches;
}

TEST(SchemaTest, ColumnsAreTheFeatureNamesAndContributionsAreFound) {
  const ModelConfig config = ExampleConfig();
  auto schema = SchemaFor(config, "", std::nullopt);
  ASSERT_TRUE(schema.ok()) << schema.status();
  ASSERT_EQ(schema->columns.size(), 20u);
  EXPECT_EQ(schema->columns[0].name, "temperature_c");
  EXPECT_EQ(schema->columns[19].name, "error_count_24h");
  EXPECT_EQ(schema->columns[19].position, 19);
  ASSERT_EQ(schema->outputs.size(), 1u);
  EXPECT_EQ(config.outputs[schema->outputs[0]].name, "probability");
  EXPECT_EQ(config.outputs[schema->contributions].name, "contributions");
  EXPECT_FALSE(schema->threshold.has_value());
}

TEST(SchemaTest, RangesComeFromTheCardAndTheThresholdFromTheModel) {
  ModelConfig config = ExampleConfig();
  config.parameters["threshold"] = "0.25";
  const std::string card = R"({"reference_statistics":{"features":{"rpm":{"min":900,"max":2100,
      "quantiles":{"levels":[0,0.01,0.05,0.1,0.25,0.5,0.75,0.9,0.95,0.99,1],
                   "values":[900,910,950,1000,1200,1500,1700,1900,2000,2090,2100]}}}}})";
  auto schema = SchemaFor(config, card, 0.9);
  ASSERT_TRUE(schema.ok());
  const Column& rpm = schema->columns[4];
  EXPECT_EQ(rpm.name, "rpm");
  EXPECT_EQ(*rpm.min, 900);
  EXPECT_EQ(*rpm.max, 2100);
  EXPECT_EQ(*rpm.median, 1500);
  EXPECT_FALSE(schema->columns[0].min.has_value());
  EXPECT_EQ(*schema->threshold, 0.25);
  auto json = nlohmann::json::parse(SchemaJson(*schema, config));
  EXPECT_EQ(json["columns"][4]["median"], 1500);
  EXPECT_EQ(json["contributions"], true);
  EXPECT_EQ(json["threshold"], 0.25);
  // A card that is not JSON is ignored rather than failing the model.
  EXPECT_TRUE(SchemaFor(config, "{not json", std::nullopt).ok());
}

TEST(SchemaTest, OneColumnPerInputOfShapeMinusOne) {
  auto schema = SchemaFor(StreamingConfig(), "", std::nullopt);
  ASSERT_TRUE(schema.ok());
  ASSERT_EQ(schema->columns.size(), 3u);
  EXPECT_EQ(schema->columns[2].name, "series");
  EXPECT_EQ(schema->columns[2].input, 2);
  EXPECT_EQ(schema->outputs.size(), 2u);
  EXPECT_EQ(schema->contributions, -1);
}

TEST(ReadCsvTest, ParsesIntoBatchesInHeaderOrderAndIgnoresExtraColumns) {
  const ModelConfig config = ExampleConfig();
  const InputSchema schema = *SchemaFor(config, "", std::nullopt);
  // Reverse the column order and add an id column the model does not use.
  std::string header = "id";
  for (size_t c = schema.columns.size(); c-- > 0;) header += "," + schema.columns[c].name;
  std::string csv = header + "\r\n";
  for (int r = 0; r < 2500; ++r) {
    csv += "row" + std::to_string(r);
    for (size_t c = schema.columns.size(); c-- > 0;) csv += "," + std::to_string(r * 100 + c);
    csv += "\r\n";
  }
  Status status;
  std::vector<std::string> ignored;
  auto batches = ReadAll(csv, schema, config, 1024, &status, &ignored);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].rows, 1024);
  EXPECT_EQ(batches[2].rows, 2500 - 2048);
  EXPECT_EQ(batches[2].first_row, 2048);
  EXPECT_EQ(batches[2].inputs[0].shape(), (inference::Shape{452, 20}));
  EXPECT_EQ(ignored, std::vector<std::string>{"id"});
  const auto values = batches[1].inputs[0].values<float>();
  // Row 1024 + 3, feature 7.
  EXPECT_EQ(values[3 * 20 + 7], static_cast<float>((1024 + 3) * 100 + 7));
}

TEST(ReadCsvTest, QuotedFieldsMissingValuesAndTypedColumns) {
  const ModelConfig config = StreamingConfig();
  const InputSchema schema = *SchemaFor(config, "", std::nullopt);
  const std::string csv =
      "\xEF\xBB\xBFtimestamp,value,series\n"
      "1000,1.5,\"pump, north\"\n"
      "2000,,\"say \"\"hi\"\"\"\n"
      "\n"
      "3000,NaN,\"two\nlines\"\n";
  Status status;
  auto batches = ReadAll(csv, schema, config, 10, &status);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(batches.size(), 1u);
  const ParsedBatch& b = batches[0];
  EXPECT_EQ(b.rows, 3);
  EXPECT_EQ(b.inputs[0].values<int64_t>()[1], 2000);
  EXPECT_EQ(b.inputs[1].values<double>()[0], 1.5);
  EXPECT_TRUE(std::isnan(b.inputs[1].values<double>()[1]));
  EXPECT_EQ(b.inputs[2].strings()[0], "pump, north");
  EXPECT_EQ(b.inputs[2].strings()[1], "say \"hi\"");
  EXPECT_EQ(b.inputs[2].strings()[2], "two\nlines");
}

TEST(ReadCsvTest, BadInputGetsAMessageAPersonCanActOn) {
  const ModelConfig config = ExampleConfig();
  const InputSchema schema = *SchemaFor(config, "", std::nullopt);
  const std::string header = Header(schema);
  auto error = [&](const std::string& csv) {
    Status status;
    ReadAll(csv, schema, config, 64, &status);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << csv.substr(0, 80);
    return std::string(status.message());
  };
  EXPECT_NE(error("a,b,c\n1,2,3\n")
                .find("wrong columns: the model 'mf' needs 20 column(s) the file "
                      "lacks: temperature_c, vibration_rms"),
            std::string::npos);
  std::string missing_one = header;
  missing_one.replace(missing_one.find("rpm"), 3, "rpn");
  EXPECT_NE(error(missing_one + Rows(20, 1)).find("lacks: rpm."), std::string::npos);
  std::string bad_type = Rows(20, 3);
  bad_type.replace(bad_type.find("1.04"), 4, "high");
  EXPECT_EQ(error(header + bad_type),
            "wrong type on line 3 (row 2), column 'rpm': 'high' is not a number");
  EXPECT_EQ(error(header + "1,2,3\n"), "line 2 has 3 fields; the header has 20");
  EXPECT_EQ(error(std::string("PK\x03\x04\x00\x00garbage", 13)),
            "the file is not CSV text: binary data at byte 2 (upload a UTF-8 CSV file)");
  EXPECT_NE(error("name\n\xff\xfe\n").find("binary data at byte 5"), std::string::npos);
  EXPECT_EQ(error(""), "the file is empty: the first line must name the columns");
  EXPECT_EQ(error(header), "the file has a header but no rows");
  EXPECT_EQ(error("a,a\n1,2\n"), "the column 'a' appears twice in the header");
  EXPECT_EQ(error(header + "\"1,2\n"), "line 2: a quoted field is never closed");
  Status status;
  CsvOptions options;
  options.max_rows = 5;
  status = ReadCsv(header + Rows(20, 6), schema, config, options, nullptr,
                   [](ParsedBatch&) { return Status::Ok(); });
  EXPECT_EQ(status.message(), "the file has more than 5 rows; split it");
}

TEST(ReadCsvTest, AnErrorFromTheCallbackStopsReading) {
  const ModelConfig config = ExampleConfig();
  const InputSchema schema = *SchemaFor(config, "", std::nullopt);
  int calls = 0;
  CsvOptions options;
  options.batch_rows = 10;
  const Status status =
      ReadCsv(Header(schema) + Rows(20, 100), schema, config, options, nullptr, [&](ParsedBatch&) {
        ++calls;
        return InternalError("model failed");
      });
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_EQ(calls, 1);
}

TEST(ReadCsvTest, ParsedRowsScoreLikeTheSameTensorsBuiltByHand) {
  const ModelConfig config = ExampleConfig();
  const InputSchema schema = *SchemaFor(config, "", std::nullopt);
  auto model = inference::LoadModel(config);
  ASSERT_TRUE(model.ok()) << model.status();
  Status status;
  auto batches = ReadAll(Header(schema) + Rows(20, 7), schema, config, 4, &status);
  ASSERT_TRUE(status.ok());
  inference::Tensor by_hand("features", inference::DataType::kFp32, {7, 20});
  for (int r = 0; r < 7; ++r) {
    for (int c = 0; c < 20; ++c)
      by_hand.values<float>()[r * 20 + c] =
          std::stof(std::to_string(r) + "." + (c < 10 ? "0" : "") + std::to_string(c));
  }
  std::vector<inference::Tensor> expected;
  ASSERT_TRUE((*model)->Predict({&by_hand, 1}, schema.outputs, &expected).ok());
  int row = 0;
  for (ParsedBatch& batch : batches) {
    std::vector<inference::Tensor> outputs;
    ASSERT_TRUE((*model)->Predict(batch.inputs, schema.outputs, &outputs).ok());
    for (int64_t r = 0; r < batch.rows; ++r, ++row) {
      EXPECT_EQ(outputs[0].values<float>()[r], expected[0].values<float>()[row]) << row;
    }
  }
  EXPECT_EQ(row, 7);
  std::string json;
  AppendRowValues(expected, 2, &json);
  EXPECT_EQ(nlohmann::json::parse(json)[0].get<float>(), expected[0].values<float>()[2]);
}

TEST(ParseRecordTest, EveryColumnIsRequiredAndTyped) {
  const ModelConfig config = StreamingConfig();
  const InputSchema schema = *SchemaFor(config, "", std::nullopt);
  auto ok = ParseRecord({{"timestamp", "5"}, {"value", " 2.5 "}, {"series", "s1"}}, schema, config);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->inputs[1].values<double>()[0], 2.5);
  auto missing = ParseRecord({{"timestamp", "5"}, {"value", "1"}}, schema, config);
  EXPECT_EQ(missing.status().message(), "the field 'series' is missing");
  auto wrong = ParseRecord({{"timestamp", "5.5"}, {"value", "1"}, {"series", "s"}}, schema, config);
  EXPECT_EQ(wrong.status().message(), "'timestamp': '5.5' is not a whole number");
}

}  // namespace
}  // namespace edgeloop::webapp
