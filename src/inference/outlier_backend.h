// The `outlier` framework: serves a tabular anomaly detector (Isolation Forest or ECOD, see
// anomaly/tabular.h) fitted by `edgeloop train`.
//
// model.yaml:
//   framework: outlier
//   model_file: detector.json            # what TabularDetector::Serialize wrote
//   inputs:  [{name: features, datatype: FP32, shape: [-1, N]}]   # N = the detector's features
//   outputs: [{name: score, datatype: FP64, shape: [-1], kind: prediction},
//             {name: anomaly, datatype: BOOL, shape: [-1]}]
//   parameters: {threshold: "0.6"}       # verdict: score >= threshold
//
// Outputs, any number and order:
//  - the score (kind `prediction`, or no kind with datatype FP64 or FP32): in [0, 1], higher is
//    more anomalous; shape [-1] or [-1, 1].
//  - the verdict (kind `anomaly`, or no kind with datatype BOOL): BOOL, true when
//    score >= parameters.threshold, which is then required (a number in [0, 1]).
// Missing values (NaN, `null` in OIP JSON) and infinities follow the detector's rule
// (anomaly/tabular.h): NaN scores as the training median, infinities as extreme values.
#ifndef EDGELOOP_INFERENCE_OUTLIER_BACKEND_H_
#define EDGELOOP_INFERENCE_OUTLIER_BACKEND_H_

#include <memory>

#include "common/status.h"
#include "inference/model.h"
#include "inference/model_config.h"

namespace edgeloop::inference {

// Loads `config.model_file` as a tabular detector and checks model.yaml against it. See model.h
// LoadModel for the contract; a model file that is not a valid detector is kInvalidArgument or
// kDataLoss (with the file name), a declaration that does not fit it kInvalidArgument.
StatusOr<std::unique_ptr<Model>> LoadOutlierModel(const ModelConfig& config);

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_OUTLIER_BACKEND_H_
