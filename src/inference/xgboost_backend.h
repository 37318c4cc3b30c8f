// The XGBoost backends: `native` (the built-in tree-ensemble evaluator, the default) and `capi`
// (XGBoost's own C API, kept as the reference).
#ifndef EDGELOOP_INFERENCE_XGBOOST_BACKEND_H_
#define EDGELOOP_INFERENCE_XGBOOST_BACKEND_H_

#include <memory>

#include "common/status.h"
#include "inference/model.h"
#include "inference/model_config.h"

namespace edgeloop::inference {

// Loads an XGBoost model saved as JSON (.json) or UBJSON (.ubj) with the backend that
// `config.backend` names ("" or "native", or "capi"). See model.h LoadModel for the contract.
StatusOr<std::unique_ptr<Model>> LoadXgboostModel(const ModelConfig& config);

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_XGBOOST_BACKEND_H_
