// The vmcu program: CLI conventions, inspect/run/plan/build-model end to end.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "perfmem/core/json.h"
#include "perfmem/testing/cli_conventions.h"
#include "perfmem/testing/required.h"
#include "test_support.h"

namespace {

using perfmem::testing::run_command;
using namespace vmcu_test;

std::string cli() { return std::string(CLI_PATH); }

TEST(vmcuCli, HelpExitsZeroAndDescribesTheProgram) {
  auto r = run_command(cli() + " --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("vmcu"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Usage"), std::string::npos) << r.output;
  for (const char* sub : {"inspect", "run", "plan", "build-model"}) EXPECT_NE(r.output.find(sub), std::string::npos);
}

TEST(vmcuCli, FollowsTheProjectsCommandLineConventions) {
  perfmem::testing::expect_cli_conventions(cli(), "vmcu", {"inspect", "run", "plan", "build-model", "verify"});
}

TEST(vmcuCli, UnknownOptionIsAUsageError) {
  auto r = run_command(cli() + " --no-such-option");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no-such-option"), std::string::npos) << r.output;
  EXPECT_EQ(run_command(cli() + " run").exit_code, 2);
}

TEST(vmcuCli, SpecWithUnknownFieldOrDeepNestingIsRejected) {
  const auto spec = (temp_dir() / "bad_spec.json").string();
  const auto out = (temp_dir() / "bad_spec.tflite").string();
  std::ofstream(spec) << R"({"input":[1,8,8,4],"layers":[{"type":"conv","out_channel":8}]})";
  auto r = run_command(cli() + " build-model " + spec + " -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("layers[0].out_channel"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unknown field"), std::string::npos) << r.output;
  std::ofstream(spec) << R"({"input":[1,8],"layers":[{"type":"softmax"}],"seeds":2})";
  r = run_command(cli() + " build-model " + spec + " -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("$.seeds"), std::string::npos) << r.output;
  // 100000 nested arrays: an error naming the nesting, not a stack overflow.
  std::ofstream(spec) << "{\"input\":" << std::string(100000, '[') << std::string(100000, ']') << "}";
  r = run_command(cli() + " build-model " + spec + " -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("nested at most"), std::string::npos) << r.output;
}

TEST(vmcuCli, FailedWriteToStdoutExitsOne) {
  if (!std::filesystem::exists("/dev/full")) PERFMEM_SKIP_UNLESS_REQUIRED("no /dev/full to write to");
  const auto spec = (temp_dir() / "stdout_spec.json").string();
  const auto model = (temp_dir() / "stdout_model.tflite").string();
  std::ofstream(spec) << R"({"input":[1,8,8,4],"layers":[{"type":"conv","out_channels":8}]})";
  ASSERT_EQ(run_command(cli() + " build-model " + spec + " -o " + model).exit_code, 0);
  for (const std::string& args : {" inspect " + model + " --json", " plan " + model + " --planner greedy",
                                  " plan " + model + " --planner vmcu"}) {
    auto r = run_command("(" + cli() + args + " > /dev/full)");  // stderr still reaches the test
    EXPECT_EQ(r.exit_code, 1) << args << ": " << r.output;
    EXPECT_NE(r.output.find("standard output"), std::string::npos) << r.output;
  }
}

class CliModel : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = (temp_dir() / "cli_spec.json").string();
    model_ = (temp_dir() / "cli_model.tflite").string();
    std::ofstream(spec_) << R"({"seed":3,"input":[1,10,10,8],"layers":[
      {"type":"bottleneck","mid_channels":24,"out_channels":8,"kernel":3,"residual":true},
      {"type":"depthwise","kernel":3,"stride":2},{"type":"global_avgpool"},
      {"type":"fully_connected","units":3},{"type":"softmax"}]})";
    auto r = run_command(cli() + " build-model " + spec_ + " -o " + model_);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string spec_, model_;
};

TEST_F(CliModel, InspectJsonListsInputsAndOutputs) {
  auto r = run_command(cli() + " inspect " + model_ + " --json 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = perfmem::Json::parse(r.output);
  ASSERT_EQ(j["inputs"].size(), 1u);
  const auto& in = j["inputs"][0];
  EXPECT_EQ(in["shape"], perfmem::Json({1, 10, 10, 8}));
  EXPECT_EQ(in["type"], "int8");
  EXPECT_EQ(in["bytes"], 800);
  EXPECT_FLOAT_EQ(in["scale"].get<float>(), 1.0f / 32);
  EXPECT_EQ(in["zero_point"], 0);
  EXPECT_EQ(j["outputs"][0]["shape"], perfmem::Json({1, 3}));
  EXPECT_EQ(j["outputs"][0]["zero_point"], -128);
  EXPECT_GT(j["operators"].size(), 5u);
  auto text = run_command(cli() + " inspect " + model_);
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.output.find("DEPTHWISE_CONV_2D"), std::string::npos);
}

TEST_F(CliModel, RunWritesOutputAndChecksInputSize) {
  const auto in = temp_dir() / "cli.in";
  const auto out = temp_dir() / "cli.out";
  write_file(in, std::vector<uint8_t>(800, 5));
  auto r = run_command(cli() + " run " + model_ + " --input " + in.string() + " --output " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(out).size(), 3u);
  write_file(in, std::vector<uint8_t>(799, 5));
  r = run_command(cli() + " run " + model_ + " --input " + in.string() + " --output " + out.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("800 bytes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("799 bytes"), std::string::npos) << r.output;
}

TEST_F(CliModel, PlanReportsPeakPerPlannerAndDrawsSvg) {
  size_t peaks[3];
  int k = 0;
  for (const char* planner : {"naive", "greedy", "tinyengine"}) {
    auto r = run_command(cli() + " plan " + model_ + " --planner " + planner + " --json 2>/dev/null");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = perfmem::Json::parse(r.output);
    EXPECT_EQ(j["planner"], planner);
    EXPECT_TRUE(j["verified"].get<bool>());
    peaks[k++] = j["peak_bytes"].get<size_t>();
    size_t max_live = 0;
    for (const auto& op : j["ops"]) max_live = std::max(max_live, op["live_bytes"].get<size_t>());
    EXPECT_LE(max_live, peaks[k - 1]);
  }
  EXPECT_GT(peaks[0], peaks[1]);  // naive > greedy
  EXPECT_LE(peaks[2], peaks[1]);  // in-place never hurts here
  const auto svg = temp_dir() / "plan.svg";
  auto r = run_command(cli() + " plan " + model_ + " --planner greedy --svg " + svg.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("peak"), std::string::npos);
  const auto bytes = read_file(svg);
  EXPECT_NE(std::string(bytes.begin(), bytes.end()).find("<svg"), std::string::npos);
  EXPECT_EQ(run_command(cli() + " plan " + model_ + " --planner bogus").exit_code, 1);
}

TEST(vmcuCliErrors, BadFilesGiveErrorsNotCrashes) {
  const auto junk = temp_dir() / "junk.tflite";
  write_file(junk, std::vector<uint8_t>(100, 0x41));
  auto r = run_command(cli() + " inspect " + junk.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("junk.tflite"), std::string::npos) << r.output;
  r = run_command(cli() + " inspect " + (temp_dir() / "missing.tflite").string());
  EXPECT_EQ(r.exit_code, 1);
  const auto spec = temp_dir() / "bad.json";
  std::ofstream(spec)
      << R"({"input":[1,4,4,2],"layers":[{"type":"conv","kernel":9,"out_channels":2,"padding":"valid"}]})";
  r = run_command(cli() + " build-model " + spec.string() + " -o " + (temp_dir() / "bad.tflite").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("layers[0].kernel"), std::string::npos) << r.output;
}

}  // namespace
