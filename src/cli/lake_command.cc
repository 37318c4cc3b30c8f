// `edgeloop lake ...`: look at and maintain a lake by hand: ls, history, show, read, compact,
// expire.
#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/clock.h"
#include "lake/csv.h"
#include "lake/lake.h"

namespace edgeloop::cli {
namespace {

using Json = nlohmann::json;

struct LakeCliOptions {
  std::string lake;
  bool json = false;
  std::string table;  // TABLE or TABLE@SNAPSHOT
  int64_t limit = -1;
  std::vector<std::string> columns;
  int64_t target_file_mb = 128;
  int64_t small_file_mb = 16;
  int64_t keep_last = 10;
  double older_than_days = -1;
};

int Fail(const Status& status) {
  std::cerr << "edgeloop lake: " << status.message() << "\n";
  return status.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

struct TableRef {
  std::string name;
  std::optional<int64_t> snapshot;
};

StatusOr<TableRef> ParseTableRef(const std::string& text) {
  TableRef ref;
  const size_t at = text.find('@');
  ref.name = text.substr(0, at);
  if (ref.name.empty()) return InvalidArgumentError("missing table name in '" + text + "'");
  if (at != std::string::npos) {
    const std::string s = text.substr(at + 1);
    int64_t id = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || id <= 0) {
      return InvalidArgumentError("'" + s + "' is not a snapshot number (TABLE@SNAPSHOT)");
    }
    ref.snapshot = id;
  }
  return ref;
}

std::string Megabytes(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

Json SnapshotJson(const lake::SnapshotInfo& s) {
  return {{"snapshot", s.id},
          {"time", FormatRfc3339(s.time)},
          {"operation", s.operation},
          {"rows_added", s.rows_added},
          {"rows_removed", s.rows_removed},
          {"files_added", s.files_added},
          {"files_removed", s.files_removed},
          {"summary", s.summary}};
}

Status RunLs(lake::Lake& lake, const LakeCliOptions& o) {
  ASSIGN_OR_RETURN(std::vector<lake::TableInfo> tables, lake.ListTables());
  Json list = Json::array();
  std::string text;
  for (const lake::TableInfo& t : tables) {
    list.push_back({{"table", t.name},
                    {"rows", t.rows},
                    {"files", t.files},
                    {"bytes", t.bytes},
                    {"partition", lake::PartitionSpecToString(t.partition)},
                    {"schema_version", t.schema.version}});
    text += t.name + "  " + std::to_string(t.rows) + " rows  " + std::to_string(t.files) +
            " files  " + Megabytes(t.bytes);
    const std::string partition = lake::PartitionSpecToString(t.partition);
    if (!partition.empty()) text += "  partitioned by " + partition;
    text += "\n";
  }
  if (o.json) {
    std::cout << list.dump(2) << "\n";
  } else {
    std::cout << (text.empty() ? "(no tables)\n" : text);
  }
  return Status::Ok();
}

Status RunHistory(lake::Lake& lake, const LakeCliOptions& o) {
  ASSIGN_OR_RETURN(std::vector<lake::SnapshotInfo> history, lake.History(o.table));
  Json list = Json::array();
  for (const lake::SnapshotInfo& s : history) {
    list.push_back(SnapshotJson(s));
    if (o.json) continue;
    std::cout << s.id << "  " << FormatRfc3339(s.time) << "  " << s.operation << "  +"
              << s.rows_added << "/-" << s.rows_removed << " rows  +" << s.files_added << "/-"
              << s.files_removed << " files";
    for (const auto& [k, v] : s.summary) std::cout << "  " << k << "=" << v;
    std::cout << "\n";
  }
  if (o.json) std::cout << list.dump(2) << "\n";
  return Status::Ok();
}

Status RunShow(lake::Lake& lake, const LakeCliOptions& o) {
  ASSIGN_OR_RETURN(TableRef ref, ParseTableRef(o.table));
  ASSIGN_OR_RETURN(lake::TableInfo info, lake.Describe(ref.name, ref.snapshot));
  ASSIGN_OR_RETURN(std::vector<lake::DataFileInfo> files, lake.Files(ref.name, ref.snapshot));
  ASSIGN_OR_RETURN(int64_t latest, lake.LatestSnapshot());
  const int64_t snapshot = ref.snapshot.value_or(latest);
  std::map<int32_t, int64_t> nulls;  // field id -> nulls in all files
  for (const lake::DataFileInfo& f : files) {
    for (const lake::ColumnStats& c : f.stats.columns) nulls[c.field_id] += c.null_count;
  }
  Json fields = Json::array();
  for (const lake::Field& f : info.schema.fields) {
    fields.push_back(
        {{"id", f.id}, {"name", f.name}, {"type", lake::TypeName(f.type)}, {"nulls", nulls[f.id]}});
  }
  Json file_list = Json::array();
  for (const lake::DataFileInfo& f : files) {
    file_list.push_back({{"path", f.path},
                         {"partition", f.partition},
                         {"rows", f.stats.rows},
                         {"bytes", f.stats.bytes},
                         {"sha256", f.stats.sha256},
                         {"added_snapshot", f.added_snapshot}});
  }
  if (o.json) {
    std::cout << Json{{"table", info.name},
                      {"snapshot", snapshot},
                      {"schema_version", info.schema.version},
                      {"partition", lake::PartitionSpecToString(info.partition)},
                      {"rows", info.rows},
                      {"bytes", info.bytes},
                      {"columns", fields},
                      {"files", file_list}}
                     .dump(2)
              << "\n";
    return Status::Ok();
  }
  std::cout << "table " << info.name << " at snapshot " << snapshot << "\n"
            << "rows " << info.rows << " in " << files.size() << " files, " << Megabytes(info.bytes)
            << "\n";
  const std::string partition = lake::PartitionSpecToString(info.partition);
  if (!partition.empty()) std::cout << "partitioned by " << partition << "\n";
  std::cout << "schema (version " << info.schema.version << "):\n";
  for (const lake::Field& f : info.schema.fields) {
    std::cout << "  " << f.name << "  " << lake::TypeName(f.type) << "  (id " << f.id << ", "
              << nulls[f.id] << " nulls)\n";
  }
  std::cout << "files:\n";
  for (const lake::DataFileInfo& f : files) {
    std::cout << "  " << f.path << "  " << f.stats.rows << " rows  " << Megabytes(f.stats.bytes)
              << "  snapshot " << f.added_snapshot << "\n";
  }
  return Status::Ok();
}

Status RunRead(lake::Lake& lake, const LakeCliOptions& o) {
  ASSIGN_OR_RETURN(TableRef ref, ParseTableRef(o.table));
  lake::ScanOptions scan;
  scan.snapshot = ref.snapshot;
  scan.columns = o.columns;
  ASSIGN_OR_RETURN(std::unique_ptr<lake::TableReader> reader, lake.Scan(ref.name, scan));
  const lake::Schema& schema = *reader->schema();
  std::string out;
  if (!o.json) {
    for (size_t c = 0; c < schema.fields.size(); ++c) {
      if (c) out += ',';
      lake::AppendCsvField(&out, schema.fields[c].name);
    }
    out += '\n';
  }
  int64_t written = 0;
  lake::Batch batch;
  while (o.limit < 0 || written < o.limit) {
    ASSIGN_OR_RETURN(bool more, reader->Next(&batch));
    if (!more) break;
    for (int64_t i = 0; i < batch.num_rows() && (o.limit < 0 || written < o.limit); ++i) {
      if (o.json) {
        Json row = Json::object();
        for (size_t c = 0; c < schema.fields.size(); ++c) {
          const lake::Column& col = batch.column(c);
          Json value;
          if (!col.IsNull(i)) {
            switch (col.type()) {
              case lake::Type::kBool:
                value = col.GetBool(i);
                break;
              case lake::Type::kInt64:
                value = col.GetInt(i);
                break;
              case lake::Type::kDouble:
                value = col.GetDouble(i);
                break;
              default:
                value = lake::FormatValue(col, i);
            }
          }
          row[schema.fields[c].name] = std::move(value);
        }
        out += row.dump(-1, ' ', false, Json::error_handler_t::replace);
      } else {
        for (size_t c = 0; c < schema.fields.size(); ++c) {
          if (c) out += ',';
          const lake::Column& col = batch.column(c);
          if (!col.IsNull(i)) {
            lake::AppendCsvField(&out, lake::FormatValue(col, i),
                                 col.type() == lake::Type::kString);
          }
        }
      }
      out += '\n';
      ++written;
      if (out.size() > (1 << 20)) {
        std::cout << out;
        out.clear();
      }
    }
  }
  std::cout << out << std::flush;
  return Status::Ok();
}

Status RunCompact(lake::Lake& lake, const LakeCliOptions& o) {
  ASSIGN_OR_RETURN(int64_t before, lake.LatestSnapshot());
  lake::CompactOptions options;
  options.target_file_bytes = o.target_file_mb << 20;
  options.small_file_bytes = o.small_file_mb << 20;
  ASSIGN_OR_RETURN(lake::SnapshotInfo s, lake.Compact(o.table, options));
  const bool changed = s.id != before;
  if (o.json) {
    Json json = SnapshotJson(s);
    json["compacted"] = changed;
    std::cout << json.dump(2) << "\n";
  } else if (changed) {
    std::cout << "compacted " << o.table << ": " << s.files_removed << " files into "
              << s.files_added << " (snapshot " << s.id << ")\n";
  } else {
    std::cout << "nothing to compact in " << o.table << "\n";
  }
  return Status::Ok();
}

Status RunExpire(lake::Lake& lake, const LakeCliOptions& o) {
  lake::ExpireOptions options;
  options.keep_last = o.keep_last;
  if (o.older_than_days >= 0) {
    options.older_than =
        Clock::Real()->WallNow() - std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                       std::chrono::duration<double>(o.older_than_days * 86400));
  }
  ASSIGN_OR_RETURN(int64_t deleted, lake.Expire(options));
  if (o.json) {
    std::cout << Json{{"files_deleted", deleted}}.dump(2) << "\n";
  } else {
    std::cout << "expired: " << deleted << " files deleted\n";
  }
  return Status::Ok();
}

}  // namespace

Command AddLakeCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand("lake", "Look at and maintain lake tables");
  app->require_subcommand(1);
  auto o = std::make_shared<LakeCliOptions>();
  auto run = std::make_shared<std::function<Status(lake::Lake&, const LakeCliOptions&)>>();
  const auto command = [&](const char* name, const char* help,
                           std::function<Status(lake::Lake&, const LakeCliOptions&)> fn) {
    CLI::App* sub = app->add_subcommand(name, help);
    sub->add_option("--lake", o->lake, "Lake folder")->required();
    sub->add_flag("--json", o->json, "Print JSON");
    sub->callback([run, fn] { *run = fn; });
    return sub;
  };
  command("ls", "List tables", RunLs);
  CLI::App* history =
      command("history", "Snapshots, newest first (all, or one table's)", RunHistory);
  history->add_option("table", o->table, "Table");
  CLI::App* show = command("show", "Schema, partitioning and files of TABLE[@SNAPSHOT]", RunShow);
  show->add_option("table", o->table, "TABLE or TABLE@SNAPSHOT")->required();
  CLI::App* read =
      command("read", "Print the rows of TABLE[@SNAPSHOT] (CSV, or JSON lines)", RunRead);
  read->add_option("table", o->table, "TABLE or TABLE@SNAPSHOT")->required();
  read->add_option("--limit", o->limit, "At most this many rows")->check(CLI::NonNegativeNumber);
  read->add_option("--columns", o->columns, "Only these columns")->delimiter(',');
  CLI::App* compact = command("compact", "Merge small files of TABLE", RunCompact);
  compact->add_option("table", o->table, "Table")->required();
  compact->add_option("--target-file-mb", o->target_file_mb, "Size of the merged files")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  compact->add_option("--small-file-mb", o->small_file_mb, "Files below this are merged")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI::App* expire =
      command("expire", "Forget old snapshots and delete files only they used", RunExpire);
  expire->add_option("--keep-last", o->keep_last, "Keep the newest N snapshots")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  expire
      ->add_option("--older-than-days", o->older_than_days,
                   "Also keep snapshots younger than this many days")
      ->check(CLI::NonNegativeNumber);

  return {app, [o, run] {
            if (!*run) return 2;
            StatusOr<std::unique_ptr<lake::Lake>> lake = lake::Lake::Open(o->lake, {}, false);
            if (!lake.ok()) return Fail(lake.status());
            const Status status = (*run)(**lake, *o);
            return status.ok() ? 0 : Fail(status);
          }};
}

}  // namespace edgeloop::cli
