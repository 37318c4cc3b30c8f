// The pipeline expression language: a small SQL-like language for filters, derived columns and
// aggregates, evaluated column at a time over lake::Batch.
//
//   temp IS NOT NULL AND temp < 500
//   temp * 9 / 5 + 32
//   coalesce(upper(trim(site)), 'UNKNOWN') || '-' || cast(line AS string)
//   date_trunc('day', ts) >= '2026-11-01'
//
// docs/pipeline.md has the grammar, the types and every function. Semantics in short:
//   - three-valued logic: NULL AND FALSE is FALSE, NULL AND TRUE is NULL, NOT NULL is NULL;
//     comparisons and arithmetic with NULL are NULL; IS [NOT] NULL is never NULL;
//   - int64 +, -, *, % stay int64 (overflow is a row error); `/` is always double; division or
//     modulo by zero is a row error;
//   - a string literal compared with a timestamp or date is parsed when the expression is
//     compiled (an unparsable literal is a compile error);
//   - cast(x AS type) that fails on a row is a row error; try_cast gives NULL instead.
// A row error makes the row's result NULL and is reported to the caller (the pipeline sends the
// row to the rejected-rows table with the error as its reason).
//
// Compile errors are kInvalidArgument and name the 1-based character position:
//   "unknown column 'tmp' at position 1 (columns: ts, machine, temp)".
#ifndef EDGELOOP_PIPELINE_EXPR_H_
#define EDGELOOP_PIPELINE_EXPR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "lake/batch.h"
#include "lake/types.h"

namespace edgeloop::pipeline {

// A row that could not be evaluated.
struct RowError {
  int64_t row = 0;
  std::string reason;
};

struct EvalContext {
  const Clock* clock = Clock::Real();  // now()
  // Receives row errors; may be null, in which case the rows just become NULL.
  std::vector<RowError>* errors = nullptr;
};

struct ExprNode;

// A compiled (parsed and type-checked) expression. Immutable and thread-safe after Compile.
class Expression {
 public:
  // Parses `text` and checks it against `schema`. With `allow_aggregates`, the aggregate
  // functions count, sum, min, max and avg may appear (see Aggregates()).
  static StatusOr<std::unique_ptr<Expression>> Compile(std::string_view text,
                                                       const lake::Schema& schema,
                                                       bool allow_aggregates = false);
  ~Expression();

  const std::string& text() const { return text_; }
  lake::Type type() const;
  // True when the expression is a bare NULL (its type is then unknown; callers reject it).
  bool is_untyped_null() const;
  // The names of the columns it reads.
  const std::vector<std::string>& columns() const { return columns_; }

  // Evaluates the expression over every row of `batch` (whose schema must be the one it was
  // compiled against) into `out` (replaced; its type is type()).
  Status Evaluate(const lake::Batch& batch, const EvalContext& context, lake::Column* out) const;

  // For aggregate expressions: the top-level call, e.g. sum(x) -> {"sum", x}; count(*) has no
  // argument. kInvalidArgument when the expression is not exactly one aggregate call.
  struct AggregateCall {
    std::string function;                  // count, sum, min, max, avg
    std::unique_ptr<Expression> argument;  // null for count(*)
  };
  StatusOr<AggregateCall> SplitAggregate() const;

 private:
  Expression() = default;
  std::string text_;
  std::shared_ptr<const ExprNode> root_;
  std::vector<std::string> columns_;
};

// Casts one text value to `type` with the lake's text forms (numbers with std::from_chars,
// booleans true/false/1/0/yes/no, timestamps and dates per lake::ParseTimestamp/ParseDate).
// Appends the value to `out` and returns true, or returns false (and appends nothing) when the
// text is not a valid value of the type. Used by sources and the cast step.
bool AppendParsed(std::string_view text, lake::Type type, lake::Column* out);

// Converts row `i` of `in` to `type` and appends it to `out`; a NULL stays NULL. Returns an
// error message (and appends NULL) when the value does not convert.
std::optional<std::string> AppendConverted(const lake::Column& in, int64_t i, lake::Type type,
                                           lake::Column* out);

}  // namespace edgeloop::pipeline

#endif  // EDGELOOP_PIPELINE_EXPR_H_
