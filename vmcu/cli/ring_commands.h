// vmcu CLI commands for the ring planner (--planner vmcu) and the safety verifier.
#pragma once

#include <string>

#include "perfmem/core/cli.h"

namespace vmcu_cli {

// `vmcu plan MODEL --planner vmcu [--json] [--svg FILE]`: layers, distances, ring occupancy.
int ring_plan(const CLI::App& app, const std::string& model, bool as_json, const std::string& svg_path);
// `vmcu run MODEL --planner vmcu --input IN --output OUT`.
int ring_run(const CLI::App& app, const std::string& model, const std::string& input, const std::string& output);
// `vmcu verify MODEL [--input IN] [--seed N] [--json]`: shadow-state check + bit-exact output.
int ring_verify(const CLI::App& app, const std::string& model, const std::string& input, unsigned seed, bool as_json);

}  // namespace vmcu_cli
