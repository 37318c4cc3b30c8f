// Categorical encodings at serve time: a model trained on encoded features (one-hot or ordinal
// categories, as `edgeloop train` encodes them) takes raw rows, and the encoding declared in its
// model.yaml turns them into the features, exactly as training did.
//
//   inputs:
//     - {name: features, datatype: FP32, shape: [-1, 5]}   # what the model file takes
//   encoding:                                              # optional
//     - {column: temperature}                              # a number
//     - {column: site_type, kind: one_hot, categories: [north, south, east]}
//     - {column: grade, kind: ordinal, categories: [low, mid, high]}
//
// With `encoding`, clients send the raw columns instead, as a BYTES tensor of the same name with
// shape [-1, number of columns] (one string per column, in the order above). Per column:
//  - number: the text is parsed as a decimal number; "" means missing (NaN); anything else is
//    kInvalidArgument naming the row and column.
//  - one_hot: one 0/1 feature per category; "" (missing) gives NaN in every one of them; a
//    category not seen in training gives all zeros.
//  - ordinal: the category's index (0, 1, ...); "" or an unseen category gives NaN (missing).
// The widths must add up to the model input's second dimension.
#ifndef EDGELOOP_INFERENCE_ENCODING_H_
#define EDGELOOP_INFERENCE_ENCODING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "inference/tensor.h"

namespace edgeloop::inference {

class Model;

struct EncodedColumn {
  enum class Kind { kNumber, kOneHot, kOrdinal };
  std::string column;
  Kind kind = Kind::kNumber;
  std::vector<std::string> categories;  // one_hot, ordinal

  // How many model features the column becomes.
  int64_t width() const {
    return kind == Kind::kOneHot ? static_cast<int64_t>(categories.size()) : 1;
  }
};

std::string_view EncodedColumnKindName(EncodedColumn::Kind kind);  // number, one_hot, ordinal

struct InputEncoding {
  std::vector<EncodedColumn> columns;
  TensorSpec model_input;  // FP32 [-1, features]: what the model file takes

  int64_t num_features() const;
  // The BYTES [-1, columns] input that clients send.
  TensorSpec RawInputSpec() const;
  // The model.yaml `encoding:` block for these columns (flow style, quoted strings).
  std::string ToYaml() const;
};

// Encodes `raw` (BYTES [rows, columns]) into an FP32 [rows, features] tensor named like the
// model input. kInvalidArgument for a shape or datatype that does not match, or a number column
// whose text is not a number.
StatusOr<Tensor> EncodeRaw(const InputEncoding& encoding, const Tensor& raw);

// A model that encodes its one raw input and runs `inner` on the features. Outputs are the
// inner model's.
std::unique_ptr<Model> WrapWithEncoding(InputEncoding encoding, std::unique_ptr<Model> inner);

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_ENCODING_H_
