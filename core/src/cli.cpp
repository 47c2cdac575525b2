#include "perfmem/core/cli.h"

#include <iostream>

namespace perfmem {

namespace {
// The deepest subcommand that was parsed, so a usage error shows the help that applies.
const CLI::App* deepest_parsed(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands()) {
    if (sub->parsed()) return deepest_parsed(*sub);
  }
  return &app;
}
}  // namespace

int run_cli(CLI::App& app, int argc, char** argv, const std::function<int()>& run) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const CLI::App* where = deepest_parsed(app);
    std::cerr << app.get_name() << ": error: " << e.what() << "\n\n" << where->help() << std::flush;
    return kExitUsage;
  }
  return run();
}

int report_failure(const CLI::App& app, const Status& status) {
  std::cerr << app.get_name() << ": error: " << status.to_string() << "\n";
  return kExitFailure;
}

}  // namespace perfmem
