#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"
#include "common/build_info.h"

namespace edgeloop::cli {

Command AddVersionCommand(CLI::App& root) {
  CLI::App* app = root.add_subcommand("version", "Print the version and build information");
  return {app, [] {
            std::cout << "edgeloop " << build_info::kVersion << "\n"
                      << "commit: " << build_info::kGitCommit << "\n"
                      << "build: " << build_info::kBuildType << "\n"
                      << "compiler: " << build_info::kCompiler << "\n";
            return 0;
          }};
}

}  // namespace edgeloop::cli
