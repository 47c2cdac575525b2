// The vmcu program follows the CLI conventions: --help exits 0, unknown options exit 2.
#include <gtest/gtest.h>

#include "perfmem/testing/subprocess.h"

namespace {

using perfmem::testing::run_command;

TEST(vmcuCli, HelpExitsZeroAndDescribesTheProgram) {
  auto r = run_command(std::string(CLI_PATH) + " --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("vmcu"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Usage"), std::string::npos) << r.output;
}

TEST(vmcuCli, UnknownOptionIsAUsageError) {
  auto r = run_command(std::string(CLI_PATH) + " --no-such-option");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no-such-option"), std::string::npos) << r.output;
}

}  // namespace
