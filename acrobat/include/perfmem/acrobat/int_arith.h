// Checked 64-bit integer arithmetic of the .acr language, and overflow-safe tensor sizes.
//
//   IntResult r = checked_binary(BinOp::kDiv, a, b);
//   if (r.error) fail(pos, r.error);        // e.g. "division by zero", "a + b overflows 64 bits"
//
// The same rules hold when the checker folds constants and when the interpreter runs a
// program: a result that does not fit in int64 is an error, never wrapped (signed overflow is
// undefined behaviour in C++, and INT64_MIN / -1 traps on x86). `a % -1` is 0 for every a
// (the mathematical remainder), `a / 0` and `a % 0` are errors.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

struct IntResult {
  int64_t value = 0;
  const char* error = nullptr;  // a static message when the operation has no int64 result
};

// + - * / % on Int; comparisons give 0/1. && and || are not handled (they short-circuit).
inline IntResult checked_binary(BinOp op, int64_t a, int64_t b) {
  int64_t r = 0;
  switch (op) {
    case BinOp::kAdd:
      if (__builtin_add_overflow(a, b, &r)) return {0, "an Int result: the sum overflows 64 bits"};
      return {r};
    case BinOp::kSub:
      if (__builtin_sub_overflow(a, b, &r)) return {0, "an Int result: the difference overflows 64 bits"};
      return {r};
    case BinOp::kMul:
      if (__builtin_mul_overflow(a, b, &r)) return {0, "an Int result: the product overflows 64 bits"};
      return {r};
    case BinOp::kDiv:
      if (b == 0) return {0, "a non-zero divisor: division by zero"};
      if (b == -1 && a == std::numeric_limits<int64_t>::min())
        return {0, "an Int result: the quotient overflows 64 bits"};
      return {a / b};
    case BinOp::kMod:
      if (b == 0) return {0, "a non-zero divisor: division by zero"};
      if (b == -1) return {0};  // INT64_MIN % -1 traps in hardware; the remainder is 0
      return {a % b};
    case BinOp::kLt: return {a < b};
    case BinOp::kLe: return {a <= b};
    case BinOp::kGt: return {a > b};
    case BinOp::kGe: return {a >= b};
    case BinOp::kEq: return {a == b};
    case BinOp::kNe: return {a != b};
    default: return {0, "an arithmetic or comparison operator"};
  }
}

inline IntResult checked_negate(int64_t a) {
  if (a == std::numeric_limits<int64_t>::min()) return {0, "an Int result: the negation overflows 64 bits"};
  return {-a};
}

// The largest tensor a program may declare or compute, per instance (8 GiB of float32). The
// checker rejects larger shapes; the runtime checks batch totals again before allocating.
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 31;

// The element count of `dims`, or -1 when it exceeds `limit` (checked at every step, so a
// product that would wrap around 64 bits is reported instead of wrapping to a small value).
inline int64_t checked_numel(const std::vector<int64_t>& dims, int64_t limit = kMaxTensorElements) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n) || n > limit) return -1;
  }
  return n;
}

}  // namespace perfmem::acrobat
