// The subcommands of the `edgeloop` binary. Each Add*Command registers its flags on `root` and
// returns the function that runs it (after parsing), which returns the process exit code.
#ifndef EDGELOOP_CLI_COMMANDS_H_
#define EDGELOOP_CLI_COMMANDS_H_

#include <functional>

namespace CLI {
class App;
}  // namespace CLI

namespace edgeloop::cli {

struct Command {
  CLI::App* app;
  std::function<int()> run;
};

Command AddServeCommand(CLI::App& root);
Command AddWorkerCommand(CLI::App& root);
Command AddQueueCommand(CLI::App& root);
Command AddModelCommand(CLI::App& root);
Command AddPipelineCommand(CLI::App& root);
Command AddLakeCommand(CLI::App& root);
Command AddTrainCommand(CLI::App& root);
Command AddHubCommand(CLI::App& root);
Command AddUpCommand(CLI::App& root);
Command AddWebappCommand(CLI::App& root);
Command AddVersionCommand(CLI::App& root);

}  // namespace edgeloop::cli

#endif  // EDGELOOP_CLI_COMMANDS_H_
