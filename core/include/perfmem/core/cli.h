// Conventions shared by the vmcu, sida and acrobat programs (on CLI11):
//   exit 0 on success and for --help, 1 when the work itself fails (bad model file, ...),
//   2 for a usage error (unknown option, missing argument, no subcommand or an unknown one —
//   even when --help follows it), with the usage on stderr. Every program answers --version.
//
//   CLI::App app{"vmcu: ..."};
//   ... add subcommands ...
//   return perfmem::run_cli(app, argc, argv, [&] { return dispatch(); });
#pragma once

#include <functional>

#include "CLI/CLI.hpp"
#include "perfmem/core/status.h"

namespace perfmem {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Adds --version, parses argv; on a usage error prints it with the help of the failing
// (sub)command and returns kExitUsage; otherwise returns run()'s result. run() is not called
// after --help or --version. An app with subcommands gets exactly one parsed subcommand in run().
int run_cli(CLI::App& app, int argc, char** argv, const std::function<int()>& run);

// Prints "PROGRAM: error: MESSAGE" to stderr and returns kExitFailure.
int report_failure(const CLI::App& app, const Status& status);

}  // namespace perfmem
