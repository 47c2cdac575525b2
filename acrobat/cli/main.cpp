// acrobat: command-line entry point. Subcommands arrive with the system's issues.
#include "perfmem/core/cli.h"

int main(int argc, char** argv) {
  CLI::App app{"acrobat: batch dynamic models (trees, loops, early exit) with compile-time depth analysis"};
  app.require_subcommand(0, 1);
  return perfmem::run_cli(app, argc, argv, [&] {
    if (app.get_subcommands().empty()) {
      std::cout << app.help();
    }
    return perfmem::kExitOk;
  });
}
