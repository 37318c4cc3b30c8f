// The JSON encoding of Open Inference Protocol v2 inference requests and responses.
// Pure functions; thread-safe.
#ifndef EDGELOOP_SERVING_INFER_CODEC_H_
#define EDGELOOP_SERVING_INFER_CODEC_H_

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "inference/model_config.h"
#include "inference/tensor.h"

namespace edgeloop::serving {

struct InferRequest {
  std::optional<std::string> id;
  std::vector<inference::Tensor> inputs;  // one per configured input, in config order
  std::vector<int> output_indices;        // into config.outputs
};

// Parses and validates an inference request for a model with `config`: every configured input
// present once with the configured datatype, a shape the spec accepts, the same number of rows
// (at least one), and exactly as many `data` elements (flat or nested) as the shape holds;
// requested outputs exist. FP32/FP64 data may hold null, read as NaN (missing).
// kInvalidArgument names the problem; kUnimplemented for FP16/BF16 in JSON. May reserve extra
// capacity in `body` (the parser needs padding) but does not change its content.
StatusOr<InferRequest> ParseInferRequest(std::string& body, const inference::ModelConfig& config);

// {"model_name":..,"model_version":..,"id":..,"outputs":[{"name","datatype","shape","data"}]}.
// Non-finite floats are written as null.
std::string SerializeInferResponse(const std::string& model_name, const std::string& version,
                                   const std::optional<std::string>& id,
                                   const std::vector<inference::Tensor>& outputs);

}  // namespace edgeloop::serving

#endif  // EDGELOOP_SERVING_INFER_CODEC_H_
