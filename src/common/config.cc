#include "common/config.h"

#include <yaml-cpp/yaml.h>

#include <memory>
#include <utility>

namespace edgeloop {
namespace {

void Flatten(const YAML::Node& map, std::vector<std::string>& parents,
             std::vector<CLI::ConfigItem>* items) {
  for (const auto& entry : map) {
    if (!entry.first.IsScalar()) {
      throw CLI::ConversionError("config file: keys must be strings");
    }
    const std::string key = entry.first.Scalar();
    const YAML::Node& value = entry.second;
    if (value.IsMap()) {
      parents.push_back(key);
      Flatten(value, parents, items);
      parents.pop_back();
      continue;
    }
    CLI::ConfigItem item;
    item.parents = parents;
    item.name = key;
    if (value.IsScalar()) {
      item.inputs.push_back(value.Scalar());
    } else if (value.IsSequence()) {
      for (const auto& element : value) {
        if (!element.IsScalar()) {
          throw CLI::ConversionError("config file: '" + key +
                                     "' must be a scalar or a list of scalars");
        }
        item.inputs.push_back(element.Scalar());
      }
    } else if (value.IsNull()) {
      continue;  // `key:` with no value leaves the default.
    } else {
      throw CLI::ConversionError("config file: '" + key + "' has an unsupported value");
    }
    items->push_back(std::move(item));
  }
}

// The options of `app` that have a value (or a default, with `default_also`), as name -> values.
std::vector<std::pair<std::string, std::vector<std::string>>> ConfiguredValues(const CLI::App* app,
                                                                               bool default_also) {
  std::vector<std::pair<std::string, std::vector<std::string>>> values;
  for (const CLI::Option* option : app->get_options()) {
    if (!option->get_configurable() || option->get_lnames().empty()) continue;
    const std::string& name = option->get_lnames().front();
    if (name == "help" || name == "config") continue;
    std::vector<std::string> results = option->reduced_results();
    if (results.empty() && default_also && !option->get_default_str().empty()) {
      results.push_back(option->get_default_str());
    }
    if (!results.empty()) values.emplace_back(name, std::move(results));
  }
  return values;
}

void Emit(const CLI::App* app, bool default_also, YAML::Emitter& out) {
  for (auto& [name, values] : ConfiguredValues(app, default_also)) {
    out << YAML::Key << name << YAML::Value;
    if (values.size() == 1) {
      out << values.front();
    } else {
      out << YAML::Flow << values;
    }
  }
  for (const CLI::App* sub : app->get_subcommands({})) {
    if (sub->get_name().empty() || ConfiguredValues(sub, default_also).empty()) continue;
    out << YAML::Key << sub->get_name() << YAML::Value << YAML::BeginMap;
    Emit(sub, default_also, out);
    out << YAML::EndMap;
  }
}

}  // namespace

std::vector<CLI::ConfigItem> YamlConfigFormatter::from_config(std::istream& input) const {
  std::vector<CLI::ConfigItem> result;
  try {
    YAML::Node root = YAML::Load(input);
    if (root.IsNull()) return result;
    if (!root.IsMap()) throw CLI::ConversionError("config file: the top level must be a mapping");
    std::vector<std::string> parents;
    Flatten(root, parents, &result);
  } catch (const YAML::Exception& e) {
    throw CLI::ConversionError(std::string("config file is not valid YAML: ") + e.what());
  }
  return result;
}

std::string YamlConfigFormatter::to_config(const CLI::App* app, bool default_also,
                                           bool /*write_description*/,
                                           std::string /*prefix*/) const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  Emit(app, default_also, out);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

void AddYamlConfigOption(CLI::App* app) {
  app->config_formatter(std::make_shared<YamlConfigFormatter>());
  app->set_config("--config", "", "YAML configuration file; command-line flags override it");
  app->allow_config_extras(CLI::config_extras_mode::error);
}

}  // namespace edgeloop
