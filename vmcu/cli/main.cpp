// vmcu: command-line entry point. Subcommands arrive with the system's issues.
#include "perfmem/core/cli.h"

int main(int argc, char** argv) {
  CLI::App app{"vmcu: run int8 TFLite CNNs on Cortex-M microcontrollers in a ring of memory segments"};
  app.require_subcommand(0, 1);
  return perfmem::run_cli(app, argc, argv, [&] {
    if (app.get_subcommands().empty()) {
      std::cout << app.help();
    }
    return perfmem::kExitOk;
  });
}
