#include "pipeline/runner.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <utility>

#include "common/logging.h"
#include "pipeline/expr.h"
#include "pipeline/steps.h"

namespace edgeloop::pipeline {

using lake::Batch;
using lake::Column;
using lake::Schema;
using lake::Type;

lake::Schema RejectedRowsSchema() {
  Schema schema;
  schema.fields = {{1, "run_id", Type::kString}, {2, "source", Type::kString},
                   {3, "line", Type::kInt64},    {4, "raw", Type::kString},
                   {5, "reason", Type::kString}, {6, "time", Type::kTimestamp}};
  return schema;
}

namespace {

constexpr size_t kQueueDepth = 4;
constexpr int64_t kRejectBatchRows = 4096;

std::string MakeRunId(const Clock* clock) {
  const auto wall = clock->WallNow();
  const std::time_t t = std::chrono::system_clock::to_time_t(wall);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  std::random_device random;
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "%08x", random());
  return std::string(stamp) + "-" + suffix;
}

int CompareCells(const Column& a, int64_t i, const Column& b, int64_t j) {
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

// Hands batches to a writer thread that encodes them into the transaction's files, so that
// parsing and compression use both cores. Thread-safe.
class WriterThread {
 public:
  WriterThread(lake::TableWriter* rows, lake::Transaction* txn, std::string rejected_table)
      : rows_(rows),
        txn_(txn),
        rejected_table_(std::move(rejected_table)),
        thread_([this] { Loop(); }) {}
  ~WriterThread() { (void)Close(); }

  Status Push(Batch batch, bool rejected) {
    std::unique_lock lock(mu_);
    space_.wait(lock, [&] { return queue_.size() < kQueueDepth || !status_.ok(); });
    if (!status_.ok()) return status_;
    queue_.push_back({std::move(batch), rejected});
    ready_.notify_one();
    return Status::Ok();
  }

  // Waits for every batch to be written; returns the first write error.
  Status Close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      ready_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  struct Job {
    Batch batch;
    bool rejected;
  };

  void Loop() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(mu_);
        ready_.wait(lock, [&] { return !queue_.empty() || closed_; });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        space_.notify_one();
        if (!status_.ok()) continue;
      }
      Status status;
      if (job.rejected) {
        if (rejected_ == nullptr) {
          StatusOr<lake::TableWriter*> writer = txn_->Writer(rejected_table_);
          status = writer.status();
          if (writer.ok()) rejected_ = *writer;
        }
        if (status.ok()) status = rejected_->Write(job.batch);
      } else {
        status = rows_->Write(job.batch);
      }
      if (!status.ok()) {
        std::lock_guard lock(mu_);
        if (status_.ok()) status_ = status;
        space_.notify_all();
      }
    }
  }

  lake::TableWriter* rows_;
  lake::Transaction* txn_;
  std::string rejected_table_;
  lake::TableWriter* rejected_ = nullptr;  // created on the first reject (writer thread only)
  std::mutex mu_;
  std::condition_variable ready_;
  std::condition_variable space_;
  std::deque<Job> queue_;  // GUARDED_BY(mu_)
  bool closed_ = false;    // GUARDED_BY(mu_)
  Status status_;          // GUARDED_BY(mu_)
  std::thread thread_;
};

// Maps the steps' output onto the target table's schema (by name, widening types).
class TableMapper {
 public:
  static StatusOr<TableMapper> Create(const Schema& output, std::shared_ptr<const Schema> table,
                                      const std::string& table_name) {
    TableMapper m;
    for (const lake::Field& f : output.fields) {
      const lake::Field* t = table->Find(f.name);
      if (t == nullptr) {
        std::string names;
        for (const lake::Field& tf : table->fields) names += (names.empty() ? "" : ", ") + tf.name;
        return InvalidArgumentError("column '" + f.name + "' is not in table '" + table_name +
                                    "' (columns: " + names +
                                    "); drop it with a select step or add it to the table");
      }
      if (t->type != f.type && !lake::CanWiden(f.type, t->type)) {
        return InvalidArgumentError("column '" + f.name + "' is " +
                                    std::string(lake::TypeName(f.type)) + " but table '" +
                                    table_name + "' has it as " +
                                    std::string(lake::TypeName(t->type)) + "; add a cast step");
      }
    }
    for (const lake::Field& t : table->fields) m.index_.push_back(output.IndexOf(t.name));
    m.table_ = std::move(table);
    return m;
  }

  Batch Map(Batch in) const {
    Batch out(table_);
    const int64_t n = in.num_rows();
    for (size_t c = 0; c < index_.size(); ++c) {
      Column& dst = out.column(c);
      if (index_[c] < 0) {
        for (int64_t i = 0; i < n; ++i) dst.AppendNull();
        continue;
      }
      Column& src = in.column(index_[c]);
      if (src.type() == dst.type()) {
        dst = std::move(src);
        continue;
      }
      dst.Reserve(n);
      for (int64_t i = 0; i < n; ++i) (void)AppendConverted(src, i, dst.type(), &dst);
    }
    return out;
  }

  const std::shared_ptr<const Schema>& table() const { return table_; }

 private:
  std::vector<int> index_;  // table column -> output column, or -1 (NULL)
  std::shared_ptr<const Schema> table_;
};

// The end of the chain: maps rows to the table, collects rejects, enforces max_rejected and
// reports progress. Runs on the source's thread.
class OutputSink final : public SourceSink {
 public:
  OutputSink(const RunOptions& options, std::optional<int64_t> max_rejected, RunSummary* summary,
             const TableMapper* mapper, WriterThread* writer, int64_t total_bytes)
      : options_(options),
        max_rejected_(max_rejected),
        summary_(summary),
        mapper_(mapper),
        writer_(writer),
        total_bytes_(total_bytes),
        start_(options.clock->Now()),
        last_progress_(start_) {
    auto schema = std::make_shared<Schema>(RejectedRowsSchema());
    rejected_ = Batch(std::move(schema));
    time_ = std::chrono::duration_cast<std::chrono::microseconds>(
                options.clock->WallNow().time_since_epoch())
                .count();
  }

  Status Rows(Chunk chunk) override {
    summary_->rows_written += chunk.batch.num_rows();
    if (writer_ == nullptr) return Status::Ok();  // dry run
    return writer_->Push(mapper_->Map(std::move(chunk.batch)), false);
  }

  Status Rejected(Reject reject) override {
    ++summary_->rows_rejected;
    if (max_rejected_ && summary_->rows_rejected > *max_rejected_) {
      const Reject& first =
          summary_->first_rejects.empty() ? reject : summary_->first_rejects.front();
      return FailedPreconditionError(
          "more than " + std::to_string(*max_rejected_) +
          " rows rejected (max_rejected); nothing was committed. First: " + first.origin + ":" +
          std::to_string(first.line) + ": " + first.reason);
    }
    std::vector<Column>& c = rejected_.columns();
    c[0].AppendString(summary_->run_id);
    c[1].AppendString(reject.origin);
    c[2].AppendInt(reject.line);
    c[3].AppendString(reject.raw);
    c[4].AppendString(reject.reason);
    c[5].AppendInt(time_);
    if (summary_->first_rejects.size() < 10) summary_->first_rejects.push_back(std::move(reject));
    if (rejected_.num_rows() >= kRejectBatchRows) return FlushRejected();
    return Status::Ok();
  }

  Status FlushRejected() {
    if (rejected_.num_rows() == 0 || writer_ == nullptr) return Status::Ok();
    Batch full(rejected_.schema());
    std::swap(full, rejected_);
    return writer_->Push(std::move(full), true);
  }

  void Progress(int64_t bytes_read) override {
    summary_->bytes_read = bytes_read;
    if (!options_.progress) return;
    const auto now = options_.clock->Now();
    if (now - last_progress_ < std::chrono::milliseconds(options_.progress_interval_ms)) return;
    last_progress_ = now;
    ReportProgress();
  }

  void ReportProgress() {
    if (!options_.progress) return;
    RunProgress p;
    p.bytes_read = summary_->bytes_read;
    p.total_bytes = total_bytes_;
    p.rows_read = summary_->rows_read;
    p.rows_rejected = summary_->rows_rejected;
    p.seconds = std::chrono::duration<double>(options_.clock->Now() - start_).count();
    options_.progress(p);
  }

 private:
  const RunOptions& options_;
  std::optional<int64_t> max_rejected_;
  RunSummary* summary_;
  const TableMapper* mapper_;
  WriterThread* writer_;
  int64_t total_bytes_;
  Clock::SteadyTime start_;
  Clock::SteadyTime last_progress_;
  Batch rejected_;
  int64_t time_ = 0;
};

// Counts source rows and, for incremental loads, passes on only rows above the watermark
// while tracking the largest value seen. Rows with a NULL watermark are rejected (they could
// never be ordered against the watermark).
class WatermarkGate final : public SourceSink {
 public:
  WatermarkGate(SourceSink* next, RunSummary* summary, int column, std::string column_name,
                std::optional<Column> threshold)
      : next_(next),
        summary_(summary),
        column_(column),
        name_(std::move(column_name)),
        threshold_(std::move(threshold)) {}

  Status Rows(Chunk chunk) override {
    const int64_t n = chunk.batch.num_rows();
    summary_->rows_read += n;
    if (column_ < 0) return next_->Rows(std::move(chunk));
    const Column& c = chunk.batch.column(column_);
    std::vector<uint8_t> keep(n, 1);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (c.IsNull(i)) {
        keep[i] = 0;
        RETURN_IF_ERROR(next_->Rejected({chunk.origin, chunk.lines[i], RowAsCsv(chunk.batch, i),
                                         "watermark column '" + name_ + "' is NULL"}));
        continue;
      }
      if (threshold_ && CompareCells(c, i, *threshold_, 0) <= 0) {
        keep[i] = 0;
        ++summary_->rows_skipped;
        continue;
      }
      ++kept;
      if (!max_ || CompareCells(c, i, *max_, 0) > 0) {
        max_ = Column(c.type());
        max_->AppendFrom(c, i);
      }
    }
    if (kept == 0) return Status::Ok();
    KeepRows(&chunk, keep);
    return next_->Rows(std::move(chunk));
  }
  Status Rejected(Reject reject) override { return next_->Rejected(std::move(reject)); }
  void Progress(int64_t bytes_read) override { next_->Progress(bytes_read); }

  std::optional<std::string> max_text() const {
    if (!max_) return std::nullopt;
    return lake::FormatValue(*max_, 0);
  }

 private:
  SourceSink* next_;
  RunSummary* summary_;
  int column_;
  std::string name_;
  std::optional<Column> threshold_;
  std::optional<Column> max_;
};

RunResult Fail(RunResult result, RunResult::Stage stage, Status status) {
  result.stage = stage;
  result.status = std::move(status);
  return result;
}

// Decodes the ".files" watermark: {"path": [size, mtime_ns], ...}.
std::map<std::string, FileState> DecodeFiles(const std::optional<std::string>& text) {
  std::map<std::string, FileState> files;
  if (!text) return files;
  const nlohmann::json json = nlohmann::json::parse(*text, nullptr, false);
  if (!json.is_object()) return files;
  for (const auto& [path, state] : json.items()) {
    if (state.is_array() && state.size() == 2 && state[0].is_number_integer() &&
        state[1].is_number_integer()) {
      files[path] = {state[0].get<int64_t>(), state[1].get<int64_t>()};
    }
  }
  return files;
}

std::string EncodeFiles(const std::map<std::string, FileState>& files) {
  nlohmann::json json = nlohmann::json::object();
  for (const auto& [path, state] : files) json[path] = {state.size, state.mtime_ns};
  // A path that is not UTF-8 is recorded mangled (and so read again), never a crash.
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

RunResult RunPipeline(const PipelineSpec& spec, lake::Lake* lake, const RunOptions& options) {
  using Stage = RunResult::Stage;
  RunResult result;
  RunSummary& summary = result.summary;
  const auto start = options.clock->Now();
  summary.run_id = MakeRunId(options.clock);
  summary.pipeline = spec.name;
  summary.table = spec.target.table;
  summary.rejected_table = spec.target.rejected_table;
  const std::string files_mark = spec.name + ".files";

  // --- Plan: everything that can be checked without reading a row.
  StatusOr<lake::TableInfo> target = lake->Describe(spec.target.table);
  if (!target.ok() && target.status().code() != StatusCode::kNotFound) {
    return Fail(std::move(result), Stage::kRun, target.status());
  }
  std::map<std::string, FileState> previous_files;
  std::optional<Column> threshold;
  if (!spec.watermark.empty() && target.ok()) {
    StatusOr<std::optional<std::string>> mark = lake->Watermark(spec.target.table, spec.name);
    if (!mark.ok()) return Fail(std::move(result), Stage::kRun, mark.status());
    summary.watermark_before = *mark;
    StatusOr<std::optional<std::string>> files = lake->Watermark(spec.target.table, files_mark);
    if (!files.ok()) return Fail(std::move(result), Stage::kRun, files.status());
    previous_files = DecodeFiles(*files);
  }

  SourceOptions source_options;
  source_options.batch_rows = options.batch_rows;
  source_options.lake = lake;
  if (!spec.watermark.empty()) source_options.skip_files = previous_files;
  source_options.watermark = summary.watermark_before;
  StatusOr<std::unique_ptr<Source>> source = OpenSource(spec, source_options);
  if (!source.ok()) {
    const Stage stage =
        source.status().code() == StatusCode::kInvalidArgument ? Stage::kPlan : Stage::kRun;
    return Fail(std::move(result), stage, source.status().WithContext("source"));
  }
  const std::shared_ptr<const Schema>& source_schema = (*source)->schema();

  int watermark_column = -1;
  if (!spec.watermark.empty()) {
    watermark_column = source_schema->IndexOf(spec.watermark);
    if (watermark_column < 0) {
      std::string names;
      for (const lake::Field& f : source_schema->fields) {
        names += (names.empty() ? "" : ", ") + f.name;
      }
      return Fail(std::move(result), Stage::kPlan,
                  InvalidArgumentError("incremental: the watermark column '" + spec.watermark +
                                       "' is not a source column (columns: " + names + ")"));
    }
    if (summary.watermark_before) {
      Column t(source_schema->fields[watermark_column].type);
      if (!AppendParsed(*summary.watermark_before, t.type(), &t)) {
        return Fail(std::move(result), Stage::kPlan,
                    InvalidArgumentError("incremental: the committed watermark '" +
                                         *summary.watermark_before + "' is not a valid " +
                                         std::string(lake::TypeName(t.type())) +
                                         "; was the column's type changed?"));
      }
      threshold = std::move(t);
    }
  }

  StatusOr<std::unique_ptr<StepChain>> chain =
      StepChain::Create(spec.steps, source_schema, options.clock);
  if (!chain.ok()) return Fail(std::move(result), Stage::kPlan, chain.status());
  const std::shared_ptr<const Schema>& output = (*chain)->output_schema();

  lake::PartitionSpec partition;
  if (!spec.target.partition.empty()) {
    StatusOr<lake::PartitionSpec> parsed = lake::ParsePartitionSpec(spec.target.partition);
    if (!parsed.ok()) {
      return Fail(std::move(result), Stage::kPlan, parsed.status().WithContext("target partition"));
    }
    partition = *parsed;
    const lake::Field* column = output->Find(partition.column);
    if (column == nullptr) {
      return Fail(std::move(result), Stage::kPlan,
                  InvalidArgumentError("target partition: '" + partition.column +
                                       "' is not an output column"));
    }
    if ((partition.transform == lake::PartitionSpec::Transform::kDay ||
         partition.transform == lake::PartitionSpec::Transform::kMonth) &&
        column->type != Type::kTimestamp && column->type != Type::kDate) {
      return Fail(std::move(result), Stage::kPlan,
                  InvalidArgumentError("target partition: " + spec.target.partition +
                                       " needs a timestamp or date column; '" + partition.column +
                                       "' is " + std::string(lake::TypeName(column->type))));
    }
    if (target.ok() &&
        lake::PartitionSpecToString(target->partition) != lake::PartitionSpecToString(partition)) {
      return Fail(std::move(result), Stage::kPlan,
                  InvalidArgumentError("table '" + spec.target.table + "' is partitioned by '" +
                                       lake::PartitionSpecToString(target->partition) +
                                       "', the spec says '" + spec.target.partition + "'"));
    }
  }

  std::shared_ptr<const Schema> table_schema;
  if (target.ok()) {
    table_schema = std::make_shared<Schema>(target->schema);
  } else {
    table_schema = output;
  }
  StatusOr<TableMapper> mapper = TableMapper::Create(*output, table_schema, spec.target.table);
  if (!mapper.ok()) return Fail(std::move(result), Stage::kPlan, mapper.status());

  StatusOr<lake::TableInfo> rejected_info = lake->Describe(spec.target.rejected_table);
  if (rejected_info.ok()) {
    const Schema expected = RejectedRowsSchema();
    bool same = rejected_info->schema.fields.size() == expected.fields.size();
    for (size_t i = 0; same && i < expected.fields.size(); ++i) {
      same = rejected_info->schema.fields[i].name == expected.fields[i].name &&
             rejected_info->schema.fields[i].type == expected.fields[i].type;
    }
    if (!same) {
      return Fail(std::move(result), Stage::kPlan,
                  InvalidArgumentError("table '" + spec.target.rejected_table +
                                       "' exists but is not a rejected-rows table"));
    }
  } else if (rejected_info.status().code() != StatusCode::kNotFound) {
    return Fail(std::move(result), Stage::kRun, rejected_info.status());
  }

  // --- Run.
  std::unique_ptr<lake::Transaction> txn;
  lake::TableWriter* rows_writer = nullptr;
  std::unique_ptr<WriterThread> writer;
  if (!options.dry_run) {
    if (!target.ok()) {
      StatusOr<lake::SnapshotInfo> created =
          lake->CreateTable(spec.target.table, *output, partition);
      if (!created.ok()) return Fail(std::move(result), Stage::kRun, created.status());
      StatusOr<lake::TableInfo> info = lake->Describe(spec.target.table);
      if (!info.ok()) return Fail(std::move(result), Stage::kRun, info.status());
      table_schema = std::make_shared<Schema>(info->schema);
      mapper = TableMapper::Create(*output, table_schema, spec.target.table);
      if (!mapper.ok()) return Fail(std::move(result), Stage::kRun, mapper.status());
    }
    if (!rejected_info.ok()) {
      StatusOr<lake::SnapshotInfo> created =
          lake->CreateTable(spec.target.rejected_table, RejectedRowsSchema(), {});
      if (!created.ok() && created.status().code() != StatusCode::kAlreadyExists) {
        return Fail(std::move(result), Stage::kRun, created.status());
      }
    }
    StatusOr<std::unique_ptr<lake::Transaction>> begun = lake->Begin();
    if (!begun.ok()) return Fail(std::move(result), Stage::kRun, begun.status());
    txn = *std::move(begun);
    StatusOr<lake::TableWriter*> w = txn->Writer(spec.target.table, spec.target.overwrite);
    if (!w.ok()) return Fail(std::move(result), Stage::kRun, w.status());
    rows_writer = *w;
    writer = std::make_unique<WriterThread>(rows_writer, txn.get(), spec.target.rejected_table);
  }

  const std::optional<int64_t> max_rejected =
      options.max_rejected ? options.max_rejected : spec.max_rejected;
  OutputSink sink(options, max_rejected, &summary, &*mapper, writer.get(),
                  (*source)->total_bytes());
  (*chain)->SetNext(&sink);
  WatermarkGate gate(chain->get(), &summary, watermark_column, spec.watermark,
                     std::move(threshold));
  Status status = (*source)->Run(&gate);
  if (status.ok()) status = (*chain)->Finish();
  if (status.ok()) status = sink.FlushRejected();
  if (writer) {
    const Status written = writer->Close();
    if (status.ok()) status = written;
  }
  const std::map<std::string, FileState> files_read = (*source)->files_read();
  summary.files_read = static_cast<int64_t>(files_read.size());
  summary.files_skipped = (*source)->files_skipped();
  summary.rows_filtered = (*chain)->counters().filtered;
  summary.rows_deduplicated = (*chain)->counters().deduplicated;
  sink.ReportProgress();
  summary.seconds = std::chrono::duration<double>(options.clock->Now() - start).count();
  if (!status.ok()) return Fail(std::move(result), Stage::kRun, status);

  // --- Commit: rows, rejects and watermarks in one snapshot.
  summary.watermark_after = summary.watermark_before;
  if (const std::optional<std::string> max = gate.max_text()) summary.watermark_after = max;
  if (options.dry_run) {
    result.stage = Stage::kDone;
    return result;
  }
  const bool new_files = !spec.watermark.empty() && !files_read.empty();
  const bool changed = summary.rows_written > 0 || summary.rows_rejected > 0 ||
                       spec.target.overwrite ||
                       summary.watermark_after != summary.watermark_before || new_files;
  if (!changed) {
    result.stage = Stage::kDone;
    return result;
  }
  if (!spec.watermark.empty()) {
    if (summary.watermark_after) {
      txn->SetWatermark(spec.target.table, spec.name, *summary.watermark_after);
    }
    if (spec.source.kind == SourceSpec::Kind::kCsv ||
        spec.source.kind == SourceSpec::Kind::kJsonLines) {
      std::map<std::string, FileState> files;
      for (const auto& [path, state] : previous_files) {
        std::error_code ec;
        if (std::filesystem::exists(path, ec)) files[path] = state;
      }
      for (const auto& [path, state] : files_read) files[path] = state;
      txn->SetWatermark(spec.target.table, files_mark, EncodeFiles(files));
    }
  }
  txn->SetSummary("pipeline", spec.name);
  txn->SetSummary("run_id", summary.run_id);
  txn->SetSummary("rows_rejected", std::to_string(summary.rows_rejected));
  StatusOr<lake::SnapshotInfo> committed = txn->Commit();
  if (!committed.ok()) return Fail(std::move(result), Stage::kRun, committed.status());
  summary.snapshot = committed->id;
  summary.seconds = std::chrono::duration<double>(options.clock->Now() - start).count();
  log::Info("pipeline committed", {{"pipeline", spec.name},
                                   {"table", spec.target.table},
                                   {"snapshot", committed->id},
                                   {"rows", summary.rows_written},
                                   {"rejected", summary.rows_rejected}});
  result.stage = Stage::kDone;
  return result;
}

}  // namespace edgeloop::pipeline
