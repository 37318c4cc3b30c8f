// ModelConfig: what a model version's `model.yaml` declares.
//
// A model repository holds DIR/<model>/<version>/model.yaml plus the model file. Example:
//
//   framework: xgboost            # required: which backend family loads the file
//   backend: native               # optional; xgboost: native (default) | capi
//   model_file: model.json        # required; relative to the version directory
//   inputs:
//     - {name: features, datatype: FP32, shape: [-1, 20]}
//   outputs:
//     - {name: probability, datatype: FP32, shape: [-1], kind: prediction}
//     - {name: contributions, datatype: FP32, shape: [-1, 21], kind: contributions}
//   batching:                     # optional; absent = every request runs on its own
//     max_batch_size: 64          # rows per batch
//     max_queue_delay_us: 100     # how long the first request may wait for company
//     max_queue_size: 1024        # requests waiting; more are refused with 503
//   parameters: {nthread: 1}      # optional, backend specific (strings, numbers, bools)
//   feature_names: [f0, ...]      # optional, for people and explanations
//   encoding: [...]               # optional: raw categorical columns in (encoding.h)
//
// The first dimension of every input and output is the batch (row) dimension and must be -1.
#ifndef EDGELOOP_INFERENCE_MODEL_CONFIG_H_
#define EDGELOOP_INFERENCE_MODEL_CONFIG_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "inference/encoding.h"
#include "inference/tensor.h"

namespace edgeloop::inference {

struct BatchingConfig {
  // Rows per batch. 0 disables dynamic batching: each request runs by itself, on the thread
  // that received it.
  int64_t max_batch_size = 0;
  // How long the first request of a batch waits for others before the batch runs anyway. 0 runs
  // at once with whatever has queued up while the model was busy.
  int64_t max_queue_delay_us = 0;
  // Requests allowed to wait; beyond this the server answers 503 with Retry-After.
  int64_t max_queue_size = 1024;
};

struct ModelConfig {
  std::string name;     // the model's folder name
  int64_t version = 0;  // the version folder's number
  std::filesystem::path version_dir;

  std::string framework;
  std::string backend;               // empty: the framework's default backend
  std::filesystem::path model_file;  // absolute (version_dir / model_file as written)
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  BatchingConfig batching;
  bool batching_enabled() const { return batching.max_batch_size > 0; }
  // Backend-specific settings, as strings ("1", "true", "0.5").
  std::map<std::string, std::string> parameters;
  std::vector<std::string> feature_names;
  // With an `encoding` section: `inputs` holds the raw BYTES input that clients send, and
  // `encoding->model_input` the FP32 features input that the model file takes.
  std::optional<InputEncoding> encoding;

  // Index of the input/output named `name`, or -1.
  int InputIndex(std::string_view name) const;
  int OutputIndex(std::string_view name) const;
};

// Whether an output is returned when a request does not list the outputs it wants. Outputs of
// kind "contributions" (explanations, costly) are returned only when asked for by name.
bool IsDefaultOutput(const TensorSpec& spec);

// Parses `yaml_text` (the content of model.yaml) for model `name`, version `version`, stored in
// `version_dir`. Fails with kInvalidArgument naming the offending field when the file is not
// valid YAML, a required field is missing, a datatype or shape is invalid, names repeat, the
// model file escapes the version directory, or the batching numbers are out of range.
StatusOr<ModelConfig> ParseModelConfig(std::string_view yaml_text, std::string name,
                                       int64_t version, std::filesystem::path version_dir);

// Reads and parses `version_dir`/model.yaml.
StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& version_dir, std::string name,
                                      int64_t version);

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_MODEL_CONFIG_H_
