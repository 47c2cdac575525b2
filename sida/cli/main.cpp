// sida: command-line entry point. Subcommands arrive with the system's issues.
#include "perfmem/core/cli.h"

int main(int argc, char** argv) {
  CLI::App app{"sida: serve Mixture-of-Experts models larger than fast memory, with predicted expert prefetching"};
  app.require_subcommand(0, 1);
  return perfmem::run_cli(app, argc, argv, [&] {
    if (app.get_subcommands().empty()) {
      std::cout << app.help();
    }
    return perfmem::kExitOk;
  });
}
