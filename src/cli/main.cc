// edgeloop: one binary, one subcommand per role. Flags are parsed once here and handed to the
// role as an options struct.
#include <iostream>
#include <vector>

#include "cli/commands.h"
#include "common/config.h"
#include "common/logging.h"

int main(int argc, char** argv) {
  using namespace edgeloop;
  CLI::App app{
      "edgeloop: trained models at the edge, low-latency scoring, and a cloud feedback loop.\n"
      "See `edgeloop <command> --help`."};
  app.name("edgeloop");
  app.require_subcommand(0, 1);
  app.fallthrough();  // global flags may also follow the subcommand
  AddYamlConfigOption(&app);

  std::string log_format = "text";
  std::string log_level = "info";
  app.add_option("--log-format", log_format, "Log line format on stderr: text or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  // In the order of the loop: edge roles, models, data, cloud roles.
  std::vector<cli::Command> commands = {
      cli::AddServeCommand(app),  cli::AddWorkerCommand(app),   cli::AddQueueCommand(app),
      cli::AddModelCommand(app),  cli::AddPipelineCommand(app), cli::AddLakeCommand(app),
      cli::AddTrainCommand(app),  cli::AddHubCommand(app),      cli::AddUpCommand(app),
      cli::AddWebappCommand(app), cli::AddVersionCommand(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  log::Init(*log::ParseFormat(log_format), *log::ParseLevel(log_level));
  for (const cli::Command& command : commands) {
    if (command.app->parsed()) return command.run();
  }
  std::cout << app.help();
  return 0;
}
