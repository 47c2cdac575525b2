// Where a perfmem program finds its installed data, and running a helper program.
//
//   auto script = installed_data_path("sida/hf_speed.py");     // <prefix>/share/perfmem/sida/...
//   auto r = run_process({python, script, dir}, StderrMode::kDiscard);
//   if (r.ok() && r->exit_code == 0) use(r->output);
//
// Layout: a program in <prefix>/bin finds its data in <prefix>/share/perfmem. The build tree has
// the same shape (programs in build/<preset>/<system>/, data copied to build/<preset>/share/perfmem),
// so an installed program and a freshly built one look in the same relative place, and no
// source path is compiled into any binary.
#pragma once

#include <string>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem {

// Folder holding the running executable (from /proc/self/exe).
Result<std::string> executable_dir();

// <executable_dir>/../share/perfmem/<relative>; an error naming the path when it is absent.
Result<std::string> installed_data_path(const std::string& relative);

// The Python environment of the optional oracles and baselines: $PERFMEM_VENV, else
// $HOME/.cache/perfmem/venv (where scripts/install-deps.sh makes it).
std::string default_python_venv();

enum class StderrMode { kInherit, kMerge, kDiscard };

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string output;  // what it wrote to stdout (and stderr with kMerge)
};

// Runs argv[0] (looked up on PATH when it has no '/') with the other arguments, without a
// shell, and waits for it. Errors only when it cannot be started at all.
Result<ProcessResult> run_process(const std::vector<std::string>& argv, StderrMode stderr_mode);

}  // namespace perfmem
