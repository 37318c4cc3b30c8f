// Steps: the transformations between a source and the target table (select, rename, cast,
// filter, derive, dedupe, aggregate), planned against their input schema so that unknown
// columns, bad expressions and type errors are found before any row is read.
#ifndef EDGELOOP_PIPELINE_STEPS_H_
#define EDGELOOP_PIPELINE_STEPS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "lake/batch.h"
#include "pipeline/source.h"
#include "pipeline/spec.h"

namespace edgeloop::pipeline {

// Counters of what the steps did with rows (besides passing them on).
struct StepCounters {
  int64_t filtered = 0;      // rows a filter did not keep (false or NULL)
  int64_t deduplicated = 0;  // rows a dedupe replaced or dropped
  int64_t aggregated = 0;    // input rows folded into aggregate groups
};

class Step;

// The planned steps of a pipeline, applied in order. It is a SourceSink: batches pushed into
// it flow through every step into `next`; rows a step cannot process (a failed cast, a row
// error in an expression) go to next->Rejected with the reason. Blocking steps (dedupe,
// aggregate) hold rows until Finish(). Not thread-safe.
class StepChain final : public SourceSink {
 public:
  // Plans `steps` against `input`. kInvalidArgument naming the step and its line for an unknown
  // column, a bad expression (with its position) or a type error. `clock` drives now().
  static StatusOr<std::unique_ptr<StepChain>> Create(const std::vector<StepSpec>& steps,
                                                     std::shared_ptr<const lake::Schema> input,
                                                     const Clock* clock);
  ~StepChain() override;

  const std::shared_ptr<const lake::Schema>& output_schema() const { return output_; }
  const StepCounters& counters() const { return counters_; }

  // Sets where rows go; must be called before the first Rows().
  void SetNext(SourceSink* next) { next_ = next; }

  Status Rows(Chunk chunk) override;
  Status Rejected(Reject reject) override;
  void Progress(int64_t bytes_read) override;
  // Flushes blocking steps.
  Status Finish();

 private:
  StepChain() = default;
  Status RunFrom(size_t step, Chunk chunk);

  std::vector<std::unique_ptr<Step>> steps_;
  std::shared_ptr<const lake::Schema> output_;
  SourceSink* next_ = nullptr;
  StepCounters counters_;
};

// Row `i` of `batch` as one CSV line (for the raw text of rows rejected by a step).
std::string RowAsCsv(const lake::Batch& batch, int64_t i);

// Keeps the rows of `chunk` whose `keep[i]` is non-zero.
void KeepRows(Chunk* chunk, const std::vector<uint8_t>& keep);

}  // namespace edgeloop::pipeline

#endif  // EDGELOOP_PIPELINE_STEPS_H_
