// `edgeloop train`: trains and evaluates a model from a table of rows, writes a model version
// folder (model.yaml, the model file, card.json) that `edgeloop model package` turns into an OCI
// artifact, and optionally gates, pushes and promotes it. docs/train.md is the user's reference.
//
// The flow: read the spec's columns from a lake table at a snapshot (lake_source.h) → drop rows
// without a label → split (split.h) → fit the categorical encodings on the training rows
// (features.h) → train (XGBoost, xgboost_trainer.h; or a tabular anomaly detector) → choose the
// threshold on validation → evaluate on test, overall and per slice → reference statistics of
// the training features → evaluate the champion on the same test rows and gate (gate.h) → write
// the folder.
//
// Reproducible: the same spec, table snapshot and seeds give the same bytes in every file of the
// folder (the card's "created" is the snapshot's commit time, not the time of training).
//
// Not thread-safe per call; separate calls may run concurrently.
#ifndef EDGELOOP_TRAIN_TRAIN_H_
#define EDGELOOP_TRAIN_TRAIN_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/status.h"
#include "train/features.h"
#include "train/spec.h"
#include "train/xgboost_trainer.h"

namespace edgeloop::train {

// Where the rows came from, recorded in the card's lineage.
struct Lineage {
  std::string lake;
  std::string table;
  int64_t snapshot = 0;
  std::string snapshot_time;  // RFC 3339; becomes the card's "created"
  std::string spec_sha256;    // "sha256:<hex>" of the spec file's bytes
};

// A champion model to compare against: a model version folder (model.yaml, model file,
// card.json as `edgeloop train` writes them, or as `edgeloop model pull` leaves them).
struct ChampionSource {
  std::filesystem::path dir;
  std::string reference;  // for the card: the REF it came from, or the folder
  std::string digest;     // the manifest digest when pulled from a store
};

struct TrainOptions {
  std::filesystem::path out_dir;  // must not exist, or be empty
  std::optional<ChampionSource> champion;
  std::string code_version;
  // Called after every boosting round (may be empty).
  RoundCallback progress;
};

struct TrainResult {
  std::filesystem::path out_dir;
  nlohmann::json card;      // what card.json holds
  nlohmann::json summary;   // for --json: name, version, metrics, gate, rows, paths
  bool gate_passed = true;  // true without a gate section and without a champion
};

// Trains from the rows of `table` (already read at the lineage's snapshot) and writes the model
// folder. kInvalidArgument for data the spec cannot train on: an empty table, a missing column,
// a label with one class, non-numeric features without an encoding, a split that leaves a set
// empty. kAlreadyExists when out_dir exists and is not empty.
StatusOr<TrainResult> TrainOnTable(const TrainSpec& spec, const RawTable& table,
                                   const Lineage& lineage, const TrainOptions& options);

// The columns a champion folder's model reads (its card's encoding, else its feature_names as
// numbers), to be read along with RequiredColumns.
StatusOr<std::vector<std::pair<std::string, RawColumn::Kind>>> ChampionColumns(
    const std::filesystem::path& dir);

// The columns TrainOnTable needs from the table, and how to read each.
std::vector<std::pair<std::string, RawColumn::Kind>> RequiredColumns(const TrainSpec& spec);

// The threads training uses (trainer.params.nthread, else the number of CPUs), for the work
// around it too (reading the snapshot, reference statistics).
int TrainThreads(const TrainSpec& spec);

}  // namespace edgeloop::train

#endif  // EDGELOOP_TRAIN_TRAIN_H_
