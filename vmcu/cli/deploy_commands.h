// vmcu CLI commands that take a model to the board: `vmcu compile` (C library) and
// `vmcu deploy` (link for a QEMU board, run, report).
#pragma once

#include <string>

#include "perfmem/core/cli.h"

namespace vmcu_cli {

// `vmcu compile MODEL --planner P --target T -o DIR [--json]`.
int compile(const CLI::App& app, const std::string& model, const std::string& planner, const std::string& target,
            const std::string& out_dir, bool as_json);

}  // namespace vmcu_cli
