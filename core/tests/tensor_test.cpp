#include "perfmem/core/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace perfmem {
namespace {

TEST(DType, SizesNamesAndParsing) {
  EXPECT_EQ(dtype_size(DType::kF32), 4u);
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF16), 2u);
  EXPECT_EQ(dtype_size(DType::kI8), 1u);
  EXPECT_EQ(dtype_size(DType::kU8), 1u);
  EXPECT_EQ(dtype_size(DType::kI32), 4u);
  EXPECT_EQ(dtype_size(DType::kI64), 8u);
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8, DType::kU8, DType::kI32, DType::kI64}) {
    EXPECT_EQ(parse_dtype(dtype_name(d)), d);
    EXPECT_EQ(parse_dtype(dtype_safetensors_name(d)), d);
  }
  EXPECT_FALSE(parse_dtype("F64").has_value());
  EXPECT_FALSE(parse_dtype("").has_value());
}

TEST(Bf16, RoundTripAndRoundToNearestEven) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-2.5f)), -2.5f);
  // 1 + 2^-8 is exactly half way between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  // Slightly above half way rounds up.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20))), 1.0f + std::ldexp(1.0f, -7));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity()))));
}

TEST(F16, ExhaustiveRoundTripOfEveryHalfValue) {
  // Every f16 bit pattern converts to f32 and back unchanged (NaNs stay NaN).
  for (uint32_t bits = 0; bits < 0x10000u; ++bits) {
    float f = f16_to_f32(static_cast<uint16_t>(bits));
    uint16_t back = f32_to_f16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(back)));
    } else {
      ASSERT_EQ(back, bits) << "f16 bits " << bits << " -> " << f;
    }
  }
}

TEST(F16, KnownValuesAndRounding) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);               // largest finite
  EXPECT_EQ(f32_to_f16(70000.0f), 0x7c00);               // overflow to inf
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // half of it: tie to even (zero)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
}

TEST(TensorView, ContiguousIndexingAndPrinting) {
  float data[6] = {1, 2, 3, 4, 5, 6};
  TensorView t(data, DType::kF32, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.strides(), (Shape{3, 1}));
  EXPECT_EQ(t.at<float>({1, 2}), 6.0f);
  EXPECT_EQ(t.to_string(), "f32[2, 3] {{1, 2, 3}, {4, 5, 6}}");
  TensorView rows = t.slice0(1, 2);
  EXPECT_EQ(rows.at<float>({0, 0}), 4.0f);
}

TEST(TensorView, StridedViewAndTruncatedPrinting) {
  int32_t data[12];
  for (int i = 0; i < 12; ++i) data[i] = i;
  TensorView transposed(data, DType::kI32, {4, 3}, {1, 4});  // view of a 3x4 as 4x3
  EXPECT_FALSE(transposed.is_contiguous());
  EXPECT_EQ(transposed.at<int32_t>({3, 2}), 11);
  EXPECT_EQ(transposed.at<int32_t>({1, 0}), 1);
  int8_t row[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, -9};
  EXPECT_EQ(TensorView(row, DType::kI8, {10}).to_string(3), "i8[10] {0, 1, 2, ..., -9}");
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_to_string({}), "[]");
}

TEST(TensorViewDeathTest, OutOfBoundsIndexIsAnInvariantFailure) {
  float data[4] = {};
  TensorView t(data, DType::kF32, {2, 2});
  EXPECT_DEATH((void)t.at<float>({2, 0}), "index out of bounds");
  EXPECT_DEATH((void)t.at<float>({0}), "rank");
}

TEST(AlignedBuffer, AlignedZeroedAndMovable) {
  AlignedBuffer a(100, 4096);
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 4096, 0u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a.data_as<uint8_t>()[i], 0);
  void* p = a.data();
  AlignedBuffer b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT: moved-from state is specified
  AlignedBuffer empty;
  EXPECT_TRUE(empty.empty());
  Tensor z = Tensor::zeros(DType::kBF16, {3, 5});
  EXPECT_EQ(z.view.nbytes(), 30u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(z.view.data()) % 64, 0u);
}

}  // namespace
}  // namespace perfmem
