#include "inference/model.h"

#include <system_error>

#include "inference/encoding.h"
#include "inference/outlier_backend.h"
#include "inference/streaming_backend.h"
#include "inference/xgboost_backend.h"

namespace edgeloop::inference {

StatusOr<std::unique_ptr<Model>> LoadModel(const ModelConfig& config) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config.model_file, ec)) {
    return NotFoundError("model file " + config.model_file.string() + " does not exist");
  }
  if (config.encoding) {
    // The backend sees the features input; the wrapper encodes the raw one into it.
    ModelConfig inner = config;
    inner.inputs = {config.encoding->model_input};
    inner.encoding.reset();
    ASSIGN_OR_RETURN(std::unique_ptr<Model> model, LoadModel(inner));
    return WrapWithEncoding(*config.encoding, std::move(model));
  }
  if (config.framework == "xgboost") return LoadXgboostModel(config);
  if (config.framework == "outlier") return LoadOutlierModel(config);
  if (config.framework == "streaming_anomaly") return LoadStreamingModel(config);
  return UnimplementedError("unknown framework '" + config.framework +
                            "' (supported: xgboost, outlier, streaming_anomaly)");
}

}  // namespace edgeloop::inference
