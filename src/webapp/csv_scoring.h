// Scoring tables of records against a served model: the input schema a form or CSV file must
// follow, a strict CSV reader (RFC 4180) that parses straight into the model's typed input
// tensors in batches, and the results as JSON.
//
// The columns of a model come from its inputs: an input of shape [-1] is one column named after
// the input; an input of shape [-1, N] is N columns, named by model.yaml's `feature_names` when
// the model has one such input and N names, else `input[0]`..`input[N-1]`. Ranges and typical
// values come from the model card (`card.json` beside model.yaml, written by `edgeloop train`):
// reference_statistics.features.<name>.{min,max,quantiles}.
//
// Thread-compatible functions; nothing here keeps state between calls.
#ifndef EDGELOOP_WEBAPP_CSV_SCORING_H_
#define EDGELOOP_WEBAPP_CSV_SCORING_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "inference/model_config.h"
#include "inference/tensor.h"

namespace edgeloop::webapp {

struct Column {
  std::string name;
  inference::DataType datatype = inference::DataType::kFp32;
  int input = 0;         // index into ModelConfig::inputs
  int64_t position = 0;  // element within the input's row (0 for [-1] inputs)
  // From the card, when it has them.
  std::optional<double> min, max, median;
};

struct InputSchema {
  std::vector<Column> columns;
  // Outputs returned by default (not `contributions`), and the contributions output, or -1.
  std::vector<int> outputs;
  int contributions = -1;
  // The verdict threshold: model.yaml parameters.threshold, else the server's.
  std::optional<double> threshold;
};

// kUnimplemented for an input the web app cannot fill (rank above 2, FP16/BF16). `card_json` may
// be empty (no card). `server_threshold` is serve's --anomaly-threshold.
StatusOr<InputSchema> SchemaFor(const inference::ModelConfig& config, std::string_view card_json,
                                std::optional<double> server_threshold);

// The schema as JSON for the page: {"columns":[{name,datatype,min,max,median}],"outputs":[...],
// "contributions":bool,"threshold":x}.
std::string SchemaJson(const InputSchema& schema, const inference::ModelConfig& config);

// One batch of parsed rows as the model's input tensors.
struct ParsedBatch {
  int64_t first_row = 0;  // 0-based data row of the batch's first row
  int64_t rows = 0;
  std::vector<inference::Tensor> inputs;
};

struct CsvOptions {
  int64_t batch_rows = 1024;
  int64_t max_rows = 2'000'000;
};

// Reads `csv` (header line, then records) and calls `on_batch` for every `batch_rows` rows,
// stopping at the first error it returns. Columns beyond the schema are ignored (their names go
// to `ignored`, which may be null). Errors are kInvalidArgument with a message a person can act
// on: not text (binary data), empty, missing or repeated columns, a record with the wrong number
// of fields, a value that is not of its column's type (row, line and column named), too many rows.
Status ReadCsv(std::string_view csv, const InputSchema& schema,
               const inference::ModelConfig& config, const CsvOptions& options,
               std::vector<std::string>* ignored,
               const std::function<Status(ParsedBatch&)>& on_batch);

// One record given as column → text (the form): the same parsing rules as a CSV field; every
// column is required. A batch of one row.
StatusOr<ParsedBatch> ParseRecord(const std::vector<std::pair<std::string, std::string>>& values,
                                  const InputSchema& schema, const inference::ModelConfig& config);

// Appends the JSON of row `row` of `outputs` for `schema.outputs` as an array of values (a
// number, bool, string or array for a multi-value output).
void AppendRowValues(const std::vector<inference::Tensor>& outputs, int64_t row, std::string* out);

}  // namespace edgeloop::webapp

#endif  // EDGELOOP_WEBAPP_CSV_SCORING_H_
