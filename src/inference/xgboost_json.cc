#include "inference/xgboost_json.h"

#include <array>
#include <charconv>
#include <cmath>
#include <exception>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

namespace edgeloop::inference {
namespace {

// XGBoost stores every number as float32; parsing straight into float (strtof, not strtod then
// a cast) gives exactly the float XGBoost wrote, with no double rounding.
using Json = nlohmann::basic_json<std::map, std::vector, std::string, bool, std::int64_t,
                                  std::uint64_t, float>;

// XGBoost models nest about eight levels deep.
constexpr int kMaxNesting = 64;

// Builds the DOM like nlohmann's own SAX DOM builder, but refuses containers that declare more
// elements than the input has bytes (a 13-byte UBJSON file can otherwise declare 2^40 nulls and
// make the reader loop for hours) and nesting beyond kMaxNesting (the UBJSON reader recurses).
class BoundedDomBuilder {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  BoundedDomBuilder(Json* root, size_t max_elements)
      : dom_(*root, /*allow_exceptions_=*/false), max_elements_(max_elements) {}

  bool null() { return dom_.null(); }
  bool boolean(bool value) { return dom_.boolean(value); }
  bool number_integer(number_integer_t value) { return dom_.number_integer(value); }
  bool number_unsigned(number_unsigned_t value) { return dom_.number_unsigned(value); }
  bool number_float(number_float_t value, const string_t& text) {
    return dom_.number_float(value, text);
  }
  bool string(string_t& value) { return dom_.string(value); }
  bool binary(binary_t& value) { return dom_.binary(value); }
  bool start_object(std::size_t elements) { return Enter(elements) && dom_.start_object(elements); }
  bool key(string_t& value) { return dom_.key(value); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t elements) { return Enter(elements) && dom_.start_array(elements); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  template <typename Exception>
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const Exception& error) {
    if (error_.empty()) error_ = error.what();
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  bool Enter(std::size_t elements) {
    if (++depth_ > kMaxNesting) {
      error_ = "nesting deeper than " + std::to_string(kMaxNesting) + " levels";
      return false;
    }
    if (elements != static_cast<std::size_t>(-1) && elements > max_elements_) {
      error_ = "a container declares " + std::to_string(elements) +
               " elements, more than the file has bytes (truncated or corrupt file)";
      return false;
    }
    return true;
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  size_t max_elements_;
  int depth_ = 0;
  std::string error_;
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

XgboostFormat DetectFormat(std::string_view data) {
  size_t i = 0;
  while (i < data.size() && IsSpace(data[i])) ++i;
  if (i + 1 < data.size() && data[i] == '{') {
    const char next = data[i + 1];
    if (next == '"' || next == '}' || IsSpace(next)) return XgboostFormat::kJson;
    return XgboostFormat::kUbjson;
  }
  return XgboostFormat::kJson;  // not an object either way; the JSON error message is clearer
}

// XGBoost writes non-finite floats as the bare words NaN, Infinity and -Infinity, which JSON
// does not allow; they are quoted here, and the number readers below accept such strings.
// Returns nullopt when the text has none (the common case: no copy).
std::optional<std::string> QuoteNonFiniteLiterals(std::string_view text) {
  std::string out;
  bool in_string = false;
  size_t copied = 0;  // text[0, copied) is in `out` already
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      continue;
    }
    size_t length = 0;
    if (text.compare(i, 3, "NaN") == 0) {
      length = 3;
    } else if (text.compare(i, 8, "Infinity") == 0) {
      length = 8;
    } else if (text.compare(i, 9, "-Infinity") == 0) {
      length = 9;
    }
    if (length == 0) continue;
    if (out.empty()) out.reserve(text.size() + 1024);
    out.append(text.substr(copied, i - copied));
    out += '"';
    out.append(text.substr(i, length));
    out += '"';
    i += length - 1;
    copied = i + 1;
  }
  if (copied == 0) return std::nullopt;
  out.append(text.substr(copied));
  return out;
}

StatusOr<Json> ParseDocument(std::string_view data, XgboostFormat format) {
  if (data.empty()) return InvalidArgumentError("the model file is empty");
  if (format == XgboostFormat::kAuto) format = DetectFormat(data);
  const bool ubjson = format == XgboostFormat::kUbjson;
  std::optional<std::string> quoted;
  if (!ubjson) {
    quoted = QuoteNonFiniteLiterals(data);
    if (quoted) data = *quoted;
  }
  Json root;
  BoundedDomBuilder builder(&root, data.size());
  bool ok = false;
  try {
    ok = Json::sax_parse(
        data.begin(), data.end(), &builder,
        ubjson ? nlohmann::detail::input_format_t::ubjson : nlohmann::detail::input_format_t::json,
        /*strict=*/true);
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("the model file is not valid ") +
                                (ubjson ? "UBJSON" : "JSON") + ": " + e.what());
  }
  if (!ok) {
    return InvalidArgumentError(std::string("the model file is not valid ") +
                                (ubjson ? "UBJSON" : "JSON") +
                                " (truncated or corrupt?): " + builder.error());
  }
  if (!root.is_object()) {
    return InvalidArgumentError("the model file does not hold an XGBoost model (not an object)");
  }
  return root;
}

// Field access that never throws: every accessor checks the type first and names the field.
StatusOr<const Json*> Member(const Json& object, const char* key, const std::string& path) {
  if (!object.is_object()) return InvalidArgumentError("'" + path + "' must be an object");
  auto it = object.find(key);
  if (it == object.end()) {
    return InvalidArgumentError("missing field '" + path + "." + key + "'");
  }
  return &*it;
}

const Json* OptionalMember(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// XGBoost writes most scalar parameters as strings ("20", "5E-1"); numbers are accepted too.
StatusOr<int64_t> IntValue(const Json& value, const std::string& path) {
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    int64_t parsed = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
    if (ec == std::errc() && end == text.data() + text.size()) return parsed;
  }
  return InvalidArgumentError("'" + path + "' must be an integer");
}

StatusOr<float> FloatValue(const Json& value, const std::string& path) {
  if (value.is_number()) return value.get<float>();
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    float parsed = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
    if (ec == std::errc() && end == text.data() + text.size()) return parsed;
  }
  return InvalidArgumentError("'" + path + "' must be a number");
}

StatusOr<std::string> StringValue(const Json& value, const std::string& path) {
  if (!value.is_string()) return InvalidArgumentError("'" + path + "' must be a string");
  return value.get<std::string>();
}

StatusOr<int64_t> IntMember(const Json& object, const char* key, const std::string& path) {
  ASSIGN_OR_RETURN(const Json* value, Member(object, key, path));
  return IntValue(*value, path + "." + key);
}

StatusOr<const Json*> ArrayMember(const Json& object, const char* key, const std::string& path) {
  ASSIGN_OR_RETURN(const Json* value, Member(object, key, path));
  if (!value->is_array()) {
    return InvalidArgumentError("'" + path + "." + key + "' must be an array");
  }
  return value;
}

Status ReadInt32Array(const Json& object, const char* key, const std::string& path,
                      std::vector<int32_t>* out) {
  ASSIGN_OR_RETURN(const Json* array, ArrayMember(object, key, path));
  out->clear();
  out->reserve(array->size());
  for (const Json& element : *array) {
    if (!element.is_number_integer()) {
      return InvalidArgumentError("'" + path + "." + key + "' must hold integers");
    }
    const int64_t value = element.get<int64_t>();
    if (value < std::numeric_limits<int32_t>::min() ||
        value > std::numeric_limits<int32_t>::max()) {
      return InvalidArgumentError("'" + path + "." + key + "' holds an out-of-range integer");
    }
    out->push_back(static_cast<int32_t>(value));
  }
  return Status::Ok();
}

Status ReadFloatArray(const Json& array, const std::string& path, std::vector<float>* out) {
  if (!array.is_array()) return InvalidArgumentError("'" + path + "' must be an array");
  out->clear();
  out->reserve(array.size());
  for (const Json& element : array) {
    if (element.is_number()) {
      out->push_back(element.get<float>());
    } else {
      ASSIGN_OR_RETURN(const float value, FloatValue(element, path));
      out->push_back(value);
    }
  }
  return Status::Ok();
}

Status ReadFlagArray(const Json& object, const char* key, const std::string& path,
                     std::vector<uint8_t>* out) {
  ASSIGN_OR_RETURN(const Json* array, ArrayMember(object, key, path));
  out->clear();
  out->reserve(array->size());
  for (const Json& element : *array) {
    if (element.is_boolean()) {
      out->push_back(element.get<bool>() ? 1 : 0);
    } else if (element.is_number_integer()) {
      out->push_back(element.get<int64_t>() != 0 ? 1 : 0);
    } else {
      return InvalidArgumentError("'" + path + "." + key + "' must hold 0/1 flags");
    }
  }
  return Status::Ok();
}

bool IsMulticlass(XgboostObjective objective) {
  return objective == XgboostObjective::kMultiSoftprob ||
         objective == XgboostObjective::kMultiSoftmax;
}

constexpr std::array<std::pair<XgboostObjective, std::string_view>, 12> kObjectives = {{
    {XgboostObjective::kBinaryLogistic, "binary:logistic"},
    {XgboostObjective::kBinaryLogitRaw, "binary:logitraw"},
    {XgboostObjective::kRegSquaredError, "reg:squarederror"},
    {XgboostObjective::kRegSquaredLogError, "reg:squaredlogerror"},
    {XgboostObjective::kRegPseudoHuberError, "reg:pseudohubererror"},
    {XgboostObjective::kRegAbsoluteError, "reg:absoluteerror"},
    {XgboostObjective::kRegLogistic, "reg:logistic"},
    {XgboostObjective::kRegTweedie, "reg:tweedie"},
    {XgboostObjective::kRegGamma, "reg:gamma"},
    {XgboostObjective::kCountPoisson, "count:poisson"},
    {XgboostObjective::kMultiSoftprob, "multi:softprob"},
    {XgboostObjective::kMultiSoftmax, "multi:softmax"},
}};

StatusOr<XgboostHeader> ReadHeader(const Json& root) {
  XgboostHeader header;
  if (const Json* version = OptionalMember(root, "version"); version && version->is_array()) {
    for (const Json& part : *version) {
      if (part.is_number_integer()) header.version.push_back(part.get<int>());
    }
  }
  ASSIGN_OR_RETURN(const Json* learner, Member(root, "learner", "model"));
  ASSIGN_OR_RETURN(const Json* params, Member(*learner, "learner_model_param", "learner"));
  const std::string params_path = "learner.learner_model_param";
  ASSIGN_OR_RETURN(header.num_feature, IntMember(*params, "num_feature", params_path));
  if (header.num_feature < 1 || header.num_feature > std::numeric_limits<int32_t>::max()) {
    return InvalidArgumentError("'" + params_path + ".num_feature' must be in [1, 2^31), got " +
                                std::to_string(header.num_feature));
  }
  ASSIGN_OR_RETURN(header.num_class, IntMember(*params, "num_class", params_path));
  if (header.num_class < 0 || header.num_class > 1'000'000) {
    return InvalidArgumentError("'" + params_path +
                                ".num_class' is out of range: " + std::to_string(header.num_class));
  }
  if (OptionalMember(*params, "num_target") != nullptr) {
    ASSIGN_OR_RETURN(header.num_target, IntMember(*params, "num_target", params_path));
    if (header.num_target < 1) {
      return InvalidArgumentError("'" + params_path + ".num_target' must be >= 1");
    }
  }
  ASSIGN_OR_RETURN(const Json* base_score, Member(*params, "base_score", params_path));
  ASSIGN_OR_RETURN(header.base_score, FloatValue(*base_score, params_path + ".base_score"));

  ASSIGN_OR_RETURN(const Json* objective, Member(*learner, "objective", "learner"));
  ASSIGN_OR_RETURN(const Json* objective_name, Member(*objective, "name", "learner.objective"));
  ASSIGN_OR_RETURN(header.objective, StringValue(*objective_name, "learner.objective.name"));

  ASSIGN_OR_RETURN(const Json* booster, Member(*learner, "gradient_booster", "learner"));
  ASSIGN_OR_RETURN(const Json* booster_name, Member(*booster, "name", "learner.gradient_booster"));
  ASSIGN_OR_RETURN(header.booster, StringValue(*booster_name, "learner.gradient_booster.name"));
  return header;
}

// Checks the structure reachable from the root: children in range, every node reached once (no
// cycles, no shared subtrees), split features in range, numeric splits only. Sets tree->depth.
Status ValidateTree(XgboostTree* tree, const std::vector<int32_t>& split_type, int64_t num_feature,
                    const std::string& path) {
  const size_t n = tree->num_nodes();
  if (n == 0) return InvalidArgumentError("'" + path + "' has no nodes");
  std::vector<uint8_t> seen(n, 0);
  std::vector<std::pair<int32_t, int32_t>> stack;  // (node, depth)
  stack.emplace_back(0, 0);
  seen[0] = 1;
  int32_t max_depth = 0;
  while (!stack.empty()) {
    auto [node, depth] = stack.back();
    stack.pop_back();
    max_depth = std::max(max_depth, depth);
    const int32_t left = tree->left_children[node];
    const int32_t right = tree->right_children[node];
    const std::string where = path + " node " + std::to_string(node);
    if (left == -1) {
      if (right != -1) {
        return InvalidArgumentError(where + " has a right child but no left child");
      }
      continue;
    }
    if (left < 0 || static_cast<size_t>(left) >= n || right < 0 ||
        static_cast<size_t>(right) >= n) {
      return InvalidArgumentError(where + " has a child index out of range [0, " +
                                  std::to_string(n) + ")");
    }
    const int32_t feature = tree->split_indices[node];
    if (feature < 0 || feature >= num_feature) {
      return InvalidArgumentError(where + " splits on feature " + std::to_string(feature) +
                                  " but the model has num_feature " + std::to_string(num_feature));
    }
    if (!split_type.empty() && split_type[node] != 0) {
      return UnimplementedError(where +
                                " is a categorical split, which the native backend does not "
                                "support (use backend: capi)");
    }
    if (depth + 1 > kMaxXgboostTreeDepth) {
      return UnimplementedError(path + " is deeper than " + std::to_string(kMaxXgboostTreeDepth) +
                                " levels");
    }
    for (int32_t child : {left, right}) {
      if (seen[child]) {
        return InvalidArgumentError(where + " reaches node " + std::to_string(child) +
                                    " a second time (cycle or shared subtree)");
      }
      seen[child] = 1;
      stack.emplace_back(child, depth + 1);
    }
  }
  tree->depth = max_depth;
  return Status::Ok();
}

StatusOr<XgboostTree> ReadTree(const Json& json, int64_t num_feature, const std::string& path) {
  if (!json.is_object()) return InvalidArgumentError("'" + path + "' must be an object");
  XgboostTree tree;
  RETURN_IF_ERROR(ReadInt32Array(json, "left_children", path, &tree.left_children));
  RETURN_IF_ERROR(ReadInt32Array(json, "right_children", path, &tree.right_children));
  RETURN_IF_ERROR(ReadInt32Array(json, "split_indices", path, &tree.split_indices));
  ASSIGN_OR_RETURN(const Json* conditions, ArrayMember(json, "split_conditions", path));
  RETURN_IF_ERROR(ReadFloatArray(*conditions, path + ".split_conditions", &tree.split_conditions));
  RETURN_IF_ERROR(ReadFlagArray(json, "default_left", path, &tree.default_left));
  ASSIGN_OR_RETURN(const Json* hessian, ArrayMember(json, "sum_hessian", path));
  RETURN_IF_ERROR(ReadFloatArray(*hessian, path + ".sum_hessian", &tree.sum_hessian));
  std::vector<int32_t> split_type;
  if (OptionalMember(json, "split_type") != nullptr) {
    RETURN_IF_ERROR(ReadInt32Array(json, "split_type", path, &split_type));
  }

  const size_t n = tree.left_children.size();
  const std::pair<const char*, size_t> sizes[] = {
      {"right_children", tree.right_children.size()},
      {"split_indices", tree.split_indices.size()},
      {"split_conditions", tree.split_conditions.size()},
      {"default_left", tree.default_left.size()},
      {"sum_hessian", tree.sum_hessian.size()},
      {"split_type", split_type.empty() ? n : split_type.size()},
  };
  for (const auto& [name, size] : sizes) {
    if (size != n) {
      return InvalidArgumentError("'" + path + "." + name + "' has " + std::to_string(size) +
                                  " entries but left_children has " + std::to_string(n));
    }
  }
  if (const Json* param = OptionalMember(json, "tree_param")) {
    ASSIGN_OR_RETURN(int64_t num_nodes, IntMember(*param, "num_nodes", path + ".tree_param"));
    if (num_nodes != static_cast<int64_t>(n)) {
      return InvalidArgumentError("'" + path + ".tree_param.num_nodes' is " +
                                  std::to_string(num_nodes) + " but the arrays have " +
                                  std::to_string(n) + " nodes");
    }
    if (OptionalMember(*param, "size_leaf_vector") != nullptr) {
      ASSIGN_OR_RETURN(int64_t leaf_vector,
                       IntMember(*param, "size_leaf_vector", path + ".tree_param"));
      if (leaf_vector > 1) {
        return UnimplementedError("'" + path +
                                  "' has vector leaves (multi-target tree), which the native "
                                  "backend does not support");
      }
    }
  }
  if (const Json* nodes = OptionalMember(json, "categories_nodes");
      nodes != nullptr && nodes->is_array() && !nodes->empty()) {
    return UnimplementedError("'" + path +
                              "' has categorical splits, which the native backend does not "
                              "support (use backend: capi)");
  }
  RETURN_IF_ERROR(ValidateTree(&tree, split_type, num_feature, path));
  return tree;
}

}  // namespace

std::string_view XgboostObjectiveName(XgboostObjective objective) {
  for (const auto& [value, name] : kObjectives) {
    if (value == objective) return name;
  }
  return "unknown";
}

std::optional<XgboostObjective> XgboostObjectiveFromName(std::string_view name) {
  for (const auto& [value, known] : kObjectives) {
    if (known == name) return value;
  }
  return std::nullopt;
}

StatusOr<float> XgboostBaseMargin(XgboostObjective objective, float base_score) {
  switch (objective) {
    case XgboostObjective::kBinaryLogistic:
    case XgboostObjective::kRegLogistic:
      if (!(base_score > 0.0f && base_score < 1.0f)) {
        return InvalidArgumentError("base_score must be in (0, 1) for " +
                                    std::string(XgboostObjectiveName(objective)) + ", got " +
                                    std::to_string(base_score));
      }
      return -std::log(1.0f / base_score - 1.0f);
    case XgboostObjective::kRegTweedie:
    case XgboostObjective::kRegGamma:
    case XgboostObjective::kCountPoisson:
      if (!(base_score > 0.0f) || std::isinf(base_score)) {
        return InvalidArgumentError("base_score must be positive for " +
                                    std::string(XgboostObjectiveName(objective)) + ", got " +
                                    std::to_string(base_score));
      }
      return std::log(base_score);
    default:
      if (!std::isfinite(base_score)) return InvalidArgumentError("base_score is not finite");
      return base_score;
  }
}

StatusOr<XgboostHeader> ParseXgboostHeader(std::string_view data, XgboostFormat format) {
  ASSIGN_OR_RETURN(Json root, ParseDocument(data, format));
  return ReadHeader(root);
}

StatusOr<XgboostModel> ParseXgboostModel(std::string_view data, XgboostFormat format) {
  ASSIGN_OR_RETURN(Json root, ParseDocument(data, format));
  XgboostModel model;
  ASSIGN_OR_RETURN(model.header, ReadHeader(root));
  const XgboostHeader& header = model.header;

  auto objective = XgboostObjectiveFromName(header.objective);
  if (!objective) {
    return UnimplementedError("objective '" + header.objective +
                              "' is not supported by the native backend (use backend: capi)");
  }
  model.objective = *objective;
  if (header.num_target > 1) {
    return UnimplementedError("multi-target models (num_target " +
                              std::to_string(header.num_target) +
                              ") are not supported by the native backend");
  }
  if (IsMulticlass(model.objective) && header.num_class < 2) {
    return InvalidArgumentError(header.objective + " needs num_class >= 2, got " +
                                std::to_string(header.num_class));
  }
  if (!IsMulticlass(model.objective) && header.num_class > 1) {
    return UnimplementedError("num_class " + std::to_string(header.num_class) + " with objective " +
                              header.objective + " is not supported by the native backend");
  }
  ASSIGN_OR_RETURN(model.base_margin, XgboostBaseMargin(model.objective, header.base_score));

  // gbtree: gradient_booster.model; dart: gradient_booster.gbtree.model plus weight_drop.
  const Json& booster = root["learner"]["gradient_booster"];
  const Json* gbtree = &booster;
  std::string gbtree_path = "learner.gradient_booster";
  std::vector<float> weight_drop;
  if (header.booster == "dart") {
    ASSIGN_OR_RETURN(gbtree, Member(booster, "gbtree", gbtree_path));
    gbtree_path += ".gbtree";
    ASSIGN_OR_RETURN(const Json* weights, ArrayMember(booster, "weight_drop", gbtree_path));
    RETURN_IF_ERROR(ReadFloatArray(*weights, "learner.gradient_booster.weight_drop", &weight_drop));
  } else if (header.booster != "gbtree") {
    return UnimplementedError("booster '" + header.booster +
                              "' is not supported by the native backend (use backend: capi)");
  }
  ASSIGN_OR_RETURN(const Json* trees_model, Member(*gbtree, "model", gbtree_path));
  const std::string model_path = gbtree_path + ".model";
  ASSIGN_OR_RETURN(const Json* trees, ArrayMember(*trees_model, "trees", model_path));
  std::vector<int32_t> tree_info;
  RETURN_IF_ERROR(ReadInt32Array(*trees_model, "tree_info", model_path, &tree_info));
  if (tree_info.size() != trees->size()) {
    return InvalidArgumentError("'" + model_path + ".tree_info' has " +
                                std::to_string(tree_info.size()) + " entries for " +
                                std::to_string(trees->size()) + " trees");
  }
  if (const Json* param = OptionalMember(*trees_model, "gbtree_model_param")) {
    ASSIGN_OR_RETURN(int64_t num_trees,
                     IntMember(*param, "num_trees", model_path + ".gbtree_model_param"));
    if (num_trees != static_cast<int64_t>(trees->size())) {
      return InvalidArgumentError("'" + model_path + ".gbtree_model_param.num_trees' is " +
                                  std::to_string(num_trees) + " but there are " +
                                  std::to_string(trees->size()) + " trees");
    }
  }
  if (header.booster == "dart" && weight_drop.size() != trees->size()) {
    return InvalidArgumentError("'learner.gradient_booster.weight_drop' has " +
                                std::to_string(weight_drop.size()) + " entries for " +
                                std::to_string(trees->size()) + " trees");
  }

  model.trees.reserve(trees->size());
  for (size_t i = 0; i < trees->size(); ++i) {
    const std::string path = model_path + ".trees[" + std::to_string(i) + "]";
    ASSIGN_OR_RETURN(XgboostTree tree, ReadTree((*trees)[i], header.num_feature, path));
    if (tree_info[i] < 0 || tree_info[i] >= header.num_groups()) {
      return InvalidArgumentError("'" + model_path + ".tree_info[" + std::to_string(i) + "]' is " +
                                  std::to_string(tree_info[i]) + ", outside the model's " +
                                  std::to_string(header.num_groups()) + " output groups");
    }
    tree.group = tree_info[i];
    if (!weight_drop.empty()) tree.weight = weight_drop[i];
    model.trees.push_back(std::move(tree));
  }
  return model;
}

StatusOr<std::string> ReadXgboostModelFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open model file " + path.string());
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return InternalError("error reading model file " + path.string());
  return std::move(content).str();
}

}  // namespace edgeloop::inference
