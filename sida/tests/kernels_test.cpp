// The optimised kernels against their plain-loop twins, and T5's bucket function against values
// printed by Hugging Face's implementation.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "perfmem/sida/kernels.h"

namespace perfmem::sida {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

TEST(Kernels, LinearMatchesReferenceOnOddShapes) {
  for (auto [rows, in, out] : {std::tuple{1, 7, 5},
                               {1, 768, 3072},
                               {3, 64, 48},
                               {8, 3072, 768},
                               {9, 40, 70},
                               {17, 33, 129},
                               {60, 768, 96},
                               {64, 1024, 7168}}) {
    auto x = random_vector(size_t(rows * in), 1), w = random_vector(size_t(out * in), 2);
    for (bool accumulate : {false, true}) {
      auto y = random_vector(size_t(rows * out), 3), ref = y;
      linear(x.data(), w.data(), y.data(), rows, in, out, accumulate);
      linear_reference(x.data(), w.data(), ref.data(), rows, in, out, accumulate);
      for (size_t i = 0; i < y.size(); ++i)
        ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::abs(ref[i]))) << rows << "x" << in << "x" << out;
    }
  }
}

// Window execution merges rows of several requests into one streaming pass: every row must get
// the bits linear() gives it in its own call of at most kLinearStreamingMaxRows rows.
TEST(Kernels, StreamingRowsAreBitIdenticalWhateverTheyAreMergedWith) {
  for (auto [rows, in, out] : {std::tuple{1, 7, 5}, {13, 768, 300}, {40, 33, 129}, {9, 3072, 70}}) {
    auto x = random_vector(size_t(rows * in), 4), w = random_vector(size_t(out * in), 5);
    for (bool accumulate : {false, true}) {
      auto merged = random_vector(size_t(rows * out), 6), alone = merged;
      linear_streaming(x.data(), w.data(), merged.data(), rows, in, out, accumulate);
      // The same rows in the groups of 1..kLinearStreamingMaxRows that requests would send.
      for (int64_t first = 0, group = 1; first < rows; first += group, group = group % kLinearStreamingMaxRows + 1) {
        const int64_t n = std::min<int64_t>(group, rows - first);
        linear(x.data() + first * in, w.data(), alone.data() + first * out, n, in, out, accumulate);
      }
      ASSERT_EQ(0, std::memcmp(merged.data(), alone.data(), merged.size() * sizeof(float)))
          << rows << "x" << in << "x" << out << (accumulate ? " accumulating" : "");
      auto ref = random_vector(size_t(rows * out), 6);
      linear_reference(x.data(), w.data(), ref.data(), rows, in, out, accumulate);
      for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(merged[i], ref[i], 1e-4 * (1 + std::abs(ref[i])));
    }
  }
}

// bf16 weights widened on the fly: the bits of the fp32 kernels on the widened matrix (streaming
// and sgemm row counts alike), and close to the plain-loop twin.
TEST(Kernels, Bf16LinearGivesTheBitsOfFp32OnTheWidenedWeights) {
  for (auto [rows, in, out] : {std::tuple{1, 7, 5}, {2, 768, 300}, {8, 33, 129}, {9, 40, 70}, {30, 96, 64}}) {
    auto x = random_vector(size_t(rows * in), 7), w = random_vector(size_t(out * in), 8);
    std::vector<uint16_t> w_bf16(w.size());
    std::vector<float> widened(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &w[i], 4);
      w_bf16[i] = uint16_t(bits >> 16);  // truncation: any bf16 value will do
      bits = uint32_t(w_bf16[i]) << 16;
      std::memcpy(&widened[i], &bits, 4);
    }
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(in) + "x" + std::to_string(out) +
                   (accumulate ? " accumulating" : ""));
      auto y = random_vector(size_t(rows * out), 9), fp32 = y, streamed = y, streamed_fp32 = y, ref = y;
      linear_bf16(x.data(), w_bf16.data(), y.data(), rows, in, out, accumulate);
      linear(x.data(), widened.data(), fp32.data(), rows, in, out, accumulate);
      ASSERT_EQ(0, std::memcmp(y.data(), fp32.data(), y.size() * sizeof(float)));
      linear_streaming_bf16(x.data(), w_bf16.data(), streamed.data(), rows, in, out, accumulate);
      linear_streaming(x.data(), widened.data(), streamed_fp32.data(), rows, in, out, accumulate);
      ASSERT_EQ(0, std::memcmp(streamed.data(), streamed_fp32.data(), y.size() * sizeof(float)));
      linear_bf16_reference(x.data(), w_bf16.data(), ref.data(), rows, in, out, accumulate);
      for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::abs(ref[i])));
    }
  }
}

// f16 weights, the same way: bit for bit the fp32 kernels on the widened matrix (streaming and
// tiled row counts, output counts that are not multiples of the 4-row block, `in` with and
// without a tail), and within 1e-4 relative error (plus 1e-4 absolute) of the plain-loop twin,
// which sums in double: fp32 sums of up to 3072 products of values in [-1, 1] differ from it by a
// few ulps of the partial sums, far below that, while a wrong widening or a dropped row would
// miss by orders of magnitude.
TEST(Kernels, F16LinearGivesTheBitsOfFp32OnTheWidenedWeights) {
  for (auto [rows, in, out] :
       {std::tuple{1, 7, 5}, {1, 1024, 7168}, {2, 768, 300}, {8, 33, 129}, {9, 40, 70}, {30, 96, 64}, {37, 3072, 67}}) {
    auto x = random_vector(size_t(rows * in), 17), w = random_vector(size_t(out * in), 18);
    std::vector<uint16_t> w_f16(w.size());
    std::vector<float> widened(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      w_f16[i] = f32_to_f16(w[i]);
      widened[i] = f16_to_f32(w_f16[i]);
    }
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(in) + "x" + std::to_string(out) +
                   (accumulate ? " accumulating" : ""));
      auto y = random_vector(size_t(rows * out), 19), fp32 = y, streamed = y, streamed_fp32 = y, ref = y;
      linear_f16(x.data(), w_f16.data(), y.data(), rows, in, out, accumulate);
      linear(x.data(), widened.data(), fp32.data(), rows, in, out, accumulate);
      ASSERT_EQ(0, std::memcmp(y.data(), fp32.data(), y.size() * sizeof(float)));
      linear_streaming_f16(x.data(), w_f16.data(), streamed.data(), rows, in, out, accumulate);
      linear_streaming(x.data(), widened.data(), streamed_fp32.data(), rows, in, out, accumulate);
      ASSERT_EQ(0, std::memcmp(streamed.data(), streamed_fp32.data(), y.size() * sizeof(float)));
      linear_f16_reference(x.data(), w_f16.data(), ref.data(), rows, in, out, accumulate);
      for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::abs(ref[i])));
        ASSERT_NEAR(streamed[i], ref[i], 1e-4 * (1 + std::abs(ref[i])));
      }
    }
  }
}

// A group of products run as one parallel loop gives every product the bits of its own call,
// whatever its weight type, row count or size (runs of the loop span product boundaries: outputs
// not a multiple of 4, products smaller and larger than one 64-row chunk, a product of no rows),
// in both builds.
TEST(Kernels, StreamingGroupGivesEachProductTheBitsOfItsOwnCall) {
  struct Case {
    DType type;
    int64_t rows, in, out;
    bool accumulate;
  };
  const std::vector<Case> cases = {{DType::kF16, 1, 1024, 1030, false}, {DType::kF16, 1, 1024, 5, true},
                                   {DType::kBF16, 3, 40, 70, false},    {DType::kF32, 1, 33, 129, true},
                                   {DType::kF16, 0, 16, 64, false},     {DType::kF32, 9, 96, 300, false},
                                   {DType::kBF16, 1, 3584, 2, true}};
  for (bool portable : {false, true}) {
    SCOPED_TRACE(portable ? "portable build" : "best build");
    use_portable_expert_kernels(portable);
    std::vector<std::vector<float>> x, w32, grouped, alone;
    std::vector<std::vector<uint16_t>> w16;
    std::vector<StreamingProduct> group;
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      x.push_back(random_vector(size_t(c.rows * c.in), uint32_t(40 + i)));
      w32.push_back(random_vector(size_t(c.out * c.in), uint32_t(60 + i)));
      w16.emplace_back(w32.back().size());
      for (size_t j = 0; j < w32.back().size(); ++j)
        w16.back()[j] = c.type == DType::kF16 ? f32_to_f16(w32.back()[j]) : f32_to_bf16(w32.back()[j]);
      grouped.push_back(random_vector(size_t(c.rows * c.out), uint32_t(80 + i)));
      alone.push_back(grouped.back());
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      const void* w = c.type == DType::kF32 ? static_cast<const void*>(w32[i].data()) : w16[i].data();
      group.push_back({.x = x[i].data(),
                       .w = w,
                       .type = c.type,
                       .y = grouped[i].data(),
                       .rows = c.rows,
                       .in = c.in,
                       .out = c.out,
                       .accumulate = c.accumulate});
      if (c.type == DType::kF32)
        linear_streaming(x[i].data(), w32[i].data(), alone[i].data(), c.rows, c.in, c.out, c.accumulate);
      else if (c.type == DType::kF16)
        linear_streaming_f16(x[i].data(), w16[i].data(), alone[i].data(), c.rows, c.in, c.out, c.accumulate);
      else
        linear_streaming_bf16(x[i].data(), w16[i].data(), alone[i].data(), c.rows, c.in, c.out, c.accumulate);
    }
    linear_streaming_group(group.data(), group.size());
    for (size_t i = 0; i < cases.size(); ++i)  // (memcmp may not be given the null data of an empty product)
      EXPECT_TRUE(grouped[i].empty() ||
                  std::memcmp(grouped[i].data(), alone[i].data(), grouped[i].size() * sizeof(float)) == 0)
          << "product " << i;
  }
  use_portable_expert_kernels(false);
}

// The portable build (what CPUs without AVX2, FMA and F16C run) keeps the same promises: f16 and
// bf16 weights give the bits of fp32 weights holding the widened values, merged rows give the
// bits of their own calls, and every product is within 1e-4 relative error of the plain loops.
TEST(Kernels, PortableBuildKeepsTheSamePromises) {
  ASSERT_TRUE(use_portable_expert_kernels(true));
  for (auto [rows, in, out] : {std::tuple{1, 7, 5}, {2, 768, 300}, {8, 33, 129}, {13, 40, 70}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(in) + "x" + std::to_string(out));
    auto x = random_vector(size_t(rows * in), 27), w = random_vector(size_t(out * in), 28);
    std::vector<uint16_t> w_f16(w.size()), w_bf16(w.size());
    std::vector<float> from_f16(w.size()), from_bf16(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      w_f16[i] = f32_to_f16(w[i]);
      from_f16[i] = f16_to_f32(w_f16[i]);
      w_bf16[i] = f32_to_bf16(w[i]);
      from_bf16[i] = bf16_to_f32(w_bf16[i]);
    }
    auto y = random_vector(size_t(rows * out), 29), fp32 = y, ref = y, half = y, merged = y, alone = y;
    linear_f16(x.data(), w_f16.data(), half.data(), rows, in, out, true);
    linear(x.data(), from_f16.data(), fp32.data(), rows, in, out, true);
    EXPECT_EQ(0, std::memcmp(half.data(), fp32.data(), y.size() * sizeof(float)));
    half = y;
    fp32 = y;
    linear_bf16(x.data(), w_bf16.data(), half.data(), rows, in, out, true);
    linear(x.data(), from_bf16.data(), fp32.data(), rows, in, out, true);
    EXPECT_EQ(0, std::memcmp(half.data(), fp32.data(), y.size() * sizeof(float)));
    linear_reference(x.data(), from_bf16.data(), ref.data(), rows, in, out, true);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(fp32[i], ref[i], 1e-4 * (1 + std::abs(ref[i])));
    linear_streaming(x.data(), w.data(), merged.data(), rows, in, out);
    for (int64_t r = 0; r < rows; ++r) linear(x.data() + r * in, w.data(), alone.data() + r * out, 1, in, out);
    EXPECT_EQ(0, std::memcmp(merged.data(), alone.data(), merged.size() * sizeof(float)));
  }
  use_portable_expert_kernels(false);
}

// linear_packed (core's packed kernel over contiguous rows, panels split over two threads) on
// every instruction set this CPU has gives the bits of core's plain-loop twin, whatever the row
// count, and agrees with plain double-precision loops. Shapes cover panel tails (out not a
// multiple of 16), odd `in`, and every row remainder.
TEST(Kernels, PackedLinearIsBitIdenticalToItsPlainTwin) {
  std::vector<GemmIsa> isas;
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kNeon, GemmIsa::kScalar})
    if (gemm_isa_supported(isa)) isas.push_back(isa);
  for (GemmIsa isa : isas)
    for (auto [in, out] : {std::pair{7, 5}, {33, 129}, {768, 96}, {64, 32}, {100, 70}}) {
      auto w = random_vector(size_t(out * in), 7);
      const PackedWeights packed(w.data(), out, in);
      for (int64_t rows : {1, 2, 5, 6, 7, 12, 13}) {
        auto x = random_vector(size_t(rows * in), 8);
        for (bool accumulate : {false, true}) {
          auto y = random_vector(size_t(rows * out), 9), twin = y, one_by_one = y, ref = y;
          linear_packed(x.data(), packed, y.data(), rows, accumulate, isa);
          std::vector<const float*> x_rows;
          std::vector<float*> twin_rows;
          for (int64_t r = 0; r < rows; ++r) {
            x_rows.push_back(x.data() + r * in);
            twin_rows.push_back(twin.data() + r * out);
          }
          packed_gemm_reference(packed, rows, x_rows.data(), twin_rows.data(),
                                {.bias = nullptr, .accumulate = accumulate});
          for (int64_t r = 0; r < rows; ++r)
            linear_packed(x.data() + r * in, packed, one_by_one.data() + r * out, 1, accumulate, isa);
          const std::string what = std::string(gemm_isa_name(isa)) + ": " + std::to_string(rows) + "x" +
                                   std::to_string(in) + "x" + std::to_string(out);
          ASSERT_EQ(0, std::memcmp(y.data(), twin.data(), y.size() * sizeof(float))) << what;
          ASSERT_EQ(0, std::memcmp(y.data(), one_by_one.data(), y.size() * sizeof(float))) << what;
          linear_reference(x.data(), w.data(), ref.data(), rows, in, out, accumulate);
          for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::abs(ref[i]))) << what;
        }
      }
    }
}

TEST(Kernels, RmsNormScalesByRootMeanSquareWithoutCentering) {
  std::vector<float> x = {3.f, -4.f, 0.f, 0.f}, w = {1.f, 2.f, 1.f, 1.f}, y(4);
  rms_norm(x.data(), w.data(), y.data(), 1, 4, 0.f);  // rms = sqrt(25 / 4) = 2.5
  EXPECT_FLOAT_EQ(y[0], 1.2f);
  EXPECT_FLOAT_EQ(y[1], -3.2f);
  EXPECT_FLOAT_EQ(y[2], 0.f);
}

TEST(Kernels, SoftmaxAndArgmaxPickFirstOfTies) {
  std::vector<float> v = {1.f, 3.f, 3.f, -2.f};
  EXPECT_EQ(argmax(v.data(), 4), 1);
  softmax_inplace(v.data(), 4);
  EXPECT_NEAR(v[0] + v[1] + v[2] + v[3], 1.0, 1e-6);
  EXPECT_FLOAT_EQ(v[1], v[2]);
}

TEST(Kernels, RelativePositionBucketsMatchHuggingFace) {
  const std::vector<int64_t> rp = {-200, -128, -100, -64, -33, -20, -12, -9, -8,  -7,  -1, 0,
                                   1,    7,    8,    9,   12,  20,  33,  64, 100, 128, 200};
  const std::vector<int64_t> bidirectional = {15, 15, 15, 14, 12, 10, 9,  8,  8,  7,  1, 0,
                                              17, 23, 24, 24, 25, 26, 28, 30, 31, 31, 31};
  const std::vector<int64_t> causal = {31, 31, 30, 26, 21, 17, 12, 9, 8, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < rp.size(); ++i) {
    EXPECT_EQ(relative_position_bucket(rp[i], true, 32, 128), bidirectional[i]) << rp[i];
    EXPECT_EQ(relative_position_bucket(rp[i], false, 32, 128), causal[i]) << rp[i];
  }
}

}  // namespace
}  // namespace perfmem::sida
