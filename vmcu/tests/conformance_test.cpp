// Bit-exactness against TFLite itself: the interpreter from PyPI with its reference kernels
// (BUILTIN_REF) and vmcu's executor run the same models on the same random inputs.
#include <gtest/gtest.h>

#include <random>

#include "perfmem/core/io.h"
#include "perfmem/vmcu/builder.h"
#include "perfmem/vmcu/executor.h"
#include "test_support.h"
#include "perfmem/testing/required.h"

namespace {
namespace vm = perfmem::vmcu;
using namespace vmcu_test;

constexpr int kInputsPerModel = 3;

// Random int8 bytes, or with `spread` < 256 values in [-spread/2, spread/2] (rows of near-equal
// logits, which make a softmax's exponentials sum high).
std::vector<uint8_t> input_for(const vm::Tensor& t, uint32_t seed, int spread) {
  if (spread >= 256 || t.type != vm::ElementType::kInt8) return random_input(t, seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(-spread / 2, spread / 2);
  std::vector<uint8_t> bytes(t.bytes());
  for (auto& b : bytes) b = static_cast<uint8_t>(static_cast<int8_t>(u(rng)));
  return bytes;
}

// Runs both engines on kInputsPerModel random inputs and compares every output byte.
void expect_bit_exact(const std::string& model_path, const std::string& tag, int spread = 256) {
  auto graph = vm::load_tflite(model_path);
  ASSERT_TRUE(graph.ok()) << graph.status().to_string();
  auto exec = vm::Executor::create(std::move(*graph));
  ASSERT_TRUE(exec.ok()) << exec.status().to_string();
  const auto& in_tensor = exec->graph().tensors[exec->graph().inputs[0]];
  std::string cmd = venv_python() + " " + PERFMEM_SOURCE_DIR + "/vmcu/tests/tflite_oracle.py " + model_path;
  std::vector<std::vector<uint8_t>> ours;
  for (int i = 0; i < kInputsPerModel; ++i) {
    auto input = input_for(in_tensor, 1000 + static_cast<uint32_t>(i), spread);
    const auto in_path = temp_dir() / (tag + "." + std::to_string(i) + ".in");
    const auto ref_path = temp_dir() / (tag + "." + std::to_string(i) + ".ref");
    write_file(in_path, input);
    cmd += " " + in_path.string() + " " + ref_path.string();
    auto out = exec->run(input);
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    ours.push_back(*out);
  }
  auto r = perfmem::testing::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (int i = 0; i < kInputsPerModel; ++i) {
    const auto ref = read_file(temp_dir() / (tag + "." + std::to_string(i) + ".ref"));
    ASSERT_EQ(ref.size(), ours[i].size()) << tag << " input " << i;
    size_t mismatches = 0;
    for (size_t b = 0; b < ref.size(); ++b) mismatches += ref[b] != ours[i][b];
    EXPECT_EQ(mismatches, 0u) << tag << " input " << i << ": " << mismatches << " of " << ref.size()
                              << " output bytes differ from TFLite";
  }
}

class RealModels : public ::testing::TestWithParam<std::string> {};

TEST_P(RealModels, BitExactWithTfliteReferenceKernels) {
  const std::string path = shared_model(GetParam());
  if (!std::filesystem::exists(path)) PERFMEM_SKIP_UNLESS_REQUIRED("shared model not present: " << path);
  if (auto why = oracle_unavailable(); !why.empty()) PERFMEM_SKIP_UNLESS_REQUIRED(why);
  expect_bit_exact(path, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Vmcu, RealModels,
                         ::testing::Values("mcunet-vww1_int8.tflite", "mlperf-tiny-ad01_int8.tflite",
                                           "mlperf-tiny-dscnn-kws_int8.tflite", "mlperf-tiny-resnet8_int8.tflite",
                                           "mlperf-tiny-vww_96_int8.tflite"),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.find('.'));
                           for (auto& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

struct BuiltCase {
  const char* name;
  const char* spec;
  int spread = 256;  // of the random int8 inputs
  friend void PrintTo(const BuiltCase& c, std::ostream* os) { *os << c.name; }
};

class BuiltModels : public ::testing::TestWithParam<BuiltCase> {};

TEST_P(BuiltModels, BitExactWithTfliteReferenceKernels) {
  if (auto why = oracle_unavailable(); !why.empty()) PERFMEM_SKIP_UNLESS_REQUIRED(why);
  auto bytes = vm::build_model_from_json(GetParam().spec, GetParam().name);
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  const auto path = temp_dir() / (std::string(GetParam().name) + ".tflite");
  write_file(path, *bytes);
  expect_bit_exact(path.string(), GetParam().name, GetParam().spread);
}

INSTANTIATE_TEST_SUITE_P(
    Vmcu, BuiltModels,
    ::testing::Values(
        BuiltCase{"pointwise_80x16x16", R"({"input":[1,80,80,16],"layers":[{"type":"pointwise","out_channels":16}]})"},
        BuiltCase{
            "pointwise_6x64x128",
            R"({"seed":2,"input":[1,6,6,64],"layers":[{"type":"pointwise","out_channels":128,"activation":"relu6"}]})"},
        BuiltCase{"depthwise_s2_same_odd",
                  R"({"input":[1,15,15,8],"layers":[{"type":"depthwise","kernel":3,"stride":2,"padding":"same"}]})"},
        BuiltCase{
            "depthwise_mult3_valid",
            R"({"input":[1,9,7,4],"layers":[{"type":"depthwise","kernel":5,"depth_multiplier":3,"padding":"valid","activation":"relu"}]})"},
        BuiltCase{
            "conv5x5_s2_same",
            R"({"input":[1,13,13,5],"layers":[{"type":"conv","kernel":5,"out_channels":7,"stride":2,"padding":"same"}]})"},
        BuiltCase{"conv3x3_valid_1x1_out",
                  R"({"input":[1,3,3,8],"layers":[{"type":"conv","kernel":3,"out_channels":4,"padding":"valid"}]})"},
        BuiltCase{
            "fc_batch4",
            R"({"input":[4,40],"layers":[{"type":"fully_connected","units":12,"activation":"relu"},{"type":"fully_connected","units":5},{"type":"softmax"}]})"},
        BuiltCase{
            "bottleneck_residual",
            R"({"input":[1,20,20,16],"layers":[{"type":"bottleneck","mid_channels":48,"out_channels":16,"kernel":3,"residual":true}]})"},
        BuiltCase{
            "bottleneck_k7_s2",
            R"({"input":[1,10,10,24],"layers":[{"type":"bottleneck","mid_channels":120,"out_channels":40,"kernel":7,"stride":2}]})"},
        BuiltCase{
            "pools_and_head",
            R"({"input":[1,11,11,8],"layers":[{"type":"maxpool","kernel":3,"stride":2,"padding":"same"},{"type":"avgpool","kernel":2,"stride":1,"padding":"valid"},{"type":"global_avgpool"},{"type":"fully_connected","units":3},{"type":"softmax"}]})"},
        BuiltCase{
            "mean_keep_dims_integer_path",
            R"({"seed":3,"input":[1,7,5,12],"layers":[{"type":"conv","kernel":3,"out_channels":16},{"type":"mean","keep_dims":true},{"type":"fully_connected","units":4}]})"},
        // MEAN keep_dims over windows whose H*W is not a power of two (one integer path in
        // TFLite 2.14: 1/count folded into the multiplier), read directly as the output.
        BuiltCase{
            "mean_keep_dims_3x3",
            R"({"seed":3,"input":[1,3,3,16],"layers":[{"type":"conv","kernel":3,"out_channels":32},{"type":"mean","keep_dims":true}]})"},
        BuiltCase{
            "mean_keep_dims_5x5",
            R"({"seed":3,"input":[1,5,5,16],"layers":[{"type":"conv","kernel":3,"out_channels":32},{"type":"mean","keep_dims":true}]})"},
        BuiltCase{
            "mean_keep_dims_7x7",
            R"({"seed":3,"input":[1,7,7,16],"layers":[{"type":"conv","kernel":3,"out_channels":32},{"type":"mean","keep_dims":true}]})"},
        BuiltCase{
            "mean_keep_dims_6x10",
            R"({"seed":3,"input":[1,6,10,16],"layers":[{"type":"conv","kernel":3,"out_channels":32},{"type":"mean","keep_dims":true}]})"},
        // Softmax over 10, 512 and 1000 classes with near-equal logits (sums of exponentials
        // at and above 512).
        BuiltCase{"softmax_10_classes", R"({"input":[2,10],"layers":[{"type":"softmax"}]})", 2},
        BuiltCase{"softmax_512_classes", R"({"input":[2,512],"layers":[{"type":"softmax"}]})", 2},
        BuiltCase{"softmax_1000_classes", R"({"input":[2,1000],"layers":[{"type":"softmax"}]})", 2},
        BuiltCase{"softmax_1000_classes_spread", R"({"input":[2,1000],"layers":[{"type":"softmax"}]})"},
        BuiltCase{
            "mean_flat_float_path",
            R"({"seed":4,"input":[1,6,6,8],"layers":[{"type":"depthwise","kernel":3},{"type":"mean","keep_dims":false},{"type":"softmax"}]})"},
        BuiltCase{"mobilenetv2_035_96", R"({"mobilenetv2":{"width":0.35,"resolution":96,"classes":10},"seed":7})"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
