#include "perfmem/core/packed_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace perfmem {
namespace {

std::vector<GemmIsa> supported_isas() {
  std::vector<GemmIsa> isas;
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kNeon, GemmIsa::kScalar})
    if (gemm_isa_supported(isa)) isas.push_back(isa);
  return isas;
}

std::vector<float> random_floats(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// Rows stored `stride` floats apart in one block, addressed through a pointer array.
struct Rows {
  std::vector<float> block;
  std::vector<float*> ptrs;
  Rows(int64_t rows, int64_t stride, float fill) : block(static_cast<size_t>(rows * stride + 1), fill) {
    for (int64_t r = 0; r < rows; ++r) ptrs.push_back(block.data() + r * stride);
  }
  const float* const* in() const { return ptrs.data(); }
  float* const* out() const { return ptrs.data(); }
};

// Bit-equal, or both NaN (NaN payloads are not part of the contract).
bool same_value(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof a) == 0;
}

void expect_same_rows(const Rows& got, const Rows& want, int64_t rows, int64_t width, const std::string& what) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < width; ++o)
      if (!same_value(got.ptrs[r][o], want.ptrs[r][o])) {
        ADD_FAILURE() << what << ": y[" << r << "][" << o << "] = " << got.ptrs[r][o] << ", reference "
                      << want.ptrs[r][o];
        return;
      }
}

TEST(PackedWeights, PanelLayoutAndZeroPadding) {
  const int64_t out = 37, in = 5;
  std::vector<float> w(out * in);
  for (int64_t i = 0; i < out * in; ++i) w[i] = float(i + 1);
  PackedWeights packed(w.data(), out, in);
  EXPECT_EQ(packed.panels(), 3);
  EXPECT_EQ(packed.bytes(), size_t(3 * in * kGemmPanelWidth * sizeof(float)));
  for (int64_t p = 0; p < packed.panels(); ++p)
    for (int64_t k = 0; k < in; ++k)
      for (int64_t j = 0; j < kGemmPanelWidth; ++j) {
        const int64_t o = p * kGemmPanelWidth + j;
        EXPECT_EQ(packed.panel(p)[k * kGemmPanelWidth + j], o < out ? w[o * in + k] : 0.f) << p << " " << k << " " << j;
      }
  EXPECT_EQ(reinterpret_cast<uintptr_t>(packed.panel(1)) % 64, 0u);
}

// Every supported instruction set against the twin, bit for bit, over shapes that hit every
// tile (1 to 9 rows, the row chunks of long calls), partial panels, empty products and each
// epilogue.
TEST(PackedGemm, EveryIsaMatchesTheReferenceBitForBit) {
  std::mt19937 rng(7);
  const int64_t row_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 64, 500};
  const int64_t outs[] = {1, 15, 16, 17, 50, 100};
  const int64_t ins[] = {0, 1, 3, 17, 300};
  for (GemmIsa isa : supported_isas())
    for (int64_t out : outs)
      for (int64_t in : ins) {
        const std::vector<float> w = random_floats(out * in, rng), bias = random_floats(out, rng);
        const PackedWeights packed(w.data(), out, in);
        for (int64_t rows : row_counts) {
          if (rows == 500 && out > 17) continue;  // one long call per weight is enough
          Rows x(rows, in + 3, 0.f);
          for (float& f : x.block) f = std::uniform_real_distribution<float>(-1.f, 1.f)(rng);
          for (int variant = 0; variant < 4; ++variant) {
            const GemmEpilogue epilogue{variant & 1 ? bias.data() : nullptr, (variant & 2) != 0};
            Rows got(rows, out + 1, 0.5f), want(rows, out + 1, 0.5f);
            packed_gemm(packed, rows, x.in(), got.out(), epilogue, isa);
            packed_gemm_reference(packed, rows, x.in(), want.out(), epilogue);
            expect_same_rows(got, want, rows, out,
                             std::string(gemm_isa_name(isa)) + " rows " + std::to_string(rows) + " out " +
                                 std::to_string(out) + " in " + std::to_string(in) + " variant " +
                                 std::to_string(variant));
            // Nothing past a row's `out` columns is written.
            for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(got.ptrs[r][out], 0.5f);
          }
        }
      }
}

// The reference itself against a double-precision product of the unpacked weight.
TEST(PackedGemm, ReferenceAgreesWithDoublePrecisionProduct) {
  std::mt19937 rng(3);
  const int64_t rows = 5, out = 40, in = 70;
  const std::vector<float> w = random_floats(out * in, rng), bias = random_floats(out, rng);
  Rows x(rows, in, 0.f), y(rows, out, 0.f);
  x.block = random_floats(rows * in + 1, rng);
  for (int64_t r = 0; r < rows; ++r) x.ptrs[r] = x.block.data() + r * in;
  packed_gemm_reference(PackedWeights(w.data(), out, in), rows, x.in(), y.out(), {bias.data(), false});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double want = bias[o];
      for (int64_t k = 0; k < in; ++k) want += double(x.ptrs[r][k]) * double(w[o * in + k]);
      EXPECT_NEAR(y.ptrs[r][o], want, 1e-4) << r << " " << o;
    }
}

// A row's result is the same whatever else shares the call: alone, among others, repeated, or
// reached through a pointer array in another order.
TEST(PackedGemm, RowResultsDoNotDependOnTheOtherRows) {
  std::mt19937 rng(11);
  const int64_t out = 70, in = 33, rows = 23;
  const std::vector<float> w = random_floats(out * in, rng);
  const PackedWeights packed(w.data(), out, in);
  std::vector<std::vector<float>> xs;
  for (int64_t r = 0; r < rows; ++r) xs.push_back(random_floats(in, rng));
  for (GemmIsa isa : supported_isas()) {
    std::vector<std::vector<float>> alone(rows, std::vector<float>(out));
    for (int64_t r = 0; r < rows; ++r) {
      const float* xp = xs[r].data();
      float* yp = alone[r].data();
      packed_gemm(packed, 1, &xp, &yp, {}, isa);
    }
    std::vector<const float*> xp;
    std::vector<std::vector<float>> together(rows, std::vector<float>(out));
    std::vector<float*> yp;
    for (int64_t r = rows - 1; r >= 0; --r) {  // reversed order
      xp.push_back(xs[r].data());
      yp.push_back(together[r].data());
    }
    packed_gemm(packed, rows, xp.data(), yp.data(), {}, isa);
    for (int64_t r = 0; r < rows; ++r)
      EXPECT_EQ(std::memcmp(alone[r].data(), together[r].data(), out * sizeof(float)), 0)
          << gemm_isa_name(isa) << " " << r;
  }
}

// Threads split a product by panel ranges: the parts write only their own columns and together
// give the whole product's bits.
TEST(PackedGemm, PanelRangesComposeToTheWholeProduct) {
  std::mt19937 rng(5);
  const int64_t out = 90, in = 20, rows = 7;
  const std::vector<float> w = random_floats(out * in, rng);
  const PackedWeights packed(w.data(), out, in);
  Rows x(rows, in, 0.f);
  x.block = random_floats(rows * in + 1, rng);
  for (int64_t r = 0; r < rows; ++r) x.ptrs[r] = x.block.data() + r * in;
  for (GemmIsa isa : supported_isas()) {
    Rows whole(rows, out, -7.f), parts(rows, out, -7.f);
    packed_gemm(packed, rows, x.in(), whole.out(), {}, isa);
    packed_gemm(packed, rows, x.in(), parts.out(), {}, isa, {0, 2});
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_NE(parts.ptrs[r][31], -7.f);
      EXPECT_EQ(parts.ptrs[r][32], -7.f);  // column 32 belongs to panel 2
    }
    packed_gemm(packed, rows, x.in(), parts.out(), {}, isa, {2, 3});
    packed_gemm(packed, rows, x.in(), parts.out(), {}, isa, {3, -1});
    expect_same_rows(parts, whole, rows, out, gemm_isa_name(isa));
  }
}

TEST(PackedGemm, NonFiniteValuesPropagateAsInTheReference) {
  const int64_t out = 20, in = 4;
  std::vector<float> w(out * in, 1.f);
  w[3] = std::numeric_limits<float>::infinity();
  w[in * 17] = std::numeric_limits<float>::quiet_NaN();
  const PackedWeights packed(w.data(), out, in);
  std::vector<float> x0 = {1.f, 2.f, 3.f, 4.f}, x1 = {0.f, 0.f, 0.f, -1.f};
  const float* xs[] = {x0.data(), x1.data()};
  for (GemmIsa isa : supported_isas()) {
    Rows got(2, out, 0.f), want(2, out, 0.f);
    packed_gemm(packed, 2, xs, got.out(), {}, isa);
    packed_gemm_reference(packed, 2, xs, want.out());
    expect_same_rows(got, want, 2, out, gemm_isa_name(isa));
    EXPECT_TRUE(std::isinf(got.ptrs[0][0]));
    EXPECT_TRUE(std::isnan(got.ptrs[1][17]));
  }
}

TEST(PackedGemmDeathTest, RejectsPanelRangesOutsideTheWeightAndUnsupportedIsas) {
  std::vector<float> w(32 * 2, 1.f), x(2, 1.f), y(32);
  const PackedWeights packed(w.data(), 32, 2);
  const float* xp = x.data();
  float* yp = y.data();
  EXPECT_DEATH(packed_gemm(packed, 1, &xp, &yp, {}, best_gemm_isa(), {0, 3}), "panel range");
  EXPECT_DEATH(packed_gemm(packed, 1, &xp, &yp, {}, best_gemm_isa(), {2, 1}), "panel range");
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kNeon})
    if (!gemm_isa_supported(isa)) { EXPECT_DEATH(packed_gemm(packed, 1, &xp, &yp, {}, isa), "not supported"); }
}

}  // namespace
}  // namespace perfmem
