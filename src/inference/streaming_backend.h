// The streaming anomaly backend (`framework: streaming_anomaly`): serves a streaming detector
// from src/anomaly with per-series state kept in memory and checkpointed to disk.
//
// model.yaml:
//   framework: streaming_anomaly
//   model_file: detector.yaml       # flat map of detector parameters (see docs/anomaly.md)
//   inputs:
//     - {name: timestamp, datatype: INT64, shape: [-1]}   # epoch milliseconds
//     - {name: value, datatype: FP64, shape: [-1]}
//     - {name: series, datatype: BYTES, shape: [-1]}      # optional: one series "default"
//   outputs:
//     - {name: score, datatype: FP64, shape: [-1]}        # anomaly score in [0, 1]
//     - {name: anomaly, datatype: BOOL, shape: [-1]}      # score >= threshold
//   parameters:                     # override detector.yaml; plus the serving settings:
//     state_dir: /var/lib/edgeloop/anomaly   # default $EDGELOOP_STATE_DIR, else ./edgeloop-state
//     max_series: 10000             # least recently used series beyond this are evicted
//     checkpoint_points: 1000       # write a checkpoint after this many new points ...
//     checkpoint_interval_s: 10     # ... or this many seconds, whichever comes first
//
// Rows of a request are processed in order; a request is applied all-or-nothing (a NaN or
// infinite value, an out-of-order timestamp or a duplicate timestamp with another value fails
// it with kInvalidArgument naming the row). Checkpoints go to <state_dir>/<model>/<version>.ckpt,
// written atomically (temp file, fsync, rename, fsync of the folder) on the request that crosses
// a trigger and when the model is unloaded; on load a missing checkpoint starts fresh, and a
// corrupt one or one written under other detector options starts fresh with a warning.
#ifndef EDGELOOP_INFERENCE_STREAMING_BACKEND_H_
#define EDGELOOP_INFERENCE_STREAMING_BACKEND_H_

#include <memory>

#include "common/clock.h"
#include "common/status.h"
#include "inference/model.h"
#include "inference/model_config.h"

namespace edgeloop::inference {

// Loads a streaming anomaly model. kInvalidArgument for inputs/outputs that do not match the
// contract above or bad parameters (naming them), kNotFound when model_file is missing.
// `clock` (not owned, outlives the model) times the checkpoints; nullptr = the real clock.
StatusOr<std::unique_ptr<Model>> LoadStreamingModel(const ModelConfig& config,
                                                    Clock* clock = nullptr);

}  // namespace edgeloop::inference

#endif  // EDGELOOP_INFERENCE_STREAMING_BACKEND_H_
