// The vmcu program's ring planner: verify, plan --planner vmcu (text, JSON, SVG), run --planner vmcu.
#include <gtest/gtest.h>

#include "perfmem/core/json.h"
#include "perfmem/testing/required.h"
#include "test_support.h"

namespace {

using perfmem::testing::run_command;
using namespace vmcu_test;

std::string cli() { return std::string(CLI_PATH); }

std::vector<uint8_t> random_input_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class RingCli : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = (temp_dir() / "ring_cli_spec.json").string();
    model_ = (temp_dir() / "ring_cli_model.tflite").string();
    std::ofstream(spec_) << R"({"seed":4,"input":[1,12,12,3],"layers":[
      {"type":"conv","kernel":3,"out_channels":8,"stride":2},
      {"type":"bottleneck","mid_channels":24,"out_channels":8,"kernel":3,"residual":true},
      {"type":"depthwise","kernel":3,"stride":2},{"type":"global_avgpool"},
      {"type":"fully_connected","units":3},{"type":"softmax"}]})";
    auto r = run_command(cli() + " build-model " + spec_ + " -o " + model_);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string spec_, model_;
};

TEST_F(RingCli, VerifyPassesAndReportsTheRing) {
  auto r = run_command(cli() + " verify " + model_ + " --json 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = perfmem::Json::parse(r.output);
  EXPECT_TRUE(j["verified"].get<bool>());
  EXPECT_TRUE(j["bit_exact"].get<bool>());
  EXPECT_GT(j["checked_read_bytes"].get<size_t>(), 0u);
  auto text = run_command(cli() + " verify " + model_ + " --planner vmcu --seed 7");
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("bit-exact"), std::string::npos) << text.output;
  EXPECT_EQ(run_command(cli() + " verify " + model_ + " --planner greedy").exit_code, 1);
  EXPECT_EQ(run_command(cli() + " verify " + (temp_dir() / "missing.tflite").string()).exit_code, 1);
}

TEST_F(RingCli, PlanIsSmallerThanGreedyAndDrawsTheRing) {
  auto r = run_command(cli() + " plan " + model_ + " --planner vmcu --json 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = perfmem::Json::parse(r.output);
  EXPECT_EQ(j["planner"], "vmcu");
  // The ring for the convolutions; the pooling / FC / softmax tail may run at tensor level.
  EXPECT_TRUE(j["placement"] == "segment" || j["placement"] == "mixed") << j["placement"];
  EXPECT_EQ(j["layers"][0]["kernel"], "conv");
  const size_t peak = j["peak_bytes"].get<size_t>();
  EXPECT_EQ(peak, j["ring_bytes"].get<size_t>() + j["workspace_bytes"].get<size_t>());
  for (const auto& layer : j["layers"])
    EXPECT_LE(layer["ring_in_use_bytes"].get<size_t>(), j["ring_bytes"].get<size_t>());
  auto g = run_command(cli() + " plan " + model_ + " --planner greedy --json 2>/dev/null");
  ASSERT_EQ(g.exit_code, 0);
  EXPECT_LT(peak, perfmem::Json::parse(g.output)["peak_bytes"].get<size_t>());
  const auto svg = temp_dir() / "ring.svg";
  auto s = run_command(cli() + " plan " + model_ + " --planner vmcu --svg " + svg.string());
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_NE(s.output.find("ring"), std::string::npos);
  const auto bytes = read_file(svg);
  const std::string text(bytes.begin(), bytes.end());
  EXPECT_NE(text.find("<svg"), std::string::npos);
  EXPECT_NE(text.find("<rect"), std::string::npos);
}

TEST_F(RingCli, RunWithTheRingPlanEqualsTheReferenceRun) {
  const auto in = temp_dir() / "ring_cli.in";
  const auto a = temp_dir() / "ring_cli_ref.out";
  const auto b = temp_dir() / "ring_cli_ring.out";
  write_file(in, random_input_bytes(432, 3));
  ASSERT_EQ(run_command(cli() + " run " + model_ + " --input " + in.string() + " --output " + a.string()).exit_code, 0);
  auto r = run_command(cli() + " run " + model_ + " --planner vmcu --input " + in.string() + " --output " + b.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(a), read_file(b));
  EXPECT_EQ(read_file(b).size(), 3u);
  write_file(in, std::vector<uint8_t>(5, 1));
  r = run_command(cli() + " run " + model_ + " --planner vmcu --input " + in.string() + " --output " + b.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("432 bytes"), std::string::npos) << r.output;
}

// Where the ring would need more than greedy (a lone softmax's staged workspace, and no cut to
// split the network at), the plan is the tensor-level one and says so; it is no larger than
// greedy and runs like the reference.
TEST(RingCliPlacement, TensorLevelWhereTheRingWouldBeLarger) {
  const auto spec = (temp_dir() / "tensor_level.json").string();
  const auto model = (temp_dir() / "tensor_level.tflite").string();
  std::ofstream(spec) << R"({"input":[2,100],"layers":[{"type":"softmax"}]})";
  ASSERT_EQ(run_command(cli() + " build-model " + spec + " -o " + model).exit_code, 0);
  auto r = run_command(cli() + " plan " + model + " --planner vmcu --json 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = perfmem::Json::parse(r.output);
  EXPECT_EQ(j["placement"], "tensor");
  auto g = run_command(cli() + " plan " + model + " --planner greedy --json 2>/dev/null");
  ASSERT_EQ(g.exit_code, 0);
  EXPECT_EQ(j["peak_bytes"].get<size_t>(), perfmem::Json::parse(g.output)["peak_bytes"].get<size_t>());
  const auto in = temp_dir() / "tensor_level.in";
  write_file(in, random_input_bytes(200, 3));
  const auto a = temp_dir() / "tensor_level.ring.out", b = temp_dir() / "tensor_level.ref.out";
  ASSERT_EQ(run_command(cli() + " run " + model + " --planner vmcu --input " + in.string() + " --output " + a.string())
                .exit_code,
            0);
  ASSERT_EQ(run_command(cli() + " run " + model + " --input " + in.string() + " --output " + b.string()).exit_code, 0);
  EXPECT_EQ(read_file(a), read_file(b));
  EXPECT_EQ(read_file(a).size(), 200u);
}

// `vmcu run --planner vmcu` writes the reference run's bytes on the shared models (their
// staged QUANTIZE / MEAN / TRANSPOSE / SOFTMAX / DEQUANTIZE layers run from the plan) and on
// built networks with staged layers and a tensor-level plan.
TEST(RingCliRun, PlanRunsAreBitIdenticalToTheReferenceRun) {
  std::vector<std::string> models;
  for (const char* file :
       {"mcunet-vww1_int8.tflite", "mlperf-tiny-ad01_int8.tflite", "mlperf-tiny-dscnn-kws_int8.tflite",
        "mlperf-tiny-resnet8_int8.tflite", "mlperf-tiny-vww_96_int8.tflite"})
    if (std::filesystem::exists(shared_model(file))) models.push_back(shared_model(file));
  const bool shared_present = !models.empty();
  const char* specs[] = {
      R"({"seed":2,"input":[1,9,7,5],"layers":[{"type":"conv","kernel":3,"out_channels":8,"stride":2},
          {"type":"mean","keep_dims":true},{"type":"pointwise","out_channels":6},{"type":"softmax"}]})",
      R"({"seed":5,"input":[2,100],"layers":[{"type":"fully_connected","units":100},{"type":"softmax"}]})"};
  for (size_t k = 0; k < std::size(specs); ++k) {
    const auto spec = temp_dir() / ("plan_run_" + std::to_string(k) + ".json");
    const auto model = temp_dir() / ("plan_run_" + std::to_string(k) + ".tflite");
    std::ofstream(spec) << specs[k];
    ASSERT_EQ(run_command(cli() + " build-model " + spec.string() + " -o " + model.string()).exit_code, 0);
    models.push_back(model.string());
  }
  for (const std::string& model : models) {
    auto info = run_command(cli() + " inspect " + model + " --json 2>/dev/null");
    ASSERT_EQ(info.exit_code, 0) << info.output;
    const auto input_info = perfmem::Json::parse(info.output)["inputs"][0];
    const size_t bytes = input_info["bytes"].get<size_t>();
    const auto in = temp_dir() / "plan_run.in";
    const auto a = temp_dir() / "plan_run_ref.out", b = temp_dir() / "plan_run_ring.out";
    std::vector<uint8_t> input = random_input_bytes(bytes, 11);
    if (input_info["type"] == "float32")  // float pixels (mcunet-vww1): finite values in [-1, 1)
      for (size_t i = 0; i + 4 <= input.size(); i += 4) {
        const float v = static_cast<float>(input[i]) / 128.0f - 1.0f;
        std::memcpy(input.data() + i, &v, 4);
      }
    write_file(in, input);
    ASSERT_EQ(run_command(cli() + " run " + model + " --input " + in.string() + " --output " + a.string()).exit_code, 0)
        << model;
    auto r =
        run_command(cli() + " run " + model + " --planner vmcu --input " + in.string() + " --output " + b.string());
    ASSERT_EQ(r.exit_code, 0) << model << ": " << r.output;
    EXPECT_EQ(read_file(a), read_file(b)) << model;
    EXPECT_FALSE(read_file(b).empty());
  }
  if (!shared_present) PERFMEM_SKIP_UNLESS_REQUIRED("shared models not present under " << PERFMEM_SHARED_DIR);
}

}  // namespace
