// The command-line conventions of every perfmem program (see perfmem/core/cli.h), checked on a
// built program by each system's CLI test:
//   - `PROGRAM --version` exits 0 and prints "PROGRAM (perfmem) VERSION";
//   - run bare, or with a word that names no subcommand (even before --help), it exits 2;
//   - `--help` of the program and of each subcommand exits 0, and the help is in one style:
//     every option, positional and subcommand description starts with a capital letter, and no
//     numeric option claims a range up to the largest double.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <sstream>
#include <string>
#include <vector>

#include "perfmem/testing/subprocess.h"

namespace perfmem::testing {

// The first line of each entry's description in CLI11's help. Entries start at column 2; the
// name is padded to column 30 where the description starts, and a name that reaches column 30
// (which may itself hold spaces: "--warmup INT:INT in [0 - 10]") puts it on the next line,
// indented by 30 spaces.
inline std::vector<std::string> help_descriptions(const std::string& help) {
  constexpr size_t kColumn = 30;
  std::vector<std::string> out;
  std::istringstream lines(help);
  std::string line;
  bool pending = false;  // an entry whose description is on the next line
  while (std::getline(lines, line)) {
    const bool indented = line.size() > kColumn && line.find_first_not_of(' ') == kColumn;
    if (pending && indented) out.push_back(line.substr(kColumn));
    pending = false;
    if (line.size() < 3 || line[0] != ' ' || line[1] != ' ' || line[2] == ' ') continue;
    const bool padded =
        line.size() > kColumn && line[kColumn - 2] == ' ' && line[kColumn - 1] == ' ' && line[kColumn] != ' ';
    if (padded) {
      out.push_back(line.substr(kColumn));
    } else {
      pending = true;
    }
  }
  return out;
}

inline void expect_cli_conventions(const std::string& program, const std::string& name,
                                   const std::vector<std::string>& subcommands) {
  auto version = run_command(program + " --version");
  EXPECT_EQ(version.exit_code, 0) << version.output;
  EXPECT_EQ(version.output.rfind(name + " (perfmem) ", 0), 0u) << version.output;

  auto bare = run_command(program);
  EXPECT_EQ(bare.exit_code, 2) << bare.output;
  EXPECT_NE(bare.output.find("a subcommand is required"), std::string::npos) << bare.output;
  auto unknown = run_command(program + " no-such-subcommand --help");
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_NE(unknown.output.find("unknown subcommand 'no-such-subcommand'"), std::string::npos) << unknown.output;

  std::vector<std::string> invocations = {program + " --help"};
  for (const std::string& sub : subcommands) invocations.push_back(program + " " + sub + " --help");
  for (const std::string& command : invocations) {
    auto help = run_command(command);
    EXPECT_EQ(help.exit_code, 0) << command << "\n" << help.output;
    EXPECT_EQ(help.output.find("e+308"), std::string::npos) << command << ": a range up to the largest double";
    auto descriptions = help_descriptions(help.output);
    EXPECT_GE(descriptions.size(), 2u) << command << "\n" << help.output;
    for (const std::string& d : descriptions)
      EXPECT_TRUE(std::isupper(static_cast<unsigned char>(d[0])))
          << command << ": description \"" << d << "\" does not start with a capital letter";
  }
}

}  // namespace perfmem::testing
