#include "inference/model_config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace edgeloop::inference {
namespace {

// yaml-cpp throws on type mismatches; every access below goes through these helpers so that
// errors become a Status naming the field.
StatusOr<std::string> ScalarString(const YAML::Node& node, const std::string& field) {
  if (!node.IsScalar()) return InvalidArgumentError("'" + field + "' must be a scalar");
  return node.Scalar();
}

StatusOr<int64_t> ScalarInt(const YAML::Node& node, const std::string& field) {
  if (!node.IsScalar()) return InvalidArgumentError("'" + field + "' must be an integer");
  const std::string& text = node.Scalar();
  try {
    size_t used = 0;
    long long value = std::stoll(text, &used, 10);
    if (used != text.size()) throw std::invalid_argument(text);
    return static_cast<int64_t>(value);
  } catch (const std::exception&) {
    return InvalidArgumentError("'" + field + "' must be an integer, got '" + text + "'");
  }
}

StatusOr<TensorSpec> ParseTensorSpec(const YAML::Node& node, const std::string& field,
                                     bool is_output) {
  if (!node.IsMap()) return InvalidArgumentError("'" + field + "' must be a mapping");
  TensorSpec spec;
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    if (key != "name" && key != "datatype" && key != "shape" && !(is_output && key == "kind")) {
      return InvalidArgumentError("'" + field + "' has unknown field '" + key + "'");
    }
  }
  if (!node["name"]) return InvalidArgumentError("'" + field + ".name' is required");
  ASSIGN_OR_RETURN(spec.name, ScalarString(node["name"], field + ".name"));
  if (spec.name.empty()) return InvalidArgumentError("'" + field + ".name' is empty");
  if (!node["datatype"]) return InvalidArgumentError("'" + field + ".datatype' is required");
  ASSIGN_OR_RETURN(std::string datatype, ScalarString(node["datatype"], field + ".datatype"));
  auto parsed = DataTypeFromName(datatype);
  if (!parsed) {
    return InvalidArgumentError("'" + field + ".datatype' is not an OIP datatype: '" + datatype +
                                "'");
  }
  spec.datatype = *parsed;
  const YAML::Node shape = node["shape"];
  if (!shape || !shape.IsSequence() || shape.size() == 0) {
    return InvalidArgumentError("'" + field + ".shape' must be a non-empty list");
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    ASSIGN_OR_RETURN(int64_t dim, ScalarInt(shape[i], field + ".shape"));
    if (dim < -1 || dim == 0) {
      return InvalidArgumentError("'" + field + ".shape' dimensions must be -1 or positive");
    }
    spec.shape.push_back(dim);
  }
  if (spec.shape[0] != -1) {
    return InvalidArgumentError("'" + field +
                                ".shape' must start with -1, the batch (row) dimension");
  }
  for (size_t i = 1; i < spec.shape.size(); ++i) {
    if (spec.shape[i] == -1) {
      return InvalidArgumentError("'" + field +
                                  ".shape' may be variable (-1) only in its first dimension");
    }
  }
  if (node["kind"]) {
    ASSIGN_OR_RETURN(spec.kind, ScalarString(node["kind"], field + ".kind"));
  }
  return spec;
}

StatusOr<std::vector<TensorSpec>> ParseTensorList(const YAML::Node& node, const char* field,
                                                  bool is_output) {
  if (!node || !node.IsSequence() || node.size() == 0) {
    return InvalidArgumentError(std::string("'") + field + "' must be a non-empty list");
  }
  std::vector<TensorSpec> specs;
  std::set<std::string> names;
  for (size_t i = 0; i < node.size(); ++i) {
    ASSIGN_OR_RETURN(
        TensorSpec spec,
        ParseTensorSpec(node[i], std::string(field) + "[" + std::to_string(i) + "]", is_output));
    if (!names.insert(spec.name).second) {
      return InvalidArgumentError(std::string("'") + field + "' repeats the name '" + spec.name +
                                  "'");
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

Status ParseBatching(const YAML::Node& node, BatchingConfig* out) {
  if (!node.IsMap()) return InvalidArgumentError("'batching' must be a mapping");
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    int64_t* target = nullptr;
    if (key == "max_batch_size") {
      target = &out->max_batch_size;
    } else if (key == "max_queue_delay_us") {
      target = &out->max_queue_delay_us;
    } else if (key == "max_queue_size") {
      target = &out->max_queue_size;
    } else {
      return InvalidArgumentError("'batching' has unknown field '" + key + "'");
    }
    ASSIGN_OR_RETURN(*target, ScalarInt(entry.second, "batching." + key));
  }
  if (out->max_batch_size < 0 || out->max_batch_size > 1'000'000) {
    return InvalidArgumentError("'batching.max_batch_size' must be in [0, 1000000]");
  }
  if (out->max_queue_delay_us < 0 || out->max_queue_delay_us > 10'000'000) {
    return InvalidArgumentError("'batching.max_queue_delay_us' must be in [0, 10000000]");
  }
  if (out->max_queue_size < 1 || out->max_queue_size > 1'000'000) {
    return InvalidArgumentError("'batching.max_queue_size' must be in [1, 1000000]");
  }
  return Status::Ok();
}

// `encoding:` (encoding.h): a list of {column, kind, categories}.
StatusOr<InputEncoding> ParseEncoding(const YAML::Node& node,
                                      const std::vector<TensorSpec>& inputs) {
  if (!node.IsSequence() || node.size() == 0) {
    return InvalidArgumentError("'encoding' must be a non-empty list of columns");
  }
  InputEncoding encoding;
  std::set<std::string> names;
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string field = "encoding[" + std::to_string(i) + "]";
    const YAML::Node entry = node[i];
    if (!entry.IsMap()) return InvalidArgumentError("'" + field + "' must be a mapping");
    for (const auto& key_value : entry) {
      const std::string key = key_value.first.as<std::string>();
      if (key != "column" && key != "kind" && key != "categories") {
        return InvalidArgumentError("'" + field + "' has unknown field '" + key + "'");
      }
    }
    EncodedColumn column;
    if (!entry["column"]) return InvalidArgumentError("'" + field + ".column' is required");
    ASSIGN_OR_RETURN(column.column, ScalarString(entry["column"], field + ".column"));
    if (!names.insert(column.column).second) {
      return InvalidArgumentError("'encoding' repeats the column '" + column.column + "'");
    }
    std::string kind = "number";
    if (entry["kind"]) {
      ASSIGN_OR_RETURN(kind, ScalarString(entry["kind"], field + ".kind"));
    }
    if (kind == "number") {
      column.kind = EncodedColumn::Kind::kNumber;
    } else if (kind == "one_hot") {
      column.kind = EncodedColumn::Kind::kOneHot;
    } else if (kind == "ordinal") {
      column.kind = EncodedColumn::Kind::kOrdinal;
    } else {
      return InvalidArgumentError("'" + field + ".kind' must be number, one_hot or ordinal, not '" +
                                  kind + "'");
    }
    const YAML::Node categories = entry["categories"];
    if (column.kind == EncodedColumn::Kind::kNumber) {
      if (categories) return InvalidArgumentError("'" + field + "': a number has no categories");
    } else {
      if (!categories || !categories.IsSequence() || categories.size() == 0) {
        return InvalidArgumentError("'" + field + ".categories' must be a non-empty list");
      }
      std::set<std::string> seen;
      for (size_t k = 0; k < categories.size(); ++k) {
        ASSIGN_OR_RETURN(std::string category, ScalarString(categories[k], field + ".categories"));
        if (category.empty() || !seen.insert(category).second) {
          return InvalidArgumentError("'" + field +
                                      ".categories' must be distinct non-empty strings");
        }
        column.categories.push_back(std::move(category));
      }
    }
    encoding.columns.push_back(std::move(column));
  }
  if (inputs.size() != 1 || inputs[0].datatype != DataType::kFp32 || inputs[0].shape.size() != 2) {
    return InvalidArgumentError(
        "with 'encoding', 'inputs' must be one FP32 input of shape [-1, features]");
  }
  if (inputs[0].shape[1] != encoding.num_features()) {
    return InvalidArgumentError("'encoding' gives " + std::to_string(encoding.num_features()) +
                                " features but the input '" + inputs[0].name + "' has " +
                                std::to_string(inputs[0].shape[1]));
  }
  encoding.model_input = inputs[0];
  return encoding;
}

StatusOr<ModelConfig> ParseNode(const YAML::Node& root, ModelConfig config) {
  if (!root.IsMap()) return InvalidArgumentError("model.yaml must be a mapping");
  static const std::set<std::string> kKnown = {
      "framework",  "backend",       "model_file", "inputs",  "outputs", "batching",
      "parameters", "feature_names", "name",       "version", "encoding"};
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    if (!kKnown.count(key)) return InvalidArgumentError("unknown field '" + key + "'");
  }
  // `name` and `version`, when present, must agree with the folders; the folders are the truth.
  if (root["name"]) {
    ASSIGN_OR_RETURN(std::string name, ScalarString(root["name"], "name"));
    if (name != config.name) {
      return InvalidArgumentError("'name' is '" + name + "' but the model folder is '" +
                                  config.name + "'");
    }
  }
  if (root["version"]) {
    ASSIGN_OR_RETURN(int64_t version, ScalarInt(root["version"], "version"));
    if (version != config.version) {
      return InvalidArgumentError("'version' is " + std::to_string(version) +
                                  " but the version folder is " + std::to_string(config.version));
    }
  }
  if (!root["framework"]) return InvalidArgumentError("'framework' is required");
  ASSIGN_OR_RETURN(config.framework, ScalarString(root["framework"], "framework"));
  if (root["backend"]) {
    ASSIGN_OR_RETURN(config.backend, ScalarString(root["backend"], "backend"));
  }
  if (!root["model_file"]) return InvalidArgumentError("'model_file' is required");
  ASSIGN_OR_RETURN(std::string model_file, ScalarString(root["model_file"], "model_file"));
  std::filesystem::path relative = std::filesystem::path(model_file).lexically_normal();
  if (model_file.empty() || relative.is_absolute() || relative.empty() ||
      *relative.begin() == "..") {
    return InvalidArgumentError("'model_file' must be a path inside the version folder, got '" +
                                model_file + "'");
  }
  config.model_file = config.version_dir / relative;
  ASSIGN_OR_RETURN(config.inputs, ParseTensorList(root["inputs"], "inputs", false));
  ASSIGN_OR_RETURN(config.outputs, ParseTensorList(root["outputs"], "outputs", true));
  if (root["batching"]) RETURN_IF_ERROR(ParseBatching(root["batching"], &config.batching));
  if (const YAML::Node params = root["parameters"]) {
    if (!params.IsMap()) return InvalidArgumentError("'parameters' must be a mapping");
    for (const auto& entry : params) {
      const std::string key = entry.first.as<std::string>();
      ASSIGN_OR_RETURN(config.parameters[key], ScalarString(entry.second, "parameters." + key));
    }
  }
  if (const YAML::Node names = root["feature_names"]) {
    if (!names.IsSequence()) return InvalidArgumentError("'feature_names' must be a list");
    for (size_t i = 0; i < names.size(); ++i) {
      ASSIGN_OR_RETURN(std::string feature, ScalarString(names[i], "feature_names"));
      config.feature_names.push_back(std::move(feature));
    }
  }
  if (root["encoding"]) {
    ASSIGN_OR_RETURN(InputEncoding encoding, ParseEncoding(root["encoding"], config.inputs));
    config.inputs = {encoding.RawInputSpec()};
    config.encoding = std::move(encoding);
  }
  return config;
}

}  // namespace

bool IsDefaultOutput(const TensorSpec& spec) { return spec.kind != "contributions"; }

int ModelConfig::InputIndex(std::string_view input_name) const {
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].name == input_name) return static_cast<int>(i);
  }
  return -1;
}

int ModelConfig::OutputIndex(std::string_view output_name) const {
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i].name == output_name) return static_cast<int>(i);
  }
  return -1;
}

StatusOr<ModelConfig> ParseModelConfig(std::string_view yaml_text, std::string name,
                                       int64_t version, std::filesystem::path version_dir) {
  ModelConfig config;
  config.name = std::move(name);
  config.version = version;
  config.version_dir = std::move(version_dir);
  try {
    YAML::Node root = YAML::Load(std::string(yaml_text));
    return ParseNode(root, std::move(config));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string("model.yaml is not valid YAML: ") + e.what());
  }
}

StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& version_dir, std::string name,
                                      int64_t version) {
  const std::filesystem::path path = version_dir / "model.yaml";
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return InternalError("error reading " + path.string());
  auto config = ParseModelConfig(text.str(), std::move(name), version, version_dir);
  if (!config.ok()) return config.status().WithContext(path.string());
  return config;
}

}  // namespace edgeloop::inference
