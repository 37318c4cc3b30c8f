// Model: a loaded, ready-to-run model version, and LoadModel, which picks the backend.
#ifndef EDGELOOP_INFERENCE_MODEL_H_
#define EDGELOOP_INFERENCE_MODEL_H_

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "inference/model_config.h"
#include "inference/tensor.h"

namespace edgeloop::inference {

// A model loaded into memory by a backend. Immutable after loading; Predict is thread-safe and
// may run concurrently on several threads.
class Model {
 public:
  virtual ~Model() = default;

  // The platform name reported in model metadata, e.g. "xgboost_native".
  virtual std::string_view platform() const = 0;

  // True when Predict learns from what it sees (streaming detectors keep per-series state):
  // callers must then send only real data, never synthetic warm-up rows.
  virtual bool stateful() const { return false; }

  // Runs the model on one batch.
  //  - `inputs`: one tensor per configured input, in the order of ModelConfig::inputs, each with
  //    the configured datatype and a shape the spec accepts; every input has the same first
  //    (row) dimension. The serving layer validates this before calling.
  //  - `output_indices`: which outputs to compute, as indices into ModelConfig::outputs (no
  //    duplicates). Expensive outputs (e.g. contributions) are computed only when asked for.
  //  - `outputs`: receives one tensor per index, in the same order, named as configured.
  // Returns kInvalidArgument for input values the model cannot take, kInternal for backend
  // failures; `outputs` is unspecified on error.
  virtual Status Predict(std::span<const Tensor> inputs, std::span<const int> output_indices,
                         std::vector<Tensor>* outputs) const = 0;
};

// Loads the model described by `config` with the backend that `config.framework` and
// `config.backend` name. Validates the model file against the declared inputs and outputs
// (feature count, output shapes and kinds) and fails with kInvalidArgument naming the mismatch.
// kNotFound when the model file is missing, kUnimplemented for an unknown framework or a model
// the chosen backend cannot run (e.g. categorical splits in the native evaluator),
// kInvalidArgument for an unknown backend name.
StatusOr<std::unique_ptr<Model>> LoadModel(const ModelConfig& config);

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_MODEL_H_
