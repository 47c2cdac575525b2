// Elementwise exp, sigmoid and tanh in plain float arithmetic, so that a loop calling them
// vectorises (no libm call, no branch): the systems' activation loops (ACRoBat's batched
// elementwise kernels, SiDA's predictor LSTM gates) use them, each beside a plain twin on
// std::exp / std::tanh that its tests compare with.
//
//   for (int64_t i = 0; i < n; ++i) y[i] = perfmem::fast_sigmoid(x[i]);   // vectorised by the compiler
//
// Accuracy: fast_exp is within about 1 ulp of std::exp on [-88, 88] and clamps outside it (so
// exp(-inf) is about 6e-39, not 0; exp(+inf) about 1.7e38); fast_sigmoid and fast_tanh are within
// a few ulps of 1 / (1 + std::exp(-x)) and std::tanh, exact at 0 and at the saturated ends, and
// keep NaN as NaN (the clamp alone would turn it into a finite value). A file whose loops should
// vectorise with the NaN selects needs -fno-trapping-math (GCC's default forbids if-converting
// float compares); it changes no result.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace perfmem {

// exp(x) by range reduction and a degree-6 polynomial (Cephes' coefficients).
inline float fast_exp(float x) {
  x = std::min(88.0f, std::max(-88.0f, x));
  const float t = x * 1.44269504088896341f;
  // Rounded half away from zero, written without a branch so that every clone vectorises
  // (a conditional here kept the AVX2 and baseline loops scalar).
  const float n = std::trunc(t + std::copysign(0.5f, t));
  const int ni = static_cast<int>(n);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

inline float fast_sigmoid(float x) {
  const float s = 1.0f / (1.0f + fast_exp(-x));
  return x != x ? x : s;
}

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|): no overflow, no cancellation for
// large |x|; near 0 the absolute error stays at float epsilon.
inline float fast_tanh(float x) {
  const float a = std::fabs(x);
  const float e = fast_exp(-2.0f * a);
  float t = (1.0f - e) / (1.0f + e);
  t = x < 0 ? -t : t;
  return x != x ? x : t;
}

}  // namespace perfmem
