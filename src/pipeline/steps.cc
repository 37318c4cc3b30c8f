#include "pipeline/steps.h"

#include <cstring>
#include <functional>
#include <limits>
#include <unordered_map>
#include <utility>

#include "lake/csv.h"
#include "pipeline/expr.h"

namespace edgeloop::pipeline {

using lake::Batch;
using lake::Column;
using lake::Field;
using lake::Schema;
using lake::Type;

std::string RowAsCsv(const Batch& batch, int64_t i) {
  std::string out;
  for (size_t c = 0; c < batch.columns().size(); ++c) {
    if (c > 0) out += ',';
    const Column& column = batch.column(c);
    if (column.IsNull(i)) continue;
    lake::AppendCsvField(&out, lake::FormatValue(column, i), column.type() == Type::kString);
  }
  return out;
}

void KeepRows(Chunk* chunk, const std::vector<uint8_t>& keep) {
  const int64_t n = chunk->batch.num_rows();
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) kept += keep[i] != 0;
  if (kept == n) return;
  Batch out(chunk->batch.schema());
  std::vector<int64_t> lines;
  lines.reserve(kept);
  for (size_t c = 0; c < out.columns().size(); ++c) {
    Column& dst = out.column(c);
    const Column& src = chunk->batch.column(c);
    dst.Reserve(kept);
    for (int64_t i = 0; i < n; ++i) {
      if (keep[i]) dst.AppendFrom(src, i);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (keep[i]) lines.push_back(chunk->lines[i]);
  }
  chunk->batch = std::move(out);
  chunk->lines = std::move(lines);
}

namespace {

std::shared_ptr<const Schema> MakeSchema(std::vector<Field> fields) {
  auto schema = std::make_shared<Schema>();
  int32_t id = 1;
  for (Field& f : fields) {
    f.id = id++;
    schema->fields.push_back(std::move(f));
  }
  return schema;
}

std::string ColumnList(const Schema& schema) {
  std::string names;
  for (const Field& f : schema.fields) names += (names.empty() ? "" : ", ") + f.name;
  return names;
}

// Rejects the rows named in `errors` (the first reason per row) and removes them from `chunk`.
Status RejectRowErrors(Chunk* chunk, const std::vector<RowError>& errors, SourceSink* sink) {
  if (errors.empty()) return Status::Ok();
  std::vector<uint8_t> keep(chunk->batch.num_rows(), 1);
  for (const RowError& e : errors) {
    if (!keep[e.row]) continue;
    keep[e.row] = 0;
    RETURN_IF_ERROR(sink->Rejected(
        {chunk->origin, chunk->lines[e.row], RowAsCsv(chunk->batch, e.row), e.reason}));
  }
  KeepRows(chunk, keep);
  return Status::Ok();
}

// Appends a key's bytes for hashing: a type-tagged, unambiguous encoding of one value.
void AppendKey(std::string* key, const Column& c, int64_t i) {
  if (c.IsNull(i)) {
    key->push_back('\0');
    return;
  }
  key->push_back('\1');
  if (c.type() == Type::kString) {
    const std::string_view s = c.GetString(i);
    const uint64_t size = s.size();
    key->append(reinterpret_cast<const char*>(&size), sizeof(size));
    key->append(s);
  } else if (c.type() == Type::kDouble) {
    double d = c.GetDouble(i);
    if (d == 0) d = 0;  // -0.0 and 0.0 are one key
    key->append(reinterpret_cast<const char*>(&d), sizeof(d));
  } else {
    const int64_t v = c.GetInt(i);
    key->append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
}

// -1, 0, 1; NULL sorts first.
int CompareValues(const Column& a, int64_t i, const Column& b, int64_t j) {
  const bool an = a.IsNull(i), bn = b.IsNull(j);
  if (an || bn) return an == bn ? 0 : (an ? -1 : 1);
  if (a.type() == Type::kString) {
    const int r = a.GetString(i).compare(b.GetString(j));
    return (r > 0) - (r < 0);
  }
  if (a.type() == Type::kDouble) {
    const double x = a.GetDouble(i), y = b.GetDouble(j);
    return (x > y) - (x < y);
  }
  const int64_t x = a.GetInt(i), y = b.GetInt(j);
  return (x > y) - (x < y);
}

}  // namespace

class Step {
 public:
  virtual ~Step() = default;
  const std::shared_ptr<const Schema>& output() const { return output_; }
  // Transforms `chunk` in place (a blocking step takes its rows and leaves it empty).
  virtual Status Apply(Chunk* chunk, SourceSink* rejects, StepCounters* counters) = 0;
  virtual bool blocking() const { return false; }
  // For blocking steps: hands out what they hold.
  virtual Status Drain(const std::function<Status(Chunk)>& /*emit*/) { return Status::Ok(); }

 protected:
  std::shared_ptr<const Schema> output_;
};

namespace {

class SelectStep final : public Step {
 public:
  static StatusOr<std::unique_ptr<Step>> Create(const StepSpec& spec, const Schema& in) {
    auto step = std::make_unique<SelectStep>();
    std::vector<Field> fields;
    for (const std::string& name : spec.columns) {
      const int index = in.IndexOf(name);
      if (index < 0) {
        return InvalidArgumentError("select: unknown column '" + name +
                                    "' (columns: " + ColumnList(in) + ")");
      }
      for (const Field& f : fields) {
        if (f.name == name) return InvalidArgumentError("select names '" + name + "' twice");
      }
      step->indexes_.push_back(index);
      fields.push_back(in.fields[index]);
    }
    step->output_ = MakeSchema(std::move(fields));
    return std::unique_ptr<Step>(std::move(step));
  }

  Status Apply(Chunk* chunk, SourceSink*, StepCounters*) override {
    Batch out(output_);
    for (size_t c = 0; c < indexes_.size(); ++c) {
      out.column(c) = std::move(chunk->batch.column(indexes_[c]));
    }
    chunk->batch = std::move(out);
    return Status::Ok();
  }

 private:
  std::vector<int> indexes_;
};

class RenameStep final : public Step {
 public:
  static StatusOr<std::unique_ptr<Step>> Create(const StepSpec& spec, const Schema& in) {
    auto step = std::make_unique<RenameStep>();
    std::vector<Field> fields = in.fields;
    for (const auto& [from, to] : spec.pairs) {
      const int index = in.IndexOf(from);
      if (index < 0) {
        return InvalidArgumentError("rename: unknown column '" + from +
                                    "' (columns: " + ColumnList(in) + ")");
      }
      fields[index].name = to;
    }
    auto schema = std::make_shared<Schema>();
    schema->fields = fields;
    for (size_t i = 0; i < fields.size(); ++i) {
      for (size_t j = i + 1; j < fields.size(); ++j) {
        if (fields[i].name == fields[j].name) {
          return InvalidArgumentError("rename: two columns would be named '" + fields[i].name +
                                      "'");
        }
      }
    }
    RETURN_IF_ERROR(lake::ValidateSchema(*schema).WithContext("rename"));
    step->output_ = MakeSchema(std::move(fields));
    return std::unique_ptr<Step>(std::move(step));
  }

  Status Apply(Chunk* chunk, SourceSink*, StepCounters*) override {
    Batch out(output_);
    for (size_t c = 0; c < out.columns().size(); ++c) {
      out.column(c) = std::move(chunk->batch.column(c));
    }
    chunk->batch = std::move(out);
    return Status::Ok();
  }
};

class CastStep final : public Step {
 public:
  static StatusOr<std::unique_ptr<Step>> Create(const StepSpec& spec, const Schema& in) {
    auto step = std::make_unique<CastStep>();
    std::vector<Field> fields = in.fields;
    for (const auto& [column, type_name] : spec.pairs) {
      const int index = in.IndexOf(column);
      if (index < 0) {
        return InvalidArgumentError("cast: unknown column '" + column +
                                    "' (columns: " + ColumnList(in) + ")");
      }
      ASSIGN_OR_RETURN(Type type, lake::ParseType(type_name));
      fields[index].type = type;
      step->casts_.emplace_back(index, type);
    }
    step->output_ = MakeSchema(std::move(fields));
    return std::unique_ptr<Step>(std::move(step));
  }

  Status Apply(Chunk* chunk, SourceSink* rejects, StepCounters*) override {
    const int64_t n = chunk->batch.num_rows();
    std::vector<RowError> errors;
    std::vector<Column> converted;
    for (const auto& [index, type] : casts_) {
      const Column& in = chunk->batch.column(index);
      Column out(type);
      if (in.type() == type) {
        converted.push_back(in);
        continue;
      }
      out.Reserve(n);
      for (int64_t i = 0; i < n; ++i) {
        if (std::optional<std::string> error = AppendConverted(in, i, type, &out)) {
          errors.push_back({i, "column '" + output_->fields[index].name + "': " + *error});
        }
      }
      converted.push_back(std::move(out));
    }
    // Reject against the row as it came in (the text that failed to convert).
    if (!errors.empty()) {
      std::vector<uint8_t> keep(n, 1);
      for (const RowError& e : errors) {
        if (!keep[e.row]) continue;
        keep[e.row] = 0;
        RETURN_IF_ERROR(rejects->Rejected(
            {chunk->origin, chunk->lines[e.row], RowAsCsv(chunk->batch, e.row), e.reason}));
      }
      Batch out(output_);
      for (size_t c = 0; c < out.columns().size(); ++c) {
        const Column* src = &chunk->batch.column(c);
        for (size_t k = 0; k < casts_.size(); ++k) {
          if (casts_[k].first == static_cast<int>(c)) src = &converted[k];
        }
        out.column(c) = *src;
      }
      chunk->batch = std::move(out);
      KeepRows(chunk, keep);
      return Status::Ok();
    }
    Batch out(output_);
    for (size_t c = 0; c < out.columns().size(); ++c) {
      out.column(c) = std::move(chunk->batch.column(c));
    }
    for (size_t k = 0; k < casts_.size(); ++k) {
      out.column(casts_[k].first) = std::move(converted[k]);
    }
    chunk->batch = std::move(out);
    return Status::Ok();
  }

 private:
  std::vector<std::pair<int, Type>> casts_;
};

class FilterStep final : public Step {
 public:
  static StatusOr<std::unique_ptr<Step>> Create(const StepSpec& spec,
                                                std::shared_ptr<const Schema> in,
                                                const Clock* clock) {
    auto step = std::make_unique<FilterStep>();
    ASSIGN_OR_RETURN(step->expr_, Expression::Compile(spec.expression, *in));
    if (step->expr_->is_untyped_null() || step->expr_->type() != Type::kBool) {
      return InvalidArgumentError("filter: type error: the condition is " +
                                  std::string(step->expr_->is_untyped_null()
                                                  ? "NULL"
                                                  : lake::TypeName(step->expr_->type())) +
                                  ", not bool");
    }
    step->output_ = std::move(in);
    step->clock_ = clock;
    return std::unique_ptr<Step>(std::move(step));
  }

  Status Apply(Chunk* chunk, SourceSink* rejects, StepCounters* counters) override {
    std::vector<RowError> errors;
    Column result;
    RETURN_IF_ERROR(expr_->Evaluate(chunk->batch, {clock_, &errors}, &result));
    const int64_t n = chunk->batch.num_rows();
    std::vector<uint8_t> keep(n);
    for (int64_t i = 0; i < n; ++i) keep[i] = result.valid()[i] && result.ints()[i];
    for (const RowError& e : errors) {
      if (keep[e.row] == 2) continue;
      keep[e.row] = 2;  // rejected, not filtered
      RETURN_IF_ERROR(rejects->Rejected(
          {chunk->origin, chunk->lines[e.row], RowAsCsv(chunk->batch, e.row), e.reason}));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (keep[i] == 0) ++counters->filtered;
      if (keep[i] == 2) keep[i] = 0;
    }
    KeepRows(chunk, keep);
    return Status::Ok();
  }

 private:
  std::unique_ptr<Expression> expr_;
  const Clock* clock_ = nullptr;
};

class DeriveStep final : public Step {
 public:
  static StatusOr<std::unique_ptr<Step>> Create(const StepSpec& spec,
                                                std::shared_ptr<const Schema> in,
                                                const Clock* clock) {
    auto step = std::make_unique<DeriveStep>();
    step->clock_ = clock;
    std::shared_ptr<const Schema> schema = std::move(in);
    for (const auto& [name, text] : spec.pairs) {
      StatusOr<std::unique_ptr<Expression>> expr = Expression::Compile(text, *schema);
      if (!expr.ok()) return expr.status().WithContext("derive '" + name + "'");
      if ((*expr)->is_untyped_null()) {
        return InvalidArgumentError("derive '" + name +
                                    "': the type of NULL is unknown; write cast(NULL AS type)");
      }
      std::vector<Field> fields = schema->fields;
      const int index = schema->IndexOf(name);
      if (index >= 0) {
        fields[index].type = (*expr)->type();
      } else {
        fields.push_back({0, name, (*expr)->type()});
      }
      auto next = MakeSchema(std::move(fields));
      RETURN_IF_ERROR(lake::ValidateSchema(*next).WithContext("derive '" + name + "'"));
      step->derived_.push_back({std::move(*expr), index, schema, next});
      schema = std::move(next);
    }
    step->output_ = std::move(schema);
    return std::unique_ptr<Step>(std::move(step));
  }

  Status Apply(Chunk* chunk, SourceSink* rejects, StepCounters*) override {
    std::vector<RowError> errors;
    for (Derived& d : derived_) {
      Column result;
      RETURN_IF_ERROR(d.expr->Evaluate(chunk->batch, {clock_, &errors}, &result));
      Batch out(d.output);
      for (size_t c = 0; c < chunk->batch.columns().size(); ++c) {
        out.column(c) = std::move(chunk->batch.column(c));
      }
      out.column(d.index >= 0 ? d.index : out.columns().size() - 1) = std::move(result);
      chunk->batch = std::move(out);
    }
    return RejectRowErrors(chunk, errors, rejects);
  }

 private:
  struct Derived {
    std::unique_ptr<Expression> expr;
    int index;  // replaced column, or -1 for a new last column
    std::shared_ptr<const Schema> input;
    std::shared_ptr<const Schema> output;
  };
  std::vector<Derived> derived_;
  const Clock* clock_ = nullptr;
};

// Bytes a hash table entry costs besides its key's characters (node, bucket, value), for the
// memory limit of blocking steps.
constexpr int64_t kHashEntryBytes = 64;

Status OverMemoryLimit(const char* step, int64_t limit_mb, int64_t bytes, int64_t entries,
                       const char* what, int64_t rows) {
  return ResourceExhaustedError(
      std::string(step) + " holds about " + std::to_string(bytes >> 20) + " MiB (" +
      std::to_string(entries) + " " + what + " from " + std::to_string(rows) +
      " rows), more than its max_memory_mb (" + std::to_string(limit_mb) +
      "); raise max_memory_mb or load the input in parts (e.g. one file or day at a time)");
}

// Holds one row per key in memory: first seen, last seen, or the one with the largest
// order_by (ties go to the later row). Replaced rows are dropped from memory once they
// outnumber the kept ones, so memory follows the number of distinct keys; above max_memory_mb
// the run fails (OverMemoryLimit).
class DedupeStep final : public Step {
 public:
  static StatusOr<std::unique_ptr<Step>> Create(const StepSpec& spec,
                                                std::shared_ptr<const Schema> in) {
    auto step = std::make_unique<DedupeStep>();
    for (const std::string& k : spec.key) {
      const int index = in->IndexOf(k);
      if (index < 0) {
        return InvalidArgumentError("dedupe: unknown key column '" + k +
                                    "' (columns: " + ColumnList(*in) + ")");
      }
      step->key_.push_back(index);
    }
    if (!spec.order_by.empty()) {
      step->order_by_ = in->IndexOf(spec.order_by);
      if (step->order_by_ < 0) {
        return InvalidArgumentError("dedupe: unknown order_by column '" + spec.order_by +
                                    "' (columns: " + ColumnList(*in) + ")");
      }
    }
    step->keep_ = spec.keep;
    step->limit_mb_ = spec.max_memory_mb;
    step->rows_ = Batch(in);
    step->output_ = std::move(in);
    return std::unique_ptr<Step>(std::move(step));
  }

  // What the step holds, approximately: rows, keys and per-row bookkeeping.
  int64_t MemoryBytes() const {
    return rows_.ByteSize() + key_bytes_ + static_cast<int64_t>(index_.size()) * kHashEntryBytes +
           static_cast<int64_t>(lines_.size()) * (8 + 4 + 1);
  }

  bool blocking() const override { return true; }

  Status Apply(Chunk* chunk, SourceSink*, StepCounters* counters) override {
    const int64_t n = chunk->batch.num_rows();
    int32_t origin = -1;
    for (size_t i = 0; i < origins_.size(); ++i) {
      if (origins_[i] == chunk->origin) origin = static_cast<int32_t>(i);
    }
    if (origin < 0) {
      origin = static_cast<int32_t>(origins_.size());
      origins_.push_back(chunk->origin);
    }
    std::string key;
    for (int64_t i = 0; i < n; ++i) {
      key.clear();
      for (int k : key_) AppendKey(&key, chunk->batch.column(k), i);
      auto [it, inserted] = index_.try_emplace(key, rows_.num_rows());
      if (inserted) key_bytes_ += static_cast<int64_t>(key.size());
      if (!inserted) {
        ++counters->deduplicated;
        const int64_t old = it->second;
        bool replace = keep_ == "last";
        if (keep_ == "latest") {
          replace =
              CompareValues(chunk->batch.column(order_by_), i, rows_.column(order_by_), old) >= 0;
        }
        if (!replace) continue;
        live_[old] = 0;
        it->second = rows_.num_rows();
      }
      rows_.AppendRow(chunk->batch, i);
      lines_.push_back(chunk->lines[i]);
      origin_of_.push_back(origin);
      live_.push_back(1);
    }
    rows_seen_ += n;
    chunk->batch.Clear();
    chunk->lines.clear();
    const int64_t replaced = rows_.num_rows() - static_cast<int64_t>(index_.size());
    if (replaced >= 4096 && replaced > static_cast<int64_t>(index_.size())) DropReplaced();
    const int64_t bytes = MemoryBytes();
    if (bytes > (limit_mb_ << 20)) {
      return OverMemoryLimit("dedupe", limit_mb_, bytes, static_cast<int64_t>(index_.size()),
                             "distinct keys", rows_seen_);
    }
    return Status::Ok();
  }

  Status Drain(const std::function<Status(Chunk)>& emit) override {
    Chunk out;
    auto flush = [&]() -> Status {
      if (out.batch.num_rows() == 0) return Status::Ok();
      Chunk done = std::move(out);
      out = Chunk();
      return emit(std::move(done));
    };
    int32_t current = -1;
    for (int64_t i = 0; i < rows_.num_rows(); ++i) {
      if (!live_[i]) continue;
      if (origin_of_[i] != current || out.batch.num_rows() >= 65536) {
        RETURN_IF_ERROR(flush());
        current = origin_of_[i];
        out.batch = Batch(output_);
        out.origin = origins_[current];
      }
      out.batch.AppendRow(rows_, i);
      out.lines.push_back(lines_[i]);
    }
    RETURN_IF_ERROR(flush());
    rows_.Clear();
    index_.clear();
    return Status::Ok();
  }

 private:
  std::vector<int> key_;
  int order_by_ = -1;
  std::string keep_;
  Batch rows_;
  std::vector<int64_t> lines_;
  std::vector<int32_t> origin_of_;
  // Keeps only the live rows (in their order, so the output is the same) and renumbers the
  // index.
  void DropReplaced() {
    Batch kept(rows_.schema());
    std::vector<int64_t> lines;
    std::vector<int32_t> origin_of;
    std::vector<int64_t> moved_to(static_cast<size_t>(rows_.num_rows()), -1);
    lines.reserve(index_.size());
    origin_of.reserve(index_.size());
    for (int64_t i = 0; i < rows_.num_rows(); ++i) {
      if (!live_[i]) continue;
      moved_to[i] = kept.num_rows();
      kept.AppendRow(rows_, i);
      lines.push_back(lines_[i]);
      origin_of.push_back(origin_of_[i]);
    }
    for (auto& [key, row] : index_) row = moved_to[row];
    rows_ = std::move(kept);
    lines_ = std::move(lines);
    origin_of_ = std::move(origin_of);
    live_.assign(static_cast<size_t>(rows_.num_rows()), 1);
  }

  std::vector<uint8_t> live_;
  std::vector<std::string> origins_;
  std::unordered_map<std::string, int64_t> index_;
  int64_t key_bytes_ = 0;
  int64_t rows_seen_ = 0;
  int64_t limit_mb_ = 1024;
};

// GROUP BY with count, sum, min, max and avg; holds one state per group. Above max_memory_mb
// (the groups' keys and states) the run fails (OverMemoryLimit).
class AggregateStep final : public Step {
 public:
  static StatusOr<std::unique_ptr<Step>> Create(const StepSpec& spec,
                                                std::shared_ptr<const Schema> in,
                                                const Clock* clock) {
    auto step = std::make_unique<AggregateStep>();
    step->clock_ = clock;
    std::vector<Field> fields;
    for (const std::string& k : spec.key) {
      const int index = in->IndexOf(k);
      if (index < 0) {
        return InvalidArgumentError("aggregate: unknown group_by column '" + k +
                                    "' (columns: " + ColumnList(*in) + ")");
      }
      step->group_.push_back(index);
      fields.push_back(in->fields[index]);
    }
    for (const auto& [name, text] : spec.pairs) {
      StatusOr<std::unique_ptr<Expression>> expr = Expression::Compile(text, *in, true);
      if (!expr.ok()) return expr.status().WithContext("aggregate '" + name + "'");
      StatusOr<Expression::AggregateCall> call = (*expr)->SplitAggregate();
      if (!call.ok()) return call.status().WithContext("aggregate '" + name + "'");
      Agg agg;
      agg.function = call->function;
      agg.type = (*expr)->type();
      agg.argument = std::move(call->argument);
      agg.name = name;
      for (const Field& f : fields) {
        if (f.name == name) {
          return InvalidArgumentError("aggregate: two output columns named '" + name + "'");
        }
      }
      fields.push_back({0, name, agg.type});
      step->aggs_.push_back(std::move(agg));
    }
    step->limit_mb_ = spec.max_memory_mb;
    step->keys_ =
        Batch(MakeSchema(std::vector<Field>(fields.begin(), fields.begin() + step->group_.size())));
    step->output_ = MakeSchema(std::move(fields));
    return std::unique_ptr<Step>(std::move(step));
  }

  bool blocking() const override { return true; }

  Status Apply(Chunk* chunk, SourceSink* rejects, StepCounters* counters) override {
    std::vector<RowError> errors;
    std::vector<Column> args(aggs_.size());
    for (size_t a = 0; a < aggs_.size(); ++a) {
      if (aggs_[a].argument) {
        RETURN_IF_ERROR(aggs_[a].argument->Evaluate(chunk->batch, {clock_, &errors}, &args[a]));
      }
    }
    if (!errors.empty()) {
      // Drop the failing rows (as rejects) and evaluate again on the rest.
      RETURN_IF_ERROR(RejectRowErrors(chunk, errors, rejects));
      errors.clear();
      for (size_t a = 0; a < aggs_.size(); ++a) {
        if (aggs_[a].argument) {
          RETURN_IF_ERROR(aggs_[a].argument->Evaluate(chunk->batch, {clock_, &errors}, &args[a]));
        }
      }
    }
    const int64_t n = chunk->batch.num_rows();
    std::string key;
    for (int64_t i = 0; i < n; ++i) {
      key.clear();
      for (int k : group_) AppendKey(&key, chunk->batch.column(k), i);
      auto [it, inserted] = groups_.try_emplace(key, static_cast<int64_t>(states_.size()));
      if (inserted) {
        for (size_t k = 0; k < group_.size(); ++k) {
          keys_.column(k).AppendFrom(chunk->batch.column(group_[k]), i);
        }
        states_.emplace_back(aggs_.size());
        key_bytes_ += static_cast<int64_t>(key.size());
      }
      std::vector<State>& state = states_[it->second];
      for (size_t a = 0; a < aggs_.size(); ++a) {
        const size_t before = state[a].s.size();
        RETURN_IF_ERROR(Accumulate(aggs_[a], args[a], i, &state[a]));
        if (state[a].s.size() > before) state_string_bytes_ += state[a].s.size() - before;
      }
      ++counters->aggregated;
    }
    rows_seen_ += n;
    chunk->batch.Clear();
    chunk->lines.clear();
    const int64_t bytes = MemoryBytes();
    if (bytes > (limit_mb_ << 20)) {
      return OverMemoryLimit("aggregate", limit_mb_, bytes, static_cast<int64_t>(states_.size()),
                             "groups", rows_seen_);
    }
    return Status::Ok();
  }

  // What the step holds, approximately: the groups' keys and states.
  int64_t MemoryBytes() const {
    const int64_t per_group =
        kHashEntryBytes + 24 + static_cast<int64_t>(aggs_.size() * sizeof(State));
    return keys_.ByteSize() + key_bytes_ + state_string_bytes_ +
           static_cast<int64_t>(states_.size()) * per_group;
  }

  Status Drain(const std::function<Status(Chunk)>& emit) override {
    if (group_.empty() && states_.empty()) states_.emplace_back(aggs_.size());
    Chunk out;
    out.origin = "aggregate";
    out.batch = Batch(output_);
    for (size_t g = 0; g < states_.size(); ++g) {
      for (size_t k = 0; k < group_.size(); ++k) {
        out.batch.column(k).AppendFrom(keys_.column(k), static_cast<int64_t>(g));
      }
      for (size_t a = 0; a < aggs_.size(); ++a) {
        Column& c = out.batch.column(group_.size() + a);
        const Agg& agg = aggs_[a];
        const State& s = states_[g][a];
        if (agg.function == "count") {
          c.AppendInt(s.count);
        } else if (s.count == 0) {
          c.AppendNull();
        } else if (agg.function == "avg") {
          c.AppendDouble(s.d / static_cast<double>(s.count));
        } else if (agg.type == Type::kDouble) {
          c.AppendDouble(s.d);
        } else if (agg.type == Type::kString) {
          c.AppendString(s.s);
        } else {
          c.AppendInt(s.i);
        }
      }
      out.lines.push_back(static_cast<int64_t>(g) + 1);
      if (out.batch.num_rows() >= 65536) {
        Chunk done = std::move(out);
        out = Chunk();
        out.origin = "aggregate";
        out.batch = Batch(output_);
        RETURN_IF_ERROR(emit(std::move(done)));
      }
    }
    if (out.batch.num_rows() > 0) RETURN_IF_ERROR(emit(std::move(out)));
    states_.clear();
    groups_.clear();
    return Status::Ok();
  }

 private:
  struct Agg {
    std::string name;
    std::string function;
    Type type = Type::kInt64;
    std::unique_ptr<Expression> argument;  // null for count(*)
  };
  struct State {
    int64_t count = 0;
    int64_t i = 0;
    double d = 0;
    std::string s;
  };

  static Status Accumulate(const Agg& agg, const Column& arg, int64_t row, State* s) {
    if (!agg.argument) {
      ++s->count;
      return Status::Ok();
    }
    if (arg.IsNull(row)) return Status::Ok();
    const bool first = s->count == 0;
    ++s->count;
    const std::string& f = agg.function;
    if (f == "count") return Status::Ok();
    if (f == "sum" || f == "avg") {
      if (arg.type() == Type::kDouble) {
        s->d += arg.GetDouble(row);
      } else if (f == "avg") {
        s->d += static_cast<double>(arg.GetInt(row));
      } else if (__builtin_add_overflow(s->i, arg.GetInt(row), &s->i)) {
        return OutOfRangeError("aggregate '" + agg.name +
                               "': sum overflows int64; cast the "
                               "argument to double");
      }
      return Status::Ok();
    }
    const bool is_min = f == "min";
    switch (arg.type()) {
      case Type::kDouble: {
        const double v = arg.GetDouble(row);
        if (first || (is_min ? v < s->d : v > s->d)) s->d = v;
        break;
      }
      case Type::kString: {
        const std::string_view v = arg.GetString(row);
        if (first || (is_min ? v < s->s : v > s->s)) s->s.assign(v);
        break;
      }
      default: {
        const int64_t v = arg.GetInt(row);
        if (first || (is_min ? v < s->i : v > s->i)) s->i = v;
      }
    }
    return Status::Ok();
  }

  std::vector<int> group_;
  std::vector<Agg> aggs_;
  Batch keys_;
  std::unordered_map<std::string, int64_t> groups_;
  std::vector<std::vector<State>> states_;
  const Clock* clock_ = nullptr;
  int64_t key_bytes_ = 0;
  int64_t state_string_bytes_ = 0;
  int64_t rows_seen_ = 0;
  int64_t limit_mb_ = 1024;
};

const char* StepName(StepSpec::Kind kind) {
  switch (kind) {
    case StepSpec::Kind::kSelect:
      return "select";
    case StepSpec::Kind::kRename:
      return "rename";
    case StepSpec::Kind::kCast:
      return "cast";
    case StepSpec::Kind::kFilter:
      return "filter";
    case StepSpec::Kind::kDerive:
      return "derive";
    case StepSpec::Kind::kDedupe:
      return "dedupe";
    case StepSpec::Kind::kAggregate:
      return "aggregate";
  }
  return "step";
}

StatusOr<std::unique_ptr<Step>> PlanStep(const StepSpec& spec, std::shared_ptr<const Schema> in,
                                         const Clock* clock) {
  switch (spec.kind) {
    case StepSpec::Kind::kSelect:
      return SelectStep::Create(spec, *in);
    case StepSpec::Kind::kRename:
      return RenameStep::Create(spec, *in);
    case StepSpec::Kind::kCast:
      return CastStep::Create(spec, *in);
    case StepSpec::Kind::kFilter:
      return FilterStep::Create(spec, std::move(in), clock);
    case StepSpec::Kind::kDerive:
      return DeriveStep::Create(spec, std::move(in), clock);
    case StepSpec::Kind::kDedupe:
      return DedupeStep::Create(spec, std::move(in));
    case StepSpec::Kind::kAggregate:
      return AggregateStep::Create(spec, std::move(in), clock);
  }
  return InternalError("unknown step");
}

}  // namespace

StepChain::~StepChain() = default;

StatusOr<std::unique_ptr<StepChain>> StepChain::Create(const std::vector<StepSpec>& steps,
                                                       std::shared_ptr<const Schema> input,
                                                       const Clock* clock) {
  std::unique_ptr<StepChain> chain(new StepChain());
  std::shared_ptr<const Schema> schema = std::move(input);
  for (size_t i = 0; i < steps.size(); ++i) {
    StatusOr<std::unique_ptr<Step>> step = PlanStep(steps[i], schema, clock);
    if (!step.ok()) {
      std::string where = "steps[" + std::to_string(i) + "] (" + StepName(steps[i].kind);
      if (steps[i].line > 0) where += ", line " + std::to_string(steps[i].line);
      where += ")";
      return step.status().WithContext(where);
    }
    schema = (*step)->output();
    chain->steps_.push_back(*std::move(step));
  }
  chain->output_ = std::move(schema);
  return chain;
}

Status StepChain::RunFrom(size_t first, Chunk chunk) {
  for (size_t i = first; i < steps_.size(); ++i) {
    if (chunk.batch.num_rows() == 0) return Status::Ok();
    RETURN_IF_ERROR(steps_[i]->Apply(&chunk, next_, &counters_));
    if (steps_[i]->blocking()) return Status::Ok();
  }
  if (chunk.batch.num_rows() == 0) return Status::Ok();
  return next_->Rows(std::move(chunk));
}

Status StepChain::Rows(Chunk chunk) { return RunFrom(0, std::move(chunk)); }

Status StepChain::Rejected(Reject reject) { return next_->Rejected(std::move(reject)); }

void StepChain::Progress(int64_t bytes_read) { next_->Progress(bytes_read); }

Status StepChain::Finish() {
  for (size_t i = 0; i < steps_.size(); ++i) {
    if (!steps_[i]->blocking()) continue;
    RETURN_IF_ERROR(
        steps_[i]->Drain([this, i](Chunk chunk) { return RunFrom(i + 1, std::move(chunk)); }));
  }
  return Status::Ok();
}

}  // namespace edgeloop::pipeline
