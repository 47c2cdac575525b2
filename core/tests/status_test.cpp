#include "perfmem/core/status.h"

#include <gtest/gtest.h>

namespace perfmem {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return input_error("args", "value", "a positive number", std::to_string(v));
  return v;
}

Result<int> doubled(int v) {
  PERFMEM_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return 2 * x;
}

Status check_all(int a, int b) {
  PERFMEM_RETURN_IF_ERROR(parse_positive(a).status());
  PERFMEM_RETURN_IF_ERROR(parse_positive(b).status());
  return Status::Ok();
}

TEST(Status, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.to_string(), "ok");
}

TEST(Status, InputErrorNamesFilePlaceExpectedAndFound) {
  Status s = input_error("model.tflite", "operator 3 (CONV_2D)", "int8 input", "float32");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidInput);
  EXPECT_EQ(s.message(), "model.tflite: operator 3 (CONV_2D): expected int8 input, found float32");
  EXPECT_EQ(s.to_string(), "invalid input: " + s.message());
  // A tensor name or value from a crafted file cannot write escape sequences or lines.
  Status crafted = input_error("model.safetensors", "tensor \"a\x1b[2J\nb\"", "shape [2]", "\x7f[3]");
  EXPECT_EQ(crafted.message(), "model.safetensors: tensor \"a\\x1b[2J\\x0ab\": expected shape [2], found \\x7f[3]");
}

TEST(Status, ContextIsPrefixedAndCodeKept) {
  Status s = not_found_error("ckpt", "tensor \"x\" is missing").with_context("loading layer 2");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "loading layer 2: ckpt: tensor \"x\" is missing");
  EXPECT_TRUE(Status::Ok().with_context("ignored").ok());
}

TEST(Status, IoErrorIncludesSystemReason) {
  Status s = io_error("/nonexistent", "cannot open", ENOENT);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("No such file"), std::string::npos) << s.message();
}

TEST(Result, HoldsValueOrError) {
  auto good = doubled(4);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 8);
  auto bad = doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("expected a positive number, found -1"), std::string::npos);
  EXPECT_TRUE(check_all(1, 2).ok());
  EXPECT_FALSE(check_all(1, 0).ok());
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  auto bad = parse_positive(0);
  EXPECT_DEATH((void)bad.value(), "value\\(\\) on an error Result");
}

TEST(CheckDeathTest, BrokenInvariantAbortsWithLocation) {
  EXPECT_DEATH(PERFMEM_CHECK(1 + 1 == 3, "arithmetic"), "internal invariant violated.*arithmetic");
}

}  // namespace
}  // namespace perfmem
