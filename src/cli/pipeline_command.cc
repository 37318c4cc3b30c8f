// `edgeloop pipeline run SPEC.yaml --lake DIR`: runs a data pipeline into a lake table.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/clock.h"
#include "lake/lake.h"
#include "pipeline/runner.h"
#include "pipeline/spec.h"

namespace edgeloop::cli {
namespace {

using Json = nlohmann::json;

struct PipelineOptions {
  std::string spec;
  std::string lake;
  int64_t max_rejected = -1;  // -1: the spec's (or no limit)
  bool json = false;
  bool dry_run = false;
  bool progress = true;
};

// One line on a terminal, rewritten; nothing when stderr is not a terminal.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled && ::isatty(2)) {}
  ~ProgressLine() { Clear(); }

  std::function<void(const pipeline::RunProgress&)> Callback() {
    if (!enabled_) return nullptr;
    return [this](const pipeline::RunProgress& p) {
      const double mb = static_cast<double>(p.bytes_read) / 1e6;
      const double rate = p.seconds > 0 ? mb / p.seconds : 0;
      if (p.total_bytes > 0) {
        std::fprintf(stderr, "\r  %3d%%  %.0f / %.0f MB  %.1f MB/s  %lld rows  %lld rejected   ",
                     static_cast<int>(p.bytes_read * 100 / p.total_bytes), mb,
                     static_cast<double>(p.total_bytes) / 1e6, rate,
                     static_cast<long long>(p.rows_read), static_cast<long long>(p.rows_rejected));
      } else {
        std::fprintf(stderr, "\r  %.0f MB  %.1f MB/s  %lld rows  %lld rejected   ", mb, rate,
                     static_cast<long long>(p.rows_read), static_cast<long long>(p.rows_rejected));
      }
      std::fflush(stderr);
      shown_ = true;
    };
  }

  void Clear() {
    if (!shown_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  bool enabled_;
  bool shown_ = false;
};

Json SummaryJson(const pipeline::RunResult& result, bool dry_run) {
  const pipeline::RunSummary& s = result.summary;
  Json rejects = Json::array();
  for (const pipeline::Reject& r : s.first_rejects) {
    rejects.push_back(
        {{"source", r.origin}, {"line", r.line}, {"reason", r.reason}, {"raw", r.raw}});
  }
  Json json = {{"status", result.status.ok() ? "ok" : "failed"},
               {"run_id", s.run_id},
               {"pipeline", s.pipeline},
               {"table", s.table},
               {"rejected_table", s.rejected_table},
               {"dry_run", dry_run},
               {"rows_read", s.rows_read},
               {"rows_written", s.rows_written},
               {"rows_rejected", s.rows_rejected},
               {"rows_filtered", s.rows_filtered},
               {"rows_deduplicated", s.rows_deduplicated},
               {"rows_skipped", s.rows_skipped},
               {"bytes_read", s.bytes_read},
               {"files_read", s.files_read},
               {"files_skipped", s.files_skipped},
               {"seconds", s.seconds},
               {"snapshot", s.snapshot ? Json(*s.snapshot) : Json()},
               {"watermark_before", s.watermark_before ? Json(*s.watermark_before) : Json()},
               {"watermark_after", s.watermark_after ? Json(*s.watermark_after) : Json()},
               {"first_rejects", rejects}};
  if (!result.status.ok()) json["error"] = result.status.message();
  return json;
}

std::string SummaryText(const pipeline::RunResult& result, bool dry_run) {
  const pipeline::RunSummary& s = result.summary;
  std::string text = "pipeline " + s.pipeline + (dry_run ? " (dry run)" : "") + ": " +
                     std::to_string(s.rows_read) + " rows read, " + std::to_string(s.rows_written) +
                     " written to " + s.table;
  if (s.snapshot) text += " (snapshot " + std::to_string(*s.snapshot) + ")";
  text += ", " + std::to_string(s.rows_rejected) + " rejected";
  if (s.rows_rejected > 0) text += " (in " + s.rejected_table + ")";
  if (s.rows_filtered > 0) text += ", " + std::to_string(s.rows_filtered) + " filtered";
  if (s.rows_deduplicated > 0) {
    text += ", " + std::to_string(s.rows_deduplicated) + " duplicates";
  }
  if (s.rows_skipped > 0) {
    text += ", " + std::to_string(s.rows_skipped) + " at or below the watermark";
  }
  if (s.files_skipped > 0) {
    text += ", " + std::to_string(s.files_skipped) + " unchanged files skipped";
  }
  char rate[64];
  std::snprintf(rate, sizeof(rate), " in %.2f s", s.seconds);
  text += rate;
  if (s.seconds > 0 && s.bytes_read > 0) {
    std::snprintf(rate, sizeof(rate), " (%.1f MB/s)",
                  static_cast<double>(s.bytes_read) / 1e6 / s.seconds);
    text += rate;
  }
  text += "\n";
  if (s.watermark_after || s.watermark_before) {
    text += "watermark: " + s.watermark_before.value_or("(none)") + " -> " +
            s.watermark_after.value_or("(none)") + "\n";
  }
  if (!s.first_rejects.empty()) {
    text += "rejected rows";
    if (s.rows_rejected > static_cast<int64_t>(s.first_rejects.size())) {
      text += " (first " + std::to_string(s.first_rejects.size()) + ")";
    }
    text += ":\n";
    for (const pipeline::Reject& r : s.first_rejects) {
      text += "  " + r.origin + ":" + std::to_string(r.line) + ": " + r.reason + "\n";
    }
  }
  return text;
}

int RunPipelineCommand(const PipelineOptions& o) {
  StatusOr<pipeline::PipelineSpec> spec = pipeline::LoadSpec(o.spec);
  if (!spec.ok()) {
    std::cerr << "edgeloop pipeline: " << spec.status().message() << "\n";
    return 2;
  }
  StatusOr<std::unique_ptr<lake::Lake>> lake = lake::Lake::Open(o.lake, {}, true);
  if (!lake.ok()) {
    std::cerr << "edgeloop pipeline: " << lake.status().message() << "\n";
    return 1;
  }
  ProgressLine progress(o.progress);
  pipeline::RunOptions options;
  if (o.max_rejected >= 0) options.max_rejected = o.max_rejected;
  options.dry_run = o.dry_run;
  options.progress = progress.Callback();
  const pipeline::RunResult result = pipeline::RunPipeline(*spec, lake->get(), options);
  progress.Clear();
  if (o.json) {
    std::cout << SummaryJson(result, o.dry_run).dump(2, ' ', false, Json::error_handler_t::replace)
              << "\n";
  } else if (result.status.ok() || result.stage != pipeline::RunResult::Stage::kPlan) {
    std::cout << SummaryText(result, o.dry_run);
  }
  if (result.status.ok()) return 0;
  std::cerr << "edgeloop pipeline: " << result.status.message() << "\n";
  return result.stage == pipeline::RunResult::Stage::kPlan ? 2 : 1;
}

}  // namespace

Command AddPipelineCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand("pipeline", "Run data pipelines into lake tables");
  app->require_subcommand(1);
  auto o = std::make_shared<PipelineOptions>();
  CLI::App* run = app->add_subcommand("run", "Run the pipeline SPEC.yaml once");
  run->add_option("spec", o->spec, "Pipeline spec (YAML); see docs/pipeline.md")->required();
  run->add_option("--lake", o->lake, "Lake folder (created when missing)")->required();
  run->add_option("--max-rejected", o->max_rejected,
                  "Fail (committing nothing) when more rows than this are rejected; overrides "
                  "the spec's max_rejected")
      ->check(CLI::NonNegativeNumber);
  run->add_flag("--json", o->json, "Print the run summary as JSON");
  run->add_flag("--dry-run", o->dry_run, "Plan and read everything, commit nothing");
  run->add_flag("!--no-progress", o->progress, "No progress line on the terminal");
  return {app, [o] { return RunPipelineCommand(*o); }};
}

}  // namespace edgeloop::cli
