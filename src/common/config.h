// Configuration from a YAML file plus command-line flags, where flags win.
//
// The CLI (CLI11) declares every option once. YamlConfigFormatter lets CLI11 read the same
// options from a YAML file given with --config: top-level keys are the global options without
// their dashes, and each subcommand's options sit in a mapping under the subcommand's name:
//
//   log-format: json
//   serve:
//     model-repository: /var/lib/edgeloop/models
//     http-port: 8000
//
// Keys the program does not know are an error, so that a typo does not silently do nothing.
#ifndef EDGELOOP_COMMON_CONFIG_H_
#define EDGELOOP_COMMON_CONFIG_H_

#include <CLI/CLI.hpp>
#include <istream>
#include <string>
#include <vector>

namespace edgeloop {

// Thread-compatible. Throws CLI::ParseError (with the file's problem) for invalid YAML or a
// value that is neither a scalar nor a list of scalars; CLI11 turns it into an exit message.
class YamlConfigFormatter : public CLI::Config {
 public:
  std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                        std::string prefix) const override;
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
};

// Installs the YAML formatter and a `--config FILE` option on `app`, and makes unknown keys in
// the file an error.
void AddYamlConfigOption(CLI::App* app);

}  // namespace edgeloop

#endif  // EDGELOOP_COMMON_CONFIG_H_
