#include "perfmem/core/cli.h"

#include <iostream>
#include <string>
#include <vector>

namespace perfmem {

namespace {
// Every subcommand the program defines (parsed or not).
std::vector<const CLI::App*> defined_subcommands(const CLI::App& app) {
  return app.get_subcommands(std::function<bool(const CLI::App*)>());
}

bool names_subcommand(const CLI::App& app, const std::string& word) {
  for (const CLI::App* sub : defined_subcommands(app)) {
    if (sub->check_name(word)) return true;
  }
  return false;
}

// The deepest subcommand that was parsed, so a usage error shows the help that applies.
const CLI::App* deepest_parsed(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands()) {
    if (sub->parsed()) return deepest_parsed(*sub);
  }
  return &app;
}
}  // namespace

int run_cli(CLI::App& app, int argc, char** argv, const std::function<int()>& run) {
  std::string name = app.get_name();
  if (name.empty() && argc > 0) {
    name = argv[0];
    if (size_t slash = name.rfind('/'); slash != std::string::npos) name = name.substr(slash + 1);
    app.name(name);
  }
  app.set_version_flag("--version", name + " (perfmem) " + PERFMEM_VERSION_STRING, "Print the version and exit");

  // A program made of subcommands needs one: run bare, or with a word that names none of them
  // (even when --help follows it), it is a usage error, not a request for the main help.
  if (!defined_subcommands(app).empty()) {
    if (argc < 2) {
      std::cerr << name << ": error: a subcommand is required\n\n" << app.help() << std::flush;
      return kExitUsage;
    }
    std::string first = argv[1];
    if (!first.empty() && first[0] != '-' && !names_subcommand(app, first)) {
      std::cerr << name << ": error: unknown subcommand '" << first << "'\n\n" << app.help() << std::flush;
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) { return app.exit(e); } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) { return app.exit(e); } catch (const CLI::ParseError& e) {
    const CLI::App* where = deepest_parsed(app);
    std::cerr << name << ": error: " << e.what() << "\n\n" << where->help() << std::flush;
    return kExitUsage;
  }
  if (!defined_subcommands(app).empty() && app.get_subcommands().empty()) {
    std::cerr << name << ": error: a subcommand is required\n\n" << app.help() << std::flush;
    return kExitUsage;
  }
  return run();
}

int report_failure(const CLI::App& app, const Status& status) {
  std::cerr << app.get_name() << ": error: " << status.to_string() << "\n";
  return kExitFailure;
}

}  // namespace perfmem
