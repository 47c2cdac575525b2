// vmcu CLI commands that take a model to the board: `vmcu compile` (C library) and
// `vmcu deploy` (link for a QEMU board, run, report).
#pragma once

#include <string>

#include "perfmem/core/cli.h"

namespace vmcu_cli {

// `vmcu compile MODEL --planner P --target T -o DIR [--json]`.
int compile(const CLI::App& app, const std::string& model, const std::string& planner, const std::string& target,
            const std::string& out_dir, bool as_json);

struct DeployArgs {
  std::string model, board, ram = "256K", flash = "4M", stack = "4K", planner = "vmcu", kernels = "optimized", input,
                            output, work_dir;
  int timeout_s = 60;
  bool as_json = false;
};

// `vmcu deploy MODEL --board B --ram 256K [--flash 2M] --input IN --output OUT [--json]`.
// Exit 0 only when it fits, runs and equals the host bit for bit.
int deploy(const CLI::App& app, const DeployArgs& args);

}  // namespace vmcu_cli
