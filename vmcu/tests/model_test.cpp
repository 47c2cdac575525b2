// Reader: round trip of built models, liveness, and corrupt / fuzzed / unsupported files that
// must give errors naming the problem (never a crash; this suite also runs under ASan+UBSan).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "flatbuffers/flatbuffers.h"
#include "perfmem/core/io.h"
#include "perfmem/vmcu/builder.h"
#include "perfmem/vmcu/executor.h"
#include "perfmem/vmcu/model.h"
#include "ops/registry.h"
#include "test_support.h"
#include "tflite_subset_generated.h"
#include "perfmem/testing/required.h"

namespace {
namespace vm = perfmem::vmcu;
namespace fb = tflite_subset;

const char* kSpec = R"({"seed": 4, "input": [1, 12, 12, 8], "layers": [
  {"type": "conv", "kernel": 3, "out_channels": 16, "stride": 2},
  {"type": "bottleneck", "mid_channels": 32, "out_channels": 16, "kernel": 3, "residual": true},
  {"type": "global_avgpool"}, {"type": "fully_connected", "units": 4}, {"type": "softmax"}]})";

std::vector<uint8_t> built_model() {
  auto bytes = vm::build_model_from_json(kSpec, "spec");
  EXPECT_TRUE(bytes.ok()) << bytes.status().to_string();
  return bytes.ok() ? *bytes : std::vector<uint8_t>{};
}

TEST(VmcuModel, BuiltModelRoundTripsThroughTheReader) {
  auto bytes = built_model();
  auto g = vm::parse_tflite(bytes, "built.tflite");
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  // conv, expand, depthwise, project, add, avgpool, reshape, fc, softmax
  ASSERT_EQ(g->ops.size(), 9u);
  EXPECT_EQ(g->ops[0].kind, vm::OpKind::kConv2D);
  EXPECT_EQ(g->ops[0].options.stride_h, 2);
  EXPECT_EQ(g->ops[2].kind, vm::OpKind::kDepthwiseConv2D);
  EXPECT_EQ(g->ops[4].kind, vm::OpKind::kAdd);
  EXPECT_EQ(g->ops[8].kind, vm::OpKind::kSoftmax);
  const auto& w = g->tensors[g->ops[0].inputs[1]];
  EXPECT_TRUE(w.is_constant);
  EXPECT_EQ(w.shape, (std::vector<int32_t>{16, 3, 3, 8}));
  EXPECT_EQ(w.quantization.scales.size(), 16u);  // per output channel
  EXPECT_EQ(g->tensors[g->outputs[0]].shape, (std::vector<int32_t>{1, 4}));
  // Same spec, same bytes.
  EXPECT_EQ(bytes, built_model());
  auto exec = vm::Executor::create(std::move(*g));
  ASSERT_TRUE(exec.ok()) << exec.status().to_string();
  std::vector<uint8_t> input(exec->input_bytes(), 7);
  auto out = exec->run(input);
  ASSERT_TRUE(out.ok());
  int sum = 0;  // softmax output: probabilities (q + 128) / 256 sum to about 1
  for (uint8_t b : *out) sum += static_cast<int8_t>(b) + 128;
  EXPECT_NEAR(sum, 256, 4);
}

TEST(VmcuModel, LivenessSpansProducerToLastConsumer) {
  auto bytes = built_model();
  auto g = vm::parse_tflite(bytes, "built.tflite");
  ASSERT_TRUE(g.ok());
  auto live = vm::compute_liveness(*g);
  const int block_in = g->ops[0].outputs[0];  // conv output: read by expand (1) and by add (4)
  EXPECT_EQ(live.first_use[block_in], 0);
  EXPECT_EQ(live.last_use[block_in], 4);
  EXPECT_EQ(live.first_use[g->inputs[0]], 0);
  EXPECT_EQ(live.last_use[g->outputs[0]], static_cast<int>(g->ops.size()) - 1);
}

TEST(VmcuModel, WrongInputSizeSaysTheExpectedSize) {
  auto bytes = built_model();
  auto g = vm::parse_tflite(bytes, "built.tflite");
  auto exec = vm::Executor::create(std::move(*g));
  ASSERT_TRUE(exec.ok());
  std::vector<uint8_t> input(10);
  auto out = exec->run(input);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("1152 bytes"), std::string::npos) << out.status().to_string();
}

TEST(VmcuModel, TruncatedFilesAreRejected) {
  auto bytes = built_model();
  for (size_t len : {size_t{0}, size_t{4}, size_t{7}, size_t{8}, size_t{16}, size_t{100}, bytes.size() / 3,
                     bytes.size() / 2, bytes.size() - 100, bytes.size() - 1}) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(len));
    auto g = vm::parse_tflite(cut, "cut.tflite");
    EXPECT_FALSE(g.ok()) << "length " << len;
    if (!g.ok()) { EXPECT_NE(g.status().message().find("cut.tflite"), std::string::npos); }
  }
}

TEST(VmcuModel, RandomBytesAndWrongIdentifierAreRejected) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<uint8_t> junk(1 + rng() % 4096);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    if (trial % 2 == 0 && junk.size() >= 8) std::memcpy(junk.data() + 4, "TFL3", 4);  // get past the identifier
    auto g = vm::parse_tflite(junk, "junk.tflite");
    EXPECT_FALSE(g.ok());
  }
  std::vector<uint8_t> bytes = built_model();
  std::memcpy(bytes.data() + 4, "ABCD", 4);
  auto g = vm::parse_tflite(bytes, "x.tflite");
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("TFL3"), std::string::npos) << g.status().to_string();
}

TEST(VmcuModel, OffsetsOutOfRangeAreRejected) {
  auto bytes = built_model();
  // The root table offset (first 4 bytes) pointed past the end of the file.
  auto bad = bytes;
  const uint32_t past = static_cast<uint32_t>(bytes.size() + 64);
  std::memcpy(bad.data(), &past, 4);
  EXPECT_FALSE(vm::parse_tflite(bad, "root.tflite").ok());
  // Every 4-byte word overwritten by a huge offset, one at a time: verifier or index checks
  // must catch whatever this breaks; a model that still loads must also still prepare and run.
  int rejected = 0;
  for (size_t at = 8; at + 4 <= bytes.size(); at += 4 * 37) {
    auto m = bytes;
    const uint32_t huge = 0x7ffffff0u;
    std::memcpy(m.data() + at, &huge, 4);
    auto g = vm::parse_tflite(m, "mutated.tflite");
    if (!g.ok()) {
      ++rejected;
      continue;
    }
    auto exec = vm::Executor::create(std::move(*g));
    if (!exec.ok()) {
      ++rejected;
      continue;
    }
    std::vector<uint8_t> input(exec->input_bytes(), 1);
    (void)exec->run(input);
  }
  EXPECT_GT(rejected, 0);
}

TEST(VmcuModel, BitFlipsNeverCrash) {
  auto bytes = built_model();
  std::mt19937 rng(5);
  int errors = 0;
  for (int trial = 0; trial < 300; ++trial) {
    auto m = bytes;
    for (int k = 0; k < 3; ++k) m[rng() % m.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto g = vm::parse_tflite(m, "flipped.tflite");
    if (!g.ok()) {
      ++errors;
      EXPECT_FALSE(g.status().message().empty());
      continue;
    }
    auto exec = vm::Executor::create(std::move(*g));
    if (!exec.ok()) {
      ++errors;
      continue;
    }
    std::vector<uint8_t> input(exec->input_bytes(), 3);
    (void)exec->run(input);  // weights may have changed; it must still run within bounds
  }
  EXPECT_GT(errors, 0);
}

// A hand-written flatbuffer with one MUL operator: unsupported, named with index and name.
// A model over int8 [1,4] tensors a, b, c (a and b the inputs, c the output) with operator k
// of builtin code codes[k]: even operators read a, b into c, odd ones c, b into a.
std::vector<uint8_t> operators_model(const std::vector<int>& codes) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<fb::Buffer>> buffers{fb::CreateBuffer(fbb)};
  auto q = fb::CreateQuantizationParameters(fbb, 0, 0, fbb.CreateVector(std::vector<float>{0.1f}),
                                            fbb.CreateVector(std::vector<int64_t>{0}));
  std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
  for (const char* name : {"a", "b", "c"})
    tensors.push_back(
        fb::CreateTensor(fbb, fbb.CreateVector(std::vector<int32_t>{1, 4}), 9, 0, fbb.CreateString(name), q));
  std::vector<flatbuffers::Offset<fb::Operator>> ops;
  std::vector<flatbuffers::Offset<fb::OperatorCode>> opcodes;
  for (size_t k = 0; k < codes.size(); ++k) {
    const bool even = k % 2 == 0;
    ops.push_back(fb::CreateOperator(fbb, static_cast<uint32_t>(k),
                                     fbb.CreateVector(std::vector<int32_t>{even ? 0 : 2, 1}),
                                     fbb.CreateVector(std::vector<int32_t>{even ? 2 : 0})));
    opcodes.push_back(fb::CreateOperatorCode(fbb, static_cast<int8_t>(std::min(codes[k], 127)), 0, 1, codes[k]));
  }
  auto sg = fb::CreateSubGraph(fbb, fbb.CreateVector(tensors), fbb.CreateVector(std::vector<int32_t>{0, 1}),
                               fbb.CreateVector(std::vector<int32_t>{2}), fbb.CreateVector(ops));
  std::vector<flatbuffers::Offset<fb::SubGraph>> sgs{sg};
  fb::FinishModelBuffer(
      fbb, fb::CreateModel(fbb, 3, fbb.CreateVector(opcodes), fbb.CreateVector(sgs), 0, fbb.CreateVector(buffers)));
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

TEST(VmcuModel, UnsupportedOperatorIsNamedWithItsIndex) {
  const std::vector<uint8_t> bytes = operators_model({0, 18});  // ADD, MUL
  auto g = vm::parse_tflite(bytes, "mul.tflite");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), perfmem::StatusCode::kUnsupported);
  EXPECT_NE(g.status().message().find("operator 1 (MUL)"), std::string::npos) << g.status().to_string();
  EXPECT_NE(g.status().message().find("mul.tflite"), std::string::npos);
}

// The operator table has one row per OpKind, in kind order, with a prepare and an eval, and the
// reader accepts exactly the builtin codes of its rows (so an operator the reader lets through
// always has a module).
TEST(VmcuOperatorTable, CoversEveryOpKindTheReaderAccepts) {
  namespace ops = perfmem::vmcu::ops;
  ASSERT_EQ(ops::registrations().size(), vm::kOpKindCount);
  std::set<int> registered;
  for (size_t k = 0; k < vm::kOpKindCount; ++k) {
    const auto kind = static_cast<vm::OpKind>(k);
    const ops::OpRegistration& r = ops::registration(kind);
    EXPECT_EQ(r.kind, kind) << k;
    EXPECT_NE(r.prepare, nullptr) << r.name;
    EXPECT_NE(r.eval, nullptr) << r.name;
    EXPECT_TRUE(registered.insert(r.builtin_code).second) << r.name << " repeats builtin code " << r.builtin_code;
    EXPECT_EQ(vm::op_kind_name(kind), r.name);
    EXPECT_EQ(vm::builtin_code(kind), r.builtin_code);
    EXPECT_EQ(ops::find_builtin(r.builtin_code), &r);
  }
  for (int code = 0; code < 160; ++code) {
    auto g = vm::parse_tflite(operators_model({code}), "one.tflite");
    const bool refused = !g.ok() && g.status().message().find("not supported by vmcu") != std::string::npos;
    EXPECT_EQ(refused, registered.count(code) == 0)
        << "builtin " << code << ": " << (g.ok() ? std::string("loaded") : g.status().to_string());
    if (g.ok()) { EXPECT_EQ(vm::builtin_code(g->ops[0].kind), code); }
  }
}

TEST(VmcuModel, RealModelsLoadAndTruncationsFail) {
  const std::string path = vmcu_test::shared_model("mlperf-tiny-dscnn-kws_int8.tflite");
  if (!std::filesystem::exists(path)) PERFMEM_SKIP_UNLESS_REQUIRED("shared model not present: " << path);
  auto bytes = perfmem::read_binary_file(path);
  ASSERT_TRUE(bytes.ok());
  auto g = vm::parse_tflite(*bytes, path);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_EQ(g->ops.size(), 13u);
  for (size_t len = 8; len < bytes->size(); len += bytes->size() / 40) {
    std::vector<uint8_t> cut(bytes->begin(), bytes->begin() + static_cast<long>(len));
    EXPECT_FALSE(vm::parse_tflite(cut, "cut").ok()) << len;
  }
}

TEST(VmcuModel, RealModelBitFlipsNeverCrash) {
  const std::string path = vmcu_test::shared_model("mlperf-tiny-dscnn-kws_int8.tflite");
  if (!std::filesystem::exists(path)) PERFMEM_SKIP_UNLESS_REQUIRED("shared model not present: " << path);
  auto bytes = perfmem::read_binary_file(path);
  ASSERT_TRUE(bytes.ok());
  std::mt19937 rng(9);
  int loaded = 0, rejected = 0;
  for (int trial = 0; trial < 150; ++trial) {
    auto m = *bytes;
    // Flip bits in the first 4 KB (tables, vectors, offsets) rather than in the weights.
    for (int k = 0; k < 2; ++k) m[rng() % 4096] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto g = vm::parse_tflite(m, "flipped-dscnn.tflite");
    if (!g.ok()) {
      ++rejected;
      continue;
    }
    auto exec = vm::Executor::create(std::move(*g));
    if (!exec.ok()) {
      ++rejected;
      continue;
    }
    std::vector<uint8_t> input(exec->input_bytes(), 9);
    EXPECT_TRUE(exec->run(input).ok());
    ++loaded;
  }
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(loaded + rejected, 150);
}

TEST(VmcuBuilder, MobileNetV2HasTheArchitecturesBlocks) {
  auto bytes = vm::build_model_from_json(R"({"mobilenetv2":{"width":0.35,"resolution":96,"classes":7}})", "mbv2");
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  auto g = vm::parse_tflite(*bytes, "mbv2");
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  int adds = 0, depthwise = 0, stride2 = 0;
  for (const auto& op : g->ops) {
    adds += op.kind == vm::OpKind::kAdd;
    depthwise += op.kind == vm::OpKind::kDepthwiseConv2D;
    stride2 += op.options.stride_h == 2 && (op.kind == vm::OpKind::kConv2D || op.kind == vm::OpKind::kDepthwiseConv2D);
  }
  EXPECT_EQ(depthwise, 17);  // one per inverted bottleneck
  EXPECT_EQ(adds, 10);       // residual blocks: 1 + 2 + 3 + 2 + 2
  EXPECT_EQ(stride2, 5);     // stem + four stride-2 stages: 96 -> 3
  EXPECT_EQ(g->tensors[g->ops[0].outputs[0]].shape, (std::vector<int32_t>{1, 48, 48, 16}));  // 32 * 0.35 -> 16
  EXPECT_EQ(g->tensors[g->outputs[0]].shape, (std::vector<int32_t>{1, 7}));
}

TEST(VmcuBuilder, SpecErrorsNameThePlace) {
  auto r = vm::build_model_from_json(R"({"input":[1,8,8,4],"layers":[{"type":"conv","kernel":3}]})", "s.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layers[0].out_channels"), std::string::npos) << r.status().to_string();
  r = vm::build_model_from_json(
      R"({"input":[1,8,8,4],"layers":[{"type":"bottleneck","mid_channels":8,"out_channels":5,"residual":true}]})",
      "s.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layers[0].residual"), std::string::npos) << r.status().to_string();
  r = vm::build_model_from_json(R"({"input":[1,8,8,4],"layers":[{"type":"warp"}]})", "s.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("warp"), std::string::npos);
  r = vm::build_model_from_json("{not json", "s.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("s.json"), std::string::npos);
}

}  // namespace
