#include "pipeline/spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <initializer_list>
#include <sstream>

namespace edgeloop::pipeline {
namespace {

// Builds messages that name the spec and the line of a node.
class Context {
 public:
  explicit Context(std::string origin) : origin_(std::move(origin)) {}

  Status Error(const YAML::Node& node, const std::string& message) const {
    const YAML::Mark mark = node.Mark();
    if (mark.line < 0) return InvalidArgumentError(origin_ + ": " + message);
    return InvalidArgumentError(origin_ + ": line " + std::to_string(mark.line + 1) + ": " +
                                message);
  }

  Status CheckKeys(const YAML::Node& node, const std::string& where,
                   std::initializer_list<std::string_view> known) const {
    if (!node.IsMap()) return Error(node, where + " must be a mapping");
    for (const auto& item : node) {
      const std::string key = item.first.Scalar();
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string names;
        for (std::string_view k : known) names += (names.empty() ? "" : ", ") + std::string(k);
        return Error(item.first,
                     "unknown key '" + key + "' in " + where + " (known: " + names + ")");
      }
    }
    return Status::Ok();
  }

  StatusOr<std::string> String(const YAML::Node& node, const std::string& what) const {
    if (!node.IsScalar()) return Error(node, what + " must be a string");
    return node.Scalar();
  }

  StatusOr<std::string> Name(const YAML::Node& node, const std::string& what) const {
    ASSIGN_OR_RETURN(std::string name, String(node, what));
    if (name.empty()) return Error(node, what + " must not be empty");
    return name;
  }

  StatusOr<int64_t> Int(const YAML::Node& node, const std::string& what) const {
    if (!node.IsScalar()) return Error(node, what + " must be an integer");
    const std::string& text = node.Scalar();
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return Error(node, what + " must be an integer, got '" + text + "'");
    }
    return v;
  }

  StatusOr<bool> Bool(const YAML::Node& node, const std::string& what) const {
    if (node.IsScalar()) {
      const std::string& t = node.Scalar();
      if (t == "true" || t == "yes" || t == "on") return true;
      if (t == "false" || t == "no" || t == "off") return false;
    }
    return Error(node, what + " must be true or false");
  }

  StatusOr<std::vector<std::string>> Names(const YAML::Node& node, const std::string& what) const {
    std::vector<std::string> out;
    if (node.IsScalar()) {
      ASSIGN_OR_RETURN(std::string one, Name(node, what));
      out.push_back(std::move(one));
      return out;
    }
    if (!node.IsSequence()) return Error(node, what + " must be a list of column names");
    for (const YAML::Node& item : node) {
      ASSIGN_OR_RETURN(std::string one, Name(item, what + " entry"));
      out.push_back(std::move(one));
    }
    if (out.empty()) return Error(node, what + " must not be empty");
    return out;
  }

  // An ordered mapping of names to strings (rename, cast, derive, aggregate).
  StatusOr<std::vector<std::pair<std::string, std::string>>> Pairs(const YAML::Node& node,
                                                                   const std::string& what) const {
    if (!node.IsMap() || node.size() == 0) {
      return Error(node, what + " must be a non-empty mapping of names to values");
    }
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& item : node) {
      ASSIGN_OR_RETURN(std::string key, Name(item.first, what + " name"));
      ASSIGN_OR_RETURN(std::string value, String(item.second, what + " '" + key + "'"));
      for (const auto& [k, v] : out) {
        if (k == key) return Error(item.first, what + " names '" + key + "' twice");
      }
      out.emplace_back(std::move(key), std::move(value));
    }
    return out;
  }

 private:
  std::string origin_;
};

StatusOr<SourceSpec> ParseSource(const Context& c, const YAML::Node& node) {
  if (!node.IsMap()) return c.Error(node, "source must be a mapping with a 'type'");
  SourceSpec source;
  const YAML::Node type_node = node["type"];
  if (!type_node) return c.Error(node, "source needs a 'type' (csv, jsonl, http, lake or hub)");
  ASSIGN_OR_RETURN(std::string type, c.String(type_node, "source type"));
  auto parse_csv_options = [&](const YAML::Node& n) -> Status {
    if (n["header"]) {
      ASSIGN_OR_RETURN(source.header, c.Bool(n["header"], "source header"));
    }
    if (n["delimiter"]) {
      ASSIGN_OR_RETURN(std::string d, c.String(n["delimiter"], "source delimiter"));
      if (d == "\\t" || d == "tab") d = "\t";
      if (d.size() != 1 || d == "\"" || d == "\n" || d == "\r") {
        return c.Error(n["delimiter"], "source delimiter must be one character");
      }
      source.delimiter = d[0];
    }
    if (n["columns"]) {
      ASSIGN_OR_RETURN(source.columns, c.Names(n["columns"], "source columns"));
    }
    if (!source.header && source.columns.empty()) {
      return c.Error(n, "a CSV source without a header row needs 'columns'");
    }
    return Status::Ok();
  };
  if (type == "csv" || type == "jsonl" || type == "json") {
    source.kind = type == "csv" ? SourceSpec::Kind::kCsv : SourceSpec::Kind::kJsonLines;
    if (type == "csv") {
      RETURN_IF_ERROR(
          c.CheckKeys(node, "source", {"type", "path", "header", "delimiter", "columns"}));
      RETURN_IF_ERROR(parse_csv_options(node));
    } else {
      RETURN_IF_ERROR(c.CheckKeys(node, "source", {"type", "path"}));
    }
    if (!node["path"]) return c.Error(node, "a " + type + " source needs a 'path'");
    ASSIGN_OR_RETURN(source.path, c.Name(node["path"], "source path"));
  } else if (type == "http") {
    source.kind = SourceSpec::Kind::kHttp;
    RETURN_IF_ERROR(c.CheckKeys(
        node, "source", {"type", "url", "format", "header", "delimiter", "columns", "timeout_ms"}));
    if (!node["url"]) return c.Error(node, "an http source needs a 'url'");
    ASSIGN_OR_RETURN(source.url, c.Name(node["url"], "source url"));
    if (source.url.rfind("http://", 0) != 0 && source.url.rfind("https://", 0) != 0) {
      return c.Error(node["url"], "source url must start with http:// or https://");
    }
    std::string format = "csv";
    if (node["format"]) {
      ASSIGN_OR_RETURN(format, c.String(node["format"], "source format"));
    }
    if (format == "csv") {
      source.format = SourceSpec::Kind::kCsv;
    } else if (format == "jsonl" || format == "json") {
      source.format = SourceSpec::Kind::kJsonLines;
    } else {
      return c.Error(node["format"], "source format must be csv or jsonl, got '" + format + "'");
    }
    RETURN_IF_ERROR(parse_csv_options(node));
    if (node["timeout_ms"]) {
      ASSIGN_OR_RETURN(source.timeout_ms, c.Int(node["timeout_ms"], "source timeout_ms"));
      if (source.timeout_ms <= 0) return c.Error(node["timeout_ms"], "timeout_ms must be > 0");
    }
  } else if (type == "hub") {
    source.kind = SourceSpec::Kind::kHub;
    source.format = SourceSpec::Kind::kJsonLines;
    RETURN_IF_ERROR(c.CheckKeys(
        node, "source", {"type", "url", "token_file", "model", "site", "labelled", "timeout_ms"}));
    if (node["labelled"]) {
      ASSIGN_OR_RETURN(const bool labelled, c.Bool(node["labelled"], "source labelled"));
      if (!labelled) {
        return c.Error(node["labelled"],
                       "a hub source reads labelled events only ('labelled: false' is not "
                       "supported yet)");
      }
    }
    if (!node["model"]) return c.Error(node, "a hub source needs a 'model'");
    ASSIGN_OR_RETURN(source.model, c.String(node["model"], "source model"));
    if (source.model.empty()) return c.Error(node["model"], "source model must not be empty");
    if (node["url"]) {
      ASSIGN_OR_RETURN(source.url, c.String(node["url"], "source url"));
      if (source.url.rfind("http://", 0) != 0 && source.url.rfind("https://", 0) != 0) {
        return c.Error(node["url"], "source url must start with http:// or https://");
      }
    }
    if (node["token_file"]) {
      ASSIGN_OR_RETURN(source.token_file, c.String(node["token_file"], "source token_file"));
    }
    if (node["site"]) {
      ASSIGN_OR_RETURN(source.site, c.String(node["site"], "source site"));
    }
    if (node["timeout_ms"]) {
      ASSIGN_OR_RETURN(source.timeout_ms, c.Int(node["timeout_ms"], "source timeout_ms"));
      if (source.timeout_ms <= 0) return c.Error(node["timeout_ms"], "timeout_ms must be > 0");
    }
  } else if (type == "lake") {
    source.kind = SourceSpec::Kind::kLake;
    RETURN_IF_ERROR(c.CheckKeys(node, "source", {"type", "table", "snapshot"}));
    if (!node["table"]) return c.Error(node, "a lake source needs a 'table'");
    ASSIGN_OR_RETURN(source.table, c.Name(node["table"], "source table"));
    if (node["snapshot"]) {
      ASSIGN_OR_RETURN(int64_t snapshot, c.Int(node["snapshot"], "source snapshot"));
      source.snapshot = snapshot;
    }
  } else {
    return c.Error(type_node, "unknown source type '" + type + "' (csv, jsonl, http, lake or hub)");
  }
  return source;
}

StatusOr<StepSpec> ParseStep(const Context& c, const YAML::Node& node, size_t index) {
  const std::string where = "steps[" + std::to_string(index) + "]";
  if (!node.IsMap() || node.size() != 1) {
    return c.Error(node, where +
                             " must be a mapping with exactly one step name (select, "
                             "rename, cast, filter, derive, dedupe or aggregate)");
  }
  const auto item = *node.begin();
  const std::string kind = item.first.Scalar();
  const YAML::Node body = item.second;
  StepSpec step;
  step.line = node.Mark().line + 1;
  if (kind == "select") {
    step.kind = StepSpec::Kind::kSelect;
    ASSIGN_OR_RETURN(step.columns, c.Names(body, where + " select"));
  } else if (kind == "rename") {
    step.kind = StepSpec::Kind::kRename;
    ASSIGN_OR_RETURN(step.pairs, c.Pairs(body, where + " rename"));
  } else if (kind == "cast") {
    step.kind = StepSpec::Kind::kCast;
    ASSIGN_OR_RETURN(step.pairs, c.Pairs(body, where + " cast"));
    for (const auto& [column, type] : step.pairs) {
      if (!lake::ParseType(type).ok()) {
        return c.Error(body[column], "unknown type '" + type + "' for column '" + column +
                                         "' (bool, int64, double, string, timestamp, date)");
      }
    }
  } else if (kind == "filter") {
    step.kind = StepSpec::Kind::kFilter;
    ASSIGN_OR_RETURN(step.expression, c.Name(body, where + " filter"));
  } else if (kind == "derive") {
    step.kind = StepSpec::Kind::kDerive;
    ASSIGN_OR_RETURN(step.pairs, c.Pairs(body, where + " derive"));
  } else if (kind == "dedupe") {
    step.kind = StepSpec::Kind::kDedupe;
    RETURN_IF_ERROR(
        c.CheckKeys(body, where + " dedupe", {"key", "keep", "order_by", "max_memory_mb"}));
    if (!body["key"]) return c.Error(body, where + " dedupe needs 'key'");
    ASSIGN_OR_RETURN(step.key, c.Names(body["key"], where + " dedupe key"));
    if (body["keep"]) {
      ASSIGN_OR_RETURN(step.keep, c.String(body["keep"], "dedupe keep"));
    }
    if (step.keep != "latest" && step.keep != "first" && step.keep != "last") {
      return c.Error(body["keep"],
                     "dedupe keep must be latest, first or last, got '" + step.keep + "'");
    }
    if (body["order_by"]) {
      ASSIGN_OR_RETURN(step.order_by, c.Name(body["order_by"], "dedupe order_by"));
    }
    if (step.keep == "latest" && step.order_by.empty()) {
      return c.Error(body, where + " dedupe keep: latest needs 'order_by'");
    }
  } else if (kind == "aggregate") {
    step.kind = StepSpec::Kind::kAggregate;
    RETURN_IF_ERROR(
        c.CheckKeys(body, where + " aggregate", {"group_by", "values", "max_memory_mb"}));
    if (body["group_by"]) {
      ASSIGN_OR_RETURN(step.key, c.Names(body["group_by"], where + " aggregate group_by"));
    }
    if (!body["values"]) {
      return c.Error(body, where + " aggregate needs 'values' (name: \"sum(x)\", ...)");
    }
    ASSIGN_OR_RETURN(step.pairs, c.Pairs(body["values"], where + " aggregate values"));
  } else {
    return c.Error(item.first, "unknown step '" + kind +
                                   "' (select, rename, cast, filter, derive, dedupe, aggregate)");
  }
  const bool blocking =
      step.kind == StepSpec::Kind::kDedupe || step.kind == StepSpec::Kind::kAggregate;
  if (blocking && body["max_memory_mb"]) {
    ASSIGN_OR_RETURN(step.max_memory_mb, c.Int(body["max_memory_mb"], kind + " max_memory_mb"));
    if (step.max_memory_mb < 1) {
      return c.Error(body["max_memory_mb"], kind + " max_memory_mb must be at least 1");
    }
  }
  return step;
}

StatusOr<PipelineSpec> ParseRoot(const Context& c, const YAML::Node& root) {
  if (!root.IsMap()) return c.Error(root, "a pipeline spec must be a mapping");
  RETURN_IF_ERROR(
      c.CheckKeys(root, "the spec",
                  {"name", "source", "schema", "steps", "target", "incremental", "max_rejected"}));
  PipelineSpec spec;
  if (!root["name"]) return c.Error(root, "the spec needs a 'name'");
  ASSIGN_OR_RETURN(spec.name, c.Name(root["name"], "name"));
  if (!IsValidName(spec.name)) {
    return c.Error(root["name"],
                   "name '" + spec.name + "' must be 1-64 letters, digits, '_' or '-'");
  }
  if (!root["source"]) return c.Error(root, "the spec needs a 'source'");
  ASSIGN_OR_RETURN(spec.source, ParseSource(c, root["source"]));
  if (const YAML::Node schema = root["schema"]) {
    if (!schema.IsSequence() || schema.size() == 0) {
      return c.Error(schema, "schema must be a list of {name, type}");
    }
    for (const YAML::Node& field : schema) {
      RETURN_IF_ERROR(c.CheckKeys(field, "a schema field", {"name", "type"}));
      if (!field["name"] || !field["type"]) {
        return c.Error(field, "a schema field needs 'name' and 'type'");
      }
      ASSIGN_OR_RETURN(std::string name, c.Name(field["name"], "schema field name"));
      ASSIGN_OR_RETURN(std::string type_name, c.String(field["type"], "schema field type"));
      StatusOr<lake::Type> type = lake::ParseType(type_name);
      if (!type.ok()) {
        return c.Error(field["type"], "unknown type '" + type_name + "' for column '" + name +
                                          "' (bool, int64, double, string, timestamp, date)");
      }
      for (const auto& [n, t] : spec.schema) {
        if (n == name) return c.Error(field, "schema names column '" + name + "' twice");
      }
      spec.schema.emplace_back(std::move(name), *type);
    }
  }
  if (const YAML::Node steps = root["steps"]) {
    if (!steps.IsSequence()) return c.Error(steps, "steps must be a list");
    for (size_t i = 0; i < steps.size(); ++i) {
      ASSIGN_OR_RETURN(StepSpec step, ParseStep(c, steps[i], i));
      spec.steps.push_back(std::move(step));
    }
  }
  if (!root["target"]) return c.Error(root, "the spec needs a 'target'");
  const YAML::Node target = root["target"];
  RETURN_IF_ERROR(c.CheckKeys(target, "target", {"table", "mode", "partition", "rejected_table"}));
  if (!target["table"]) return c.Error(target, "target needs a 'table'");
  ASSIGN_OR_RETURN(spec.target.table, c.Name(target["table"], "target table"));
  if (!IsValidName(spec.target.table)) {
    return c.Error(target["table"], "table name '" + spec.target.table +
                                        "' must be 1-64 letters, digits, '_' or '-'");
  }
  if (target["mode"]) {
    ASSIGN_OR_RETURN(std::string mode, c.String(target["mode"], "target mode"));
    if (mode != "append" && mode != "overwrite") {
      return c.Error(target["mode"], "target mode must be append or overwrite, got '" + mode + "'");
    }
    spec.target.overwrite = mode == "overwrite";
  }
  if (target["partition"]) {
    ASSIGN_OR_RETURN(spec.target.partition, c.String(target["partition"], "target partition"));
  }
  spec.target.rejected_table = spec.target.table + "_rejected";
  if (target["rejected_table"]) {
    ASSIGN_OR_RETURN(spec.target.rejected_table,
                     c.Name(target["rejected_table"], "target rejected_table"));
    if (!IsValidName(spec.target.rejected_table) ||
        spec.target.rejected_table == spec.target.table) {
      return c.Error(target["rejected_table"],
                     "rejected_table must be a valid name other than "
                     "the target table");
    }
  }
  if (const YAML::Node incremental = root["incremental"]) {
    RETURN_IF_ERROR(c.CheckKeys(incremental, "incremental", {"watermark"}));
    if (!incremental["watermark"]) return c.Error(incremental, "incremental needs 'watermark'");
    ASSIGN_OR_RETURN(spec.watermark, c.Name(incremental["watermark"], "incremental watermark"));
    if (spec.target.overwrite) {
      return c.Error(incremental, "incremental loads need target mode append");
    }
  }
  if (root["max_rejected"]) {
    ASSIGN_OR_RETURN(int64_t max, c.Int(root["max_rejected"], "max_rejected"));
    if (max < 0) return c.Error(root["max_rejected"], "max_rejected must be >= 0");
    spec.max_rejected = max;
  }
  return spec;
}

}  // namespace

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
  });
}

StatusOr<PipelineSpec> ParseSpec(std::string_view yaml, const std::string& origin,
                                 const std::filesystem::path& base_dir) {
  const Context c(origin);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(origin + ": line " + std::to_string(e.mark.line + 1) +
                                ": invalid YAML: " + e.msg);
  }
  try {
    ASSIGN_OR_RETURN(PipelineSpec spec, ParseRoot(c, root));
    spec.base_dir = base_dir;
    return spec;
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(origin + ": line " + std::to_string(e.mark.line + 1) + ": " +
                                e.msg);
  }
}

StatusOr<PipelineSpec> LoadSpec(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return InvalidArgumentError("cannot read the spec file " + file.string());
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::path base = file.parent_path();
  if (base.empty()) base = ".";
  return ParseSpec(text.str(), file.filename().string(), std::filesystem::absolute(base));
}

}  // namespace edgeloop::pipeline
