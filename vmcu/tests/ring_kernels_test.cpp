// Segment kernels against their reference twins (bit for bit, tensors wrapping around the ring),
// and the offset solver against the closed forms of the brief.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "perfmem/vmcu/quantization.h"
#include "perfmem/vmcu/ring_plan.h"
#include "vmcu/deploy_kernels.h"
#include "vmcu/kernels.h"
#include "vmcu/segment_fused.h"
#include "vmcu/segment_kernels.h"

namespace {
namespace vm = perfmem::vmcu;

std::vector<int8_t> random_s8(size_t n, std::mt19937& rng, int lo = -128, int hi = 127) {
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(u(rng));
  return v;
}

std::vector<int32_t> random_i32(size_t n, std::mt19937& rng, int lo, int hi) {
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// A ring with the input at a random base and the output right after it, both free to wrap.
struct RingFixture {
  std::vector<int8_t> pool;
  vmcu_ring ring{};
  int32_t in_base = 0, in2_base = 0, out_base = 0;
  std::vector<vm::RingAccess> trace;

  RingFixture(const std::vector<int8_t>& in, size_t out_bytes, std::mt19937& rng,
              const std::vector<int8_t>* in2 = nullptr) {
    const size_t in2_bytes = in2 ? in2->size() : 0;
    const size_t cap = in.size() + in2_bytes + out_bytes + std::uniform_int_distribution<size_t>(0, 7)(rng);
    pool = random_s8(cap, rng);  // garbage everywhere the kernel must not read
    ring = {pool.data(), static_cast<int32_t>(cap), nullptr, nullptr};
    in_base = std::uniform_int_distribution<int32_t>(0, static_cast<int32_t>(cap) - 1)(rng);
    in2_base = static_cast<int32_t>((in_base + in.size()) % cap);
    out_base = static_cast<int32_t>((in2_base + in2_bytes) % cap);
    vmcu_ring_write(&ring, in_base, 0, static_cast<int32_t>(in.size()), in.data());
    if (in2) vmcu_ring_write(&ring, in2_base, 0, static_cast<int32_t>(in2->size()), in2->data());
  }
  std::vector<int8_t> output(size_t bytes) const {
    std::vector<int8_t> out(bytes);
    vmcu_ring_read(&ring, out_base, 0, static_cast<int32_t>(bytes), out.data());
    return out;
  }
};

struct ConvCase {
  int h, w, cin, cout, k, stride, dilation;
  bool same;
  int depth_multiplier;  // depthwise only
};

std::string name(const ConvCase& c) {
  return std::to_string(c.h) + "x" + std::to_string(c.w) + "x" + std::to_string(c.cin) + "->" + std::to_string(c.cout) +
         " k" + std::to_string(c.k) + " s" + std::to_string(c.stride) + " d" + std::to_string(c.dilation) +
         (c.same ? " same" : " valid");
}

struct ConvSetup {
  vmcu_conv_params p{};
  std::vector<int32_t> mult, shift, bias;
  std::vector<int8_t> in, filter;
  vmcu_shape4 is{}, fs{}, os{};
};

ConvSetup make_conv(const ConvCase& c, bool depthwise, std::mt19937& rng) {
  ConvSetup s;
  const int out_c = depthwise ? c.cin * c.depth_multiplier : c.cout;
  const auto ph =
      vm::compute_padding(c.same ? vm::Padding::kSame : vm::Padding::kValid, c.h, c.k, c.stride, c.dilation);
  const auto pw =
      vm::compute_padding(c.same ? vm::Padding::kSame : vm::Padding::kValid, c.w, c.k, c.stride, c.dilation);
  s.is = {1, c.h, c.w, c.cin};
  s.fs = depthwise ? vmcu_shape4{1, c.k, c.k, out_c} : vmcu_shape4{out_c, c.k, c.k, c.cin};
  s.os = {1, ph.out, pw.out, out_c};
  s.in = random_s8(static_cast<size_t>(vmcu_shape4_size(s.is)), rng);
  s.filter = random_s8(static_cast<size_t>(vmcu_shape4_size(s.fs)), rng, -127, 127);
  s.bias = random_i32(out_c, rng, -5000, 5000);
  s.mult = random_i32(out_c, rng, 1 << 30, INT32_MAX);
  s.shift = random_i32(out_c, rng, -10, -4);
  s.p.stride_h = s.p.stride_w = c.stride;
  s.p.dilation_h = s.p.dilation_w = c.dilation;
  s.p.pad_h = ph.pad_before;
  s.p.pad_w = pw.pad_before;
  s.p.depth_multiplier = depthwise ? c.depth_multiplier : 1;
  s.p.input_offset = std::uniform_int_distribution<int>(-127, 128)(rng);
  s.p.output_offset = std::uniform_int_distribution<int>(-128, 127)(rng);
  s.p.act_min = std::uniform_int_distribution<int>(-128, -20)(rng);
  s.p.act_max = std::uniform_int_distribution<int>(20, 127)(rng);
  s.p.output_multiplier = s.mult.data();
  s.p.output_shift = s.shift.data();
  return s;
}

const std::vector<ConvCase> kConvCases = {
    {5, 5, 3, 3, 3, 1, 1, true, 1},  {7, 6, 4, 9, 3, 1, 1, true, 1},   {7, 6, 9, 4, 3, 1, 1, true, 2},
    {9, 9, 5, 5, 3, 2, 1, true, 1},  {10, 8, 8, 16, 3, 2, 1, true, 1}, {11, 11, 3, 6, 5, 2, 1, false, 3},
    {6, 6, 4, 4, 1, 1, 1, false, 1}, {3, 3, 8, 4, 5, 1, 1, true, 1},   {2, 3, 6, 2, 7, 2, 1, true, 1},
    {8, 8, 3, 5, 3, 1, 2, true, 1},  {13, 5, 7, 3, 3, 3, 1, false, 1}, {4, 4, 16, 16, 4, 2, 1, true, 1},
};

TEST(RingKernels, ConvIsBitExactWithTheReference) {
  std::mt19937 rng(11);
  for (const ConvCase& c : kConvCases) {
    for (int trial = 0; trial < 3; ++trial) {
      ConvSetup s = make_conv(c, false, rng);
      const size_t out_bytes = static_cast<size_t>(vmcu_shape4_size(s.os));
      std::vector<int8_t> expected(out_bytes);
      vmcu_conv2d_s8(&s.p, s.is, s.in.data(), s.fs, s.filter.data(), s.bias.data(), s.os, expected.data());
      RingFixture f(s.in, out_bytes, rng);
      std::vector<int8_t> stage(static_cast<size_t>(s.os.c));
      ASSERT_EQ(vmcu_seg_conv2d_s8(&s.p, &f.ring, f.in_base, s.is, s.fs, s.filter.data(), s.bias.data(), f.out_base,
                                   s.os, stage.data()),
                0);
      EXPECT_EQ(f.output(out_bytes), expected) << name(c) << " in_base " << f.in_base << " cap " << f.ring.cap;
    }
  }
}

TEST(RingKernels, WindowsBeyondTheTapTableAreRefused) {
  std::mt19937 rng(17);
  ConvSetup s = make_conv({10, 10, 2, 3, 9, 1, 1, true, 1}, false, rng);
  RingFixture f(s.in, static_cast<size_t>(vmcu_shape4_size(s.os)), rng);
  std::vector<int8_t> stage(3);
  EXPECT_EQ(vmcu_seg_conv2d_s8(&s.p, &f.ring, f.in_base, s.is, s.fs, s.filter.data(), s.bias.data(), f.out_base, s.os,
                               stage.data()),
            -1);
}

TEST(RingKernels, DepthwiseIsBitExactWithTheReference) {
  std::mt19937 rng(12);
  for (const ConvCase& c : kConvCases) {
    for (int trial = 0; trial < 3; ++trial) {
      ConvSetup s = make_conv(c, true, rng);
      const size_t out_bytes = static_cast<size_t>(vmcu_shape4_size(s.os));
      std::vector<int8_t> expected(out_bytes);
      vmcu_depthwise_conv2d_s8(&s.p, s.is, s.in.data(), s.fs, s.filter.data(), s.bias.data(), s.os, expected.data());
      RingFixture f(s.in, out_bytes, rng);
      std::vector<int8_t> stage(static_cast<size_t>(s.os.c));
      ASSERT_EQ(vmcu_seg_depthwise_conv2d_s8(&s.p, &f.ring, f.in_base, s.is, s.fs, s.filter.data(), s.bias.data(),
                                             f.out_base, s.os, stage.data()),
                0);
      EXPECT_EQ(f.output(out_bytes), expected) << name(c) << " x" << c.depth_multiplier;
    }
  }
}

// TinyEngine's in-place depthwise (deploy_kernels.h): the output overwrites its input, one
// channel at a time through a channel workspace, and equals the two-buffer reference.
TEST(DeployKernels, InPlaceDepthwiseIsBitExactWithTheReference) {
  std::mt19937 rng(21);
  int checked = 0;
  for (const ConvCase& c : kConvCases) {
    for (int trial = 0; trial < 3; ++trial) {
      ConvCase one = c;
      one.depth_multiplier = 1;
      ConvSetup s = make_conv(one, true, rng);
      if (vmcu_shape4_size(s.os) > vmcu_shape4_size(s.is)) continue;  // VALID never grows; SAME keeps the size
      std::vector<int8_t> expected(static_cast<size_t>(vmcu_shape4_size(s.os)));
      vmcu_depthwise_conv2d_s8(&s.p, s.is, s.in.data(), s.fs, s.filter.data(), s.bias.data(), s.os, expected.data());
      std::vector<int8_t> data = s.in;
      std::vector<int8_t> channel(static_cast<size_t>(s.is.h * s.is.w));
      ASSERT_EQ(vmcu_depthwise_conv2d_inplace_s8(&s.p, s.is, data.data(), s.fs, s.filter.data(), s.bias.data(), s.os,
                                                 channel.data()),
                0);
      data.resize(expected.size());
      EXPECT_EQ(data, expected) << name(one);
      ++checked;
    }
  }
  EXPECT_GT(checked, 20);
  // A depth multiplier above 1 cannot run in place: refused, nothing written.
  ConvSetup s = make_conv({6, 6, 3, 3, 3, 1, 1, true, 2}, true, rng);
  std::vector<int8_t> data = s.in, channel(36);
  EXPECT_EQ(
      vmcu_depthwise_conv2d_inplace_s8(&s.p, s.is, data.data(), s.fs, s.filter.data(), nullptr, s.os, channel.data()),
      -1);
  EXPECT_EQ(data, s.in);
}

// Float QUANTIZE inside a ring (the tensor wrapping) and the unaligned float kernels.
TEST(DeployKernels, FloatKernelsAreBitExactWithTheReference) {
  std::mt19937 rng(22);
  std::uniform_real_distribution<float> u(-300.0f, 300.0f);
  for (int count : {1, 7, 64, 301}) {
    std::vector<float> x(static_cast<size_t>(count));
    for (float& v : x) v = u(rng);
    x[0] = 2.5f;  // a tie: rounds away from zero
    const float scale = 0.73f;
    const int32_t zp = -3;
    std::vector<int8_t> expected(x.size());
    vmcu_quantize_f32_s8(count, x.data(), scale, zp, expected.data());
    std::vector<int8_t> raw(4 * x.size());
    std::memcpy(raw.data(), x.data(), raw.size());
    RingFixture f(raw, x.size(), rng);
    vmcu_seg_quantize_f32_s8(&f.ring, f.in_base, count, scale, zp, f.out_base);
    EXPECT_EQ(f.output(x.size()), expected) << count;
    // The float side one byte off 4-byte alignment.
    std::vector<uint8_t> odd(4 * x.size() + 1);
    std::memcpy(odd.data() + 1, x.data(), 4 * x.size());
    std::vector<int8_t> q(x.size());
    vmcu_quantize_f32_bytes_s8(count, odd.data() + 1, scale, zp, q.data());
    EXPECT_EQ(q, expected);
    std::vector<float> back(x.size());
    vmcu_dequantize_s8_f32(count, expected.data(), scale, zp, back.data());
    vmcu_dequantize_s8_f32_bytes(count, expected.data(), scale, zp, odd.data() + 1);
    EXPECT_EQ(std::memcmp(odd.data() + 1, back.data(), 4 * back.size()), 0);
  }
}

TEST(RingKernels, PointwiseIsBitExactWithTheReference) {
  std::mt19937 rng(13);
  for (auto [h, w, cin, cout] :
       std::vector<std::array<int, 4>>{{5, 7, 3, 8}, {4, 4, 16, 16}, {3, 9, 24, 5}, {1, 1, 1, 1}, {6, 2, 7, 7}}) {
    for (int trial = 0; trial < 4; ++trial) {
      ConvSetup s = make_conv({h, w, cin, cout, 1, 1, 1, false, 1}, false, rng);
      const size_t out_bytes = static_cast<size_t>(vmcu_shape4_size(s.os));
      std::vector<int8_t> expected(out_bytes);
      vmcu_conv2d_s8(&s.p, s.is, s.in.data(), s.fs, s.filter.data(), s.bias.data(), s.os, expected.data());
      RingFixture f(s.in, out_bytes, rng);
      std::vector<int8_t> stage(static_cast<size_t>(vmcu_seg_pointwise_stage_bytes(cin, cout)));
      vmcu_seg_pointwise_conv_s8(&s.p, &f.ring, f.in_base, s.is, s.filter.data(), s.bias.data(), f.out_base, s.os,
                                 stage.data());
      EXPECT_EQ(f.output(out_bytes), expected) << h << "x" << w << "x" << cin << "->" << cout;
    }
  }
}

TEST(RingKernels, FullyConnectedIsBitExactWithTheReference) {
  std::mt19937 rng(14);
  for (auto [batches, in_depth, out_depth] :
       std::vector<std::array<int, 3>>{{1, 640, 128}, {1, 8, 128}, {3, 5, 7}, {2, 17, 1}, {4, 1, 9}}) {
    for (int trial = 0; trial < 4; ++trial) {
      vmcu_fc_params p{std::uniform_int_distribution<int>(-127, 128)(rng),
                       std::uniform_int_distribution<int>(-3, 3)(rng),
                       std::uniform_int_distribution<int>(-128, 127)(rng),
                       std::uniform_int_distribution<int>(1 << 30, INT32_MAX)(rng),
                       -9,
                       -128,
                       127};
      auto in = random_s8(static_cast<size_t>(batches * in_depth), rng);
      auto weights = random_s8(static_cast<size_t>(in_depth * out_depth), rng, -127, 127);
      auto bias = random_i32(out_depth, rng, -3000, 3000);
      const size_t out_bytes = static_cast<size_t>(batches * out_depth);
      std::vector<int8_t> expected(out_bytes);
      vmcu_fully_connected_s8(&p, batches, in_depth, out_depth, in.data(), weights.data(), bias.data(),
                              expected.data());
      RingFixture f(in, out_bytes, rng);
      vmcu_seg_fully_connected_s8(&p, &f.ring, f.in_base, batches, in_depth, out_depth, weights.data(), bias.data(),
                                  f.out_base);
      EXPECT_EQ(f.output(out_bytes), expected) << batches << "x" << in_depth << "->" << out_depth;
    }
  }
}

TEST(RingKernels, AddIsBitExactWithTheReference) {
  std::mt19937 rng(15);
  for (int size : {1, 7, 64, 1000, 6400}) {
    for (int trial = 0; trial < 4; ++trial) {
      const vmcu_add_params p = vm::add_params(0.05f + 0.01f * trial, 3, 0.07f, -5, 0.09f, 1, vm::Activation::kRelu);
      auto a = random_s8(static_cast<size_t>(size), rng);
      auto b = random_s8(static_cast<size_t>(size), rng);
      std::vector<int8_t> expected(a.size());
      vmcu_add_s8(&p, size, a.data(), b.data(), expected.data());
      RingFixture f(a, a.size(), rng, &b);
      vmcu_seg_add_s8(&p, &f.ring, f.in_base, f.in2_base, size, f.out_base);
      EXPECT_EQ(f.output(a.size()), expected) << size;
      // In place over either input (distance 0).
      RingFixture g(a, 0, rng, &b);
      vmcu_seg_add_s8(&p, &g.ring, g.in_base, g.in2_base, size, g.in_base);
      std::vector<int8_t> in_place(a.size());
      vmcu_ring_read(&g.ring, g.in_base, 0, size, in_place.data());
      EXPECT_EQ(in_place, expected) << size << " in place";
    }
  }
}

TEST(RingKernels, PoolingIsBitExactWithTheReference) {
  std::mt19937 rng(16);
  struct PoolCase {
    int h, w, c, k, stride;
    bool same;
  };
  for (const PoolCase& c : std::vector<PoolCase>{{8, 8, 4, 2, 2, false},
                                                 {7, 5, 3, 3, 2, true},
                                                 {25, 5, 64, 0, 1, false},
                                                 {3, 3, 9, 5, 1, true},
                                                 {6, 6, 1, 3, 3, false}}) {
    const int kh = c.k == 0 ? c.h : c.k, kw = c.k == 0 ? c.w : c.k;  // 0: global window
    const auto ph = vm::compute_padding(c.same ? vm::Padding::kSame : vm::Padding::kValid, c.h, kh, c.stride, 1);
    const auto pw = vm::compute_padding(c.same ? vm::Padding::kSame : vm::Padding::kValid, c.w, kw, c.stride, 1);
    const vmcu_shape4 is{1, c.h, c.w, c.c}, os{1, ph.out, pw.out, c.c};
    vmcu_pool_params p{c.stride, c.stride, kh, kw, ph.pad_before, pw.pad_before, -100, 120};
    auto in = random_s8(static_cast<size_t>(vmcu_shape4_size(is)), rng);
    const size_t out_bytes = static_cast<size_t>(vmcu_shape4_size(os));
    std::vector<int32_t> workspace(static_cast<size_t>(vmcu_seg_pool_workspace_bytes(c.c)) / 4 + 1);
    for (int average = 0; average < 2; ++average) {
      std::vector<int8_t> expected(out_bytes);
      if (average)
        ASSERT_EQ(vmcu_average_pool_s8(&p, is, in.data(), os, expected.data()), 0);
      else
        vmcu_max_pool_s8(&p, is, in.data(), os, expected.data());
      RingFixture f(in, out_bytes, rng);
      if (average)
        ASSERT_EQ(vmcu_seg_average_pool_s8(&p, &f.ring, f.in_base, is, f.out_base, os, workspace.data()), 0);
      else
        ASSERT_EQ(vmcu_seg_max_pool_s8(&p, &f.ring, f.in_base, is, f.out_base, os, workspace.data()), 0);
      EXPECT_EQ(f.output(out_bytes), expected) << c.h << "x" << c.w << " k" << kh << " average " << average;
    }
  }
}

// ---- the offset solver: trace a kernel, sweep the trace, compare with the closed forms ----

void record(void* ctx, int32_t operand, int32_t offset, int32_t length, int32_t is_write) {
  static_cast<std::vector<vm::RingAccess>*>(ctx)->push_back({operand, offset, length, is_write != 0});
}

int64_t fc_distance(int m, int k, int n) {
  std::mt19937 rng(1);
  std::vector<vm::RingAccess> trace;
  std::vector<int8_t> pool(static_cast<size_t>(m * k + m * n));
  vmcu_ring ring{pool.data(), static_cast<int32_t>(pool.size()), record, &trace};
  vmcu_fc_params p{0, 0, 0, 1 << 30, 0, -128, 127};
  auto w = random_s8(static_cast<size_t>(k * n), rng);
  vmcu_seg_fully_connected_s8(&p, &ring, 0, m, k, n, w.data(), nullptr, m * k);
  return vm::solve_distances(trace).input[0];
}

// vmcu_ring_relocate against its plain twin (read the tensor out, write it back at the new
// base): every source/destination pair on small rings, including overlapping and wrapping moves,
// a zero shift and a tensor as large as the ring.
TEST(RingKernels, RelocateMovesTheTensorToItsNewBase) {
  std::mt19937 rng(41);
  for (int32_t cap : {1, 2, 7, 16, 33}) {
    for (int32_t length : {0, 1, cap / 2, cap - 1, cap}) {
      if (length < 0 || length > cap) continue;
      for (int32_t from = 0; from < cap; ++from) {
        for (int32_t to = 0; to < cap; ++to) {
          std::vector<int8_t> pool = random_s8(static_cast<size_t>(cap), rng);
          vmcu_ring ring{pool.data(), cap, nullptr, nullptr};
          std::vector<int8_t> tensor(static_cast<size_t>(length));
          vmcu_ring_read(&ring, from, 0, length, tensor.data());
          vmcu_ring_relocate(&ring, from, to, length);
          std::vector<int8_t> moved(static_cast<size_t>(length));
          vmcu_ring_read(&ring, to, 0, length, moved.data());
          ASSERT_EQ(moved, tensor) << "cap " << cap << " length " << length << " from " << from << " to " << to;
        }
      }
    }
  }
}

TEST(RingSolver, FullyConnectedMatchesTheClosedForm) {
  // The paper's example: M=2, K=3, N=2 -> 7 segments instead of 10.
  const int64_t d = fc_distance(2, 3, 2);
  EXPECT_EQ(std::max<int64_t>(2 * 3 + d, 2 * 2), 7);
  for (int m : {1, 2, 3, 5})
    for (int k : {1, 2, 3, 8, 13})
      for (int n : {1, 2, 5, 8, 11}) {
        const int64_t footprint = std::max<int64_t>(int64_t{m} * k + fc_distance(m, k, n), int64_t{m} * n);
        EXPECT_EQ(footprint, std::max(m * n, m * k) + std::min(n, k) - 1) << "M=" << m << " K=" << k << " N=" << n;
      }
}

int64_t conv_distance(const ConvCase& c, bool depthwise) {
  std::mt19937 rng(2);
  ConvSetup s = make_conv(c, depthwise, rng);
  const size_t in_bytes = s.in.size(), out_bytes = static_cast<size_t>(vmcu_shape4_size(s.os));
  std::vector<vm::RingAccess> trace;
  std::vector<int8_t> pool(in_bytes + out_bytes);
  vmcu_ring ring{pool.data(), static_cast<int32_t>(pool.size()), record, &trace};
  std::vector<int8_t> stage(static_cast<size_t>(std::max(s.os.c, s.is.c)));
  const bool pointwise = !depthwise && c.k == 1 && c.stride == 1;
  if (depthwise)
    vmcu_seg_depthwise_conv2d_s8(&s.p, &ring, 0, s.is, s.fs, s.filter.data(), nullptr, static_cast<int32_t>(in_bytes),
                                 s.os, stage.data());
  else if (pointwise)
    vmcu_seg_pointwise_conv_s8(&s.p, &ring, 0, s.is, s.filter.data(), nullptr, static_cast<int32_t>(in_bytes), s.os,
                               stage.data());
  else
    vmcu_seg_conv2d_s8(&s.p, &ring, 0, s.is, s.fs, s.filter.data(), nullptr, static_cast<int32_t>(in_bytes), s.os,
                       stage.data());
  return vm::solve_distances(trace).input[0];
}

TEST(RingSolver, PointwiseNeedsExactlyTheLargerTensor) {
  // The nine pointwise shapes of the paper (H/W, C_in, C_out).
  for (auto [hw, cin, cout] : std::vector<std::array<int, 3>>{{80, 16, 16},
                                                              {56, 32, 32},
                                                              {28, 64, 64},
                                                              {80, 16, 8},
                                                              {40, 32, 16},
                                                              {20, 48, 24},
                                                              {24, 16, 32},
                                                              {12, 32, 64},
                                                              {6, 64, 128}}) {
    const int64_t in = int64_t{hw} * hw * cin, out = int64_t{hw} * hw * cout;
    const int64_t d = conv_distance({hw, hw, cin, cout, 1, 1, 1, false, 1}, false);
    EXPECT_EQ(std::max(in + d, out), std::max(in, out)) << hw << "," << cin << "," << cout;
  }
}

TEST(RingSolver, SamePadded3x3ConvNeedsTheHaloBehindThePixel) {
  for (auto [h, w, c] : std::vector<std::array<int, 3>>{{5, 5, 3}, {8, 6, 4}, {10, 10, 16}, {7, 13, 5}}) {
    EXPECT_EQ(conv_distance({h, w, c, c, 3, 1, 1, true, 1}, false), int64_t{w + 1} * c) << h << "x" << w << "x" << c;
    EXPECT_EQ(conv_distance({h, w, c, c, 3, 1, 1, true, 1}, true), int64_t{w + 1} * c) << "depthwise " << h << "x" << w;
  }
}

TEST(RingSolver, ValidAndStride2ConvsNeedNoExtraRoom) {
  for (auto [h, w, c] : std::vector<std::array<int, 3>>{{6, 6, 3}, {9, 8, 4}, {10, 10, 16}}) {
    EXPECT_EQ(conv_distance({h, w, c, c, 3, 1, 1, false, 1}, false), 0) << "valid " << h << "x" << w;
    EXPECT_EQ(conv_distance({h, w, c, c, 3, 2, 1, true, 1}, false), 0) << "stride 2 " << h << "x" << w;
  }
}

// Eq. (1) by brute force: the smallest b_In - b_Out at which no step reads an input byte that
// an earlier step's output write has covered, found by running the kernel at every distance
// with the input at `d` and the output at 0 and watching every access.
struct Clobber {
  int32_t in_base = 0;
  std::vector<bool> written;
  bool clobbered = false;
};

void watch(void* ctx, int32_t operand, int32_t offset, int32_t length, int32_t is_write) {
  Clobber& c = *static_cast<Clobber*>(ctx);
  for (int32_t j = 0; j < length; ++j) {
    const size_t pos = static_cast<size_t>((operand == VMCU_SEG_OUT ? 0 : c.in_base) + offset + j);
    if (is_write)
      c.written[pos] = true;
    else if (operand == VMCU_SEG_IN0 && c.written[pos])
      c.clobbered = true;
  }
}

// `run(ring, in_base, out_base)` runs the layer once.
template <typename Run>
int64_t brute_force_distance(const std::vector<int8_t>& in, size_t out_bytes, Run run) {
  for (size_t d = 0; d <= out_bytes; ++d) {
    std::vector<int8_t> pool(std::max(out_bytes, d + in.size()), 0);
    std::copy(in.begin(), in.end(), pool.begin() + static_cast<std::ptrdiff_t>(d));
    Clobber c{static_cast<int32_t>(d), std::vector<bool>(pool.size(), false), false};
    vmcu_ring ring{pool.data(), static_cast<int32_t>(pool.size()), watch, &c};
    run(ring, static_cast<int32_t>(d), 0);
    if (!c.clobbered) return static_cast<int64_t>(d);
  }
  return static_cast<int64_t>(out_bytes);
}

TEST(RingSolver, NeverAboveTheBruteForceDistanceOnRandomSmallLayers) {
  std::mt19937 rng(77);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int n = 0; n < 60; ++n) {
    const int kind = n % 4;  // conv, depthwise, pointwise, fully connected
    std::vector<vm::RingAccess> trace;
    int64_t solved = 0, brute = 0;
    std::string what;
    if (kind == 3) {
      const int m = pick(1, 3), k = pick(1, 12), units = pick(1, 12);
      std::vector<int8_t> in = random_s8(static_cast<size_t>(m * k), rng);
      auto w = random_s8(static_cast<size_t>(k * units), rng);
      vmcu_fc_params p{0, 0, 0, 1 << 30, 0, -128, 127};
      auto run = [&](vmcu_ring& ring, int32_t in_base, int32_t out_base) {
        vmcu_seg_fully_connected_s8(&p, &ring, in_base, m, k, units, w.data(), nullptr, out_base);
      };
      solved = fc_distance(m, k, units);
      brute = brute_force_distance(in, static_cast<size_t>(m * units), run);
      what = "fc " + std::to_string(m) + "x" + std::to_string(k) + "->" + std::to_string(units);
    } else {
      const int h = pick(1, 7), w = pick(1, 7), kernel = kind == 2 ? 1 : pick(0, 2) * 2 + 1;
      const bool same = kind == 2 ? false : (kernel > h || kernel > w || pick(0, 1) == 1);
      const ConvCase c{
          h, w, pick(1, 6), pick(1, 6), kernel, kind == 2 ? 1 : pick(1, 2), 1, same, kind == 1 ? pick(1, 2) : 1};
      const bool depthwise = kind == 1;
      const bool pointwise = !depthwise && c.k == 1 && c.stride == 1;  // as conv_distance picks the kernel
      solved = conv_distance(c, depthwise);
      std::mt19937 setup_rng(2);
      ConvSetup s = make_conv(c, depthwise, setup_rng);
      std::vector<int8_t> stage(static_cast<size_t>(std::max(s.os.c, s.is.c)));
      auto run = [&](vmcu_ring& ring, int32_t in_base, int32_t out_base) {
        if (depthwise)
          vmcu_seg_depthwise_conv2d_s8(&s.p, &ring, in_base, s.is, s.fs, s.filter.data(), nullptr, out_base, s.os,
                                       stage.data());
        else if (pointwise)
          vmcu_seg_pointwise_conv_s8(&s.p, &ring, in_base, s.is, s.filter.data(), nullptr, out_base, s.os,
                                     stage.data());
        else
          vmcu_seg_conv2d_s8(&s.p, &ring, in_base, s.is, s.fs, s.filter.data(), nullptr, out_base, s.os, stage.data());
      };
      brute = brute_force_distance(s.in, static_cast<size_t>(vmcu_shape4_size(s.os)), run);
      what = (depthwise ? "depthwise " : pointwise ? "pointwise " : "conv ") + name(c);
    }
    EXPECT_LE(solved, brute) << what;
    EXPECT_EQ(solved, brute) << what << " (the sweep is exact for the kernel's loop order)";
  }
}

TEST(RingSolver, SweepSeesOnlyLaterReads) {
  // Write [0,4) then read input from 2: distance 2. A read before the write does not count.
  const std::vector<vm::RingAccess> trace = {{1, 0, 4, false}, {0, 0, 4, true}, {1, 2, 4, false}, {2, 10, 1, false}};
  const auto d = vm::solve_distances(trace);
  EXPECT_EQ(d.input[0], 2);
  EXPECT_EQ(d.input[1], 0);  // input 1 read at 10 > write end 4: clamped at 0
}

// ---- fused blocks against the reference kernels run one after the other ----

struct StageParams {
  vmcu_conv_params p{};
  std::vector<int32_t> mult, shift, bias;
  std::vector<int8_t> filter;
};

StageParams random_stage(int out_c, size_t filter_size, std::mt19937& rng, int stride = 1, int pad = 0,
                         int depth_multiplier = 1) {
  StageParams s;
  s.mult = random_i32(out_c, rng, 1 << 30, INT32_MAX);
  s.shift = random_i32(out_c, rng, -9, -5);
  s.bias = random_i32(out_c, rng, -3000, 3000);
  s.filter = random_s8(filter_size, rng, -127, 127);
  s.p.stride_h = s.p.stride_w = stride;
  s.p.dilation_h = s.p.dilation_w = 1;
  s.p.pad_h = s.p.pad_w = pad;
  s.p.depth_multiplier = depth_multiplier;
  s.p.input_offset = std::uniform_int_distribution<int>(-127, 128)(rng);
  s.p.output_offset = std::uniform_int_distribution<int>(-128, 127)(rng);
  s.p.act_min = -128;
  s.p.act_max = std::uniform_int_distribution<int>(40, 127)(rng);
  s.p.output_multiplier = s.mult.data();
  s.p.output_shift = s.shift.data();
  return s;
}

// The depthwise (k x k) -> projection tail of a fused block from two stages' parameters.
vmcu_dw_project_params dw_project(const StageParams& d, int k, const StageParams& pr) {
  vmcu_dw_project_params t{};
  t.depthwise = d.p;
  t.kh = t.kw = k;
  t.dw_filter = d.filter.data();
  t.dw_bias = d.bias.data();
  t.project = pr.p;
  t.project_filter = pr.filter.data();
  t.project_bias = pr.bias.data();
  return t;
}

struct BottleneckCase {
  int h, w, cin, cmid, cout, k, stride;
  bool same, expand, residual;
};

// Workspace accesses of a fused kernel, checked as the plan verifier checks them: inside the
// workspace the kernel declares, and every read finds what the kernel stored there in this call
// (the expanded byte it names, or a stage byte).
struct WorkspaceChecker {
  size_t bytes = 0;
  std::vector<int64_t> owner;  // -1 unwritten, -2 stage, else the cached intermediate byte
  int32_t cached = -1;
  size_t cached_reads = 0;
  std::string failure;

  static void access(void* ctx, int32_t operand, int32_t offset, int32_t length, int32_t is_write) {
    auto& c = *static_cast<WorkspaceChecker*>(ctx);
    if (operand == VMCU_SEG_CACHED) {
      c.cached = offset;
      return;
    }
    if (operand != VMCU_SEG_WORKSPACE || !c.failure.empty()) return;
    const int32_t tag = c.cached;
    c.cached = -1;
    if (offset < 0 || static_cast<size_t>(offset) + static_cast<size_t>(length) > c.bytes) {
      c.failure = "workspace access [" + std::to_string(offset) + ", +" + std::to_string(length) + ") outside " +
                  std::to_string(c.bytes) + " bytes";
      return;
    }
    for (int32_t j = 0; j < length; ++j) {
      const int64_t want = tag >= 0 ? int64_t{tag} + j : -2;
      int64_t& o = c.owner[static_cast<size_t>(offset + j)];
      if (is_write) {
        o = want;
      } else if (o != want) {
        c.failure = "workspace byte " + std::to_string(offset + j) + " read as " + std::to_string(want) + " holds " +
                    std::to_string(o);
        return;
      } else if (tag >= 0) {
        ++c.cached_reads;
      }
    }
  }
};

// Both forms of the fused bottleneck (the expansion recomputed per tap, or cached) against the
// reference kernels layer by layer, over odd and even sizes, strides 1 and 2, SAME and VALID
// padding, windows larger than the image, a one-row image and wrapping ring positions; the
// workspace accesses stay inside the declared workspace and every cached read finds its byte.
TEST(RingFused, BottleneckIsBitExactWithTheLayerByLayerReference) {
  std::mt19937 rng(21);
  for (const BottleneckCase& c : std::vector<BottleneckCase>{{10, 10, 8, 24, 8, 3, 1, true, true, true},
                                                             {9, 7, 8, 24, 8, 5, 1, true, true, true},
                                                             {11, 11, 8, 20, 12, 3, 2, true, true, false},
                                                             {13, 9, 6, 18, 5, 7, 2, false, true, false},
                                                             {6, 6, 16, 16, 8, 3, 1, true, false, false},
                                                             {3, 3, 12, 36, 12, 7, 1, true, true, true},
                                                             {12, 12, 8, 16, 32, 3, 2, true, true, false},
                                                             {8, 10, 8, 16, 32, 3, 2, false, true, false},
                                                             {7, 9, 5, 13, 7, 3, 2, true, true, false},
                                                             {7, 6, 3, 10, 6, 3, 1, false, true, false},
                                                             {1, 9, 8, 16, 8, 3, 1, true, true, true},
                                                             {9, 1, 4, 12, 4, 3, 2, true, true, false},
                                                             {5, 8, 8, 24, 8, 5, 2, true, true, false}}) {
    for (const int row_cache : {0, 1}) {
      if (row_cache && !c.expand) continue;
      const int cmid = c.expand ? c.cmid : c.cin;
      const auto ph = vm::compute_padding(c.same ? vm::Padding::kSame : vm::Padding::kValid, c.h, c.k, c.stride, 1);
      const auto pw = vm::compute_padding(c.same ? vm::Padding::kSame : vm::Padding::kValid, c.w, c.k, c.stride, 1);
      const vmcu_shape4 is{1, c.h, c.w, c.cin}, ms{1, c.h, c.w, cmid}, ds{1, ph.out, pw.out, cmid},
          os{1, ph.out, pw.out, c.cout};
      StageParams e = random_stage(cmid, static_cast<size_t>(cmid * c.cin), rng);
      StageParams d = random_stage(cmid, static_cast<size_t>(c.k * c.k * cmid), rng, c.stride);
      d.p.pad_h = ph.pad_before;
      d.p.pad_w = pw.pad_before;
      StageParams pr = random_stage(c.cout, static_cast<size_t>(c.cout * cmid), rng);
      if (c.expand) d.p.input_offset = -e.p.output_offset;  // the depthwise reads the expand output
      pr.p.input_offset = -d.p.output_offset;
      const vmcu_add_params add =
          vm::add_params(0.05f, -e.p.input_offset, 0.06f, pr.p.output_offset, 0.08f, 2, vm::Activation::kNone);
      const auto in = random_s8(static_cast<size_t>(vmcu_shape4_size(is)), rng);
      // Reference: layer by layer.
      std::vector<int8_t> mid(static_cast<size_t>(vmcu_shape4_size(ms))), dw(static_cast<size_t>(vmcu_shape4_size(ds))),
          out(static_cast<size_t>(vmcu_shape4_size(os))), expected(out.size());
      if (c.expand)
        vmcu_conv2d_s8(&e.p, is, in.data(), {cmid, 1, 1, c.cin}, e.filter.data(), e.bias.data(), ms, mid.data());
      else
        mid.assign(in.begin(), in.end());
      vmcu_depthwise_conv2d_s8(&d.p, ms, mid.data(), {1, c.k, c.k, cmid}, d.filter.data(), d.bias.data(), ds,
                               dw.data());
      vmcu_conv2d_s8(&pr.p, ds, dw.data(), {c.cout, 1, 1, cmid}, pr.filter.data(), pr.bias.data(), os, out.data());
      if (c.residual)
        vmcu_add_s8(&add, static_cast<int32_t>(out.size()), in.data(), out.data(), expected.data());
      else
        expected = out;
      vmcu_bottleneck_params bp{};
      bp.has_expand = c.expand;
      bp.row_cache = row_cache;
      bp.expand = e.p;
      bp.expand_filter = e.filter.data();
      bp.expand_bias = e.bias.data();
      bp.tail = dw_project(d, c.k, pr);
      bp.has_residual = c.residual;
      bp.residual_is_input1 = 1;
      bp.add = add;
      const std::string what = std::to_string(c.h) + "x" + std::to_string(c.w) + " k" + std::to_string(c.k) + " s" +
                               std::to_string(c.stride) + (c.same ? " same" : " valid") +
                               (row_cache ? " cached" : " recomputed");
      RingFixture f(in, expected.size(), rng);
      const size_t ws_bytes = static_cast<size_t>(vmcu_seg_bottleneck_workspace_bytes(&bp, is, cmid, c.cout));
      if (row_cache) {
        // The cache: a window's first to last pixel in raster order, at most the whole image.
        const size_t pixels = std::min<size_t>(static_cast<size_t>((c.k - 1) * c.w + c.k), size_t(c.h) * c.w);
        EXPECT_EQ(ws_bytes, pixels * static_cast<size_t>(cmid) + static_cast<size_t>(cmid + c.cout)) << what;
      } else {
        EXPECT_EQ(ws_bytes, static_cast<size_t>(cmid + c.cout)) << what;
      }
      std::vector<int8_t> ws(ws_bytes);
      WorkspaceChecker check;
      check.bytes = ws_bytes;
      check.owner.assign(ws_bytes, -1);
      f.ring.trace = WorkspaceChecker::access;
      f.ring.trace_ctx = &check;
      ASSERT_EQ(vmcu_seg_bottleneck_s8(&bp, &f.ring, f.in_base, is, cmid, f.out_base, os, ws.data()), 0);
      EXPECT_EQ(f.output(expected.size()), expected) << what;
      EXPECT_EQ(check.failure, "") << what;
      if (row_cache) { EXPECT_GT(check.cached_reads, 0u) << what; }
    }
  }
}

// The cached form expands every pixel once: its trace reads each input pixel once (the
// recomputing form reads a pixel once per window covering it).
TEST(RingFused, CachedBottleneckReadsEachInputPixelOnce) {
  std::mt19937 rng(23);
  const int h = 12, w = 12, cin = 8, cmid = 16, cout = 32;
  const auto pad = vm::compute_padding(vm::Padding::kSame, h, 3, 2, 1);
  const vmcu_shape4 is{1, h, w, cin}, os{1, pad.out, pad.out, cout};
  StageParams e = random_stage(cmid, static_cast<size_t>(cmid * cin), rng);
  StageParams d = random_stage(cmid, static_cast<size_t>(9 * cmid), rng, 2);
  d.p.pad_h = d.p.pad_w = pad.pad_before;
  StageParams pr = random_stage(cout, static_cast<size_t>(cout * cmid), rng);
  vmcu_bottleneck_params bp{};
  bp.has_expand = 1;
  bp.expand = e.p;
  bp.expand_filter = e.filter.data();
  bp.expand_bias = e.bias.data();
  bp.tail = dw_project(d, 3, pr);
  const auto in = random_s8(static_cast<size_t>(vmcu_shape4_size(is)), rng);
  size_t reads[2] = {0, 0};
  for (const int row_cache : {0, 1}) {
    bp.row_cache = row_cache;
    RingFixture f(in, static_cast<size_t>(vmcu_shape4_size(os)), rng);
    f.ring.trace = [](void* ctx, int32_t operand, int32_t, int32_t length, int32_t is_write) {
      if (operand == VMCU_SEG_IN0 && !is_write) *static_cast<size_t*>(ctx) += static_cast<size_t>(length);
    };
    f.ring.trace_ctx = &reads[row_cache];
    std::vector<int8_t> ws(static_cast<size_t>(vmcu_seg_bottleneck_workspace_bytes(&bp, is, cmid, cout)));
    ASSERT_EQ(vmcu_seg_bottleneck_s8(&bp, &f.ring, f.in_base, is, cmid, f.out_base, os, ws.data()), 0);
  }
  EXPECT_EQ(reads[1], in.size());
  EXPECT_GT(reads[0], 2 * in.size());  // 3x3 windows at stride 2: 2.25 reads per pixel
}

struct ResidualCase {
  int h, w, cin, c1, k1, stride, k2;
  bool shortcut_conv;
};

TEST(RingFused, ResidualBlockIsBitExactWithTheLayerByLayerReference) {
  std::mt19937 rng(22);
  for (const ResidualCase& c : std::vector<ResidualCase>{{8, 8, 16, 16, 3, 1, 3, false},
                                                         {9, 7, 8, 8, 3, 1, 5, false},
                                                         {10, 10, 8, 16, 3, 2, 3, true},
                                                         {11, 9, 4, 12, 5, 2, 3, true},
                                                         {5, 5, 6, 6, 1, 1, 3, false}}) {
    const auto ph = vm::compute_padding(vm::Padding::kSame, c.h, c.k1, c.stride, 1);
    const auto pw = vm::compute_padding(vm::Padding::kSame, c.w, c.k1, c.stride, 1);
    const auto ph2 = vm::compute_padding(vm::Padding::kSame, ph.out, c.k2, 1, 1);
    const auto pw2 = vm::compute_padding(vm::Padding::kSame, pw.out, c.k2, 1, 1);
    const vmcu_shape4 is{1, c.h, c.w, c.cin}, ms{1, ph.out, pw.out, c.c1}, os{1, ph.out, pw.out, c.c1};
    const vmcu_shape4 f1{c.c1, c.k1, c.k1, c.cin}, f2{c.c1, c.k2, c.k2, c.c1};
    StageParams s1 = random_stage(c.c1, static_cast<size_t>(vmcu_shape4_size(f1)), rng, c.stride, 0);
    s1.p.pad_h = ph.pad_before;
    s1.p.pad_w = pw.pad_before;
    StageParams s2 = random_stage(c.c1, static_cast<size_t>(vmcu_shape4_size(f2)), rng, 1, 0);
    s2.p.pad_h = ph2.pad_before;
    s2.p.pad_w = pw2.pad_before;
    s2.p.input_offset = -s1.p.output_offset;
    StageParams sc = random_stage(c.c1, static_cast<size_t>(c.c1 * c.cin), rng, c.stride, 0);
    sc.p.input_offset = s1.p.input_offset;
    const vmcu_add_params add = vm::add_params(0.07f, s2.p.output_offset, 0.05f, 3, 0.1f, -4, vm::Activation::kRelu);
    const auto in = random_s8(static_cast<size_t>(vmcu_shape4_size(is)), rng);
    std::vector<int8_t> mid(static_cast<size_t>(vmcu_shape4_size(ms))), z(static_cast<size_t>(vmcu_shape4_size(os))),
        shortcut(z.size()), expected(z.size());
    vmcu_conv2d_s8(&s1.p, is, in.data(), f1, s1.filter.data(), s1.bias.data(), ms, mid.data());
    vmcu_conv2d_s8(&s2.p, ms, mid.data(), f2, s2.filter.data(), s2.bias.data(), os, z.data());
    if (c.shortcut_conv)
      vmcu_conv2d_s8(&sc.p, is, in.data(), {c.c1, 1, 1, c.cin}, sc.filter.data(), sc.bias.data(), os, shortcut.data());
    else
      shortcut.assign(in.begin(), in.end());
    vmcu_add_s8(&add, static_cast<int32_t>(z.size()), z.data(), shortcut.data(), expected.data());
    vmcu_residual_block_params rp{};
    rp.conv1 = s1.p;
    rp.filter1_shape = f1;
    rp.filter1 = s1.filter.data();
    rp.bias1 = s1.bias.data();
    rp.mid_shape = ms;
    rp.conv2 = s2.p;
    rp.filter2_shape = f2;
    rp.filter2 = s2.filter.data();
    rp.bias2 = s2.bias.data();
    rp.has_shortcut_conv = c.shortcut_conv;
    rp.shortcut = sc.p;
    rp.shortcut_filter = sc.filter.data();
    rp.shortcut_bias = sc.bias.data();
    rp.shortcut_is_input1 = 0;
    rp.add = add;
    RingFixture f(in, expected.size(), rng);
    std::vector<int8_t> ws(static_cast<size_t>(vmcu_seg_residual_block_workspace_bytes(&rp, c.c1)));
    ASSERT_EQ(vmcu_seg_residual_block_s8(&rp, &f.ring, f.in_base, is, f.out_base, os, ws.data()), 0);
    EXPECT_EQ(f.output(expected.size()), expected)
        << c.h << "x" << c.w << " k" << c.k1 << "/" << c.k2 << " s" << c.stride;
  }
}

struct StemCase {
  int h, w, cin, c1, k1, stride1;
  bool same1;
  int kdw, stride_dw, dilation_dw;
  bool same_dw;
  int cout;
};

// The fused stem block (conv -> depthwise -> 1x1 project, the conv's output only as a row cache)
// against the three reference kernels run one after the other: odd sizes, SAME and VALID
// padding, stride 2 in either conv, a dilated depthwise, a 5x5 stem.
TEST(RingFused, StemBlockIsBitExactWithTheLayerByLayerReference) {
  std::mt19937 rng(23);
  for (const StemCase& c : std::vector<StemCase>{{17, 17, 3, 16, 3, 2, true, 3, 1, 1, true, 8},
                                                 {15, 11, 3, 8, 3, 2, false, 3, 1, 1, true, 5},
                                                 {13, 9, 4, 6, 5, 2, true, 3, 2, 1, true, 7},
                                                 {9, 12, 3, 5, 3, 1, true, 5, 1, 1, false, 4},
                                                 {14, 13, 2, 7, 3, 2, true, 3, 1, 2, true, 3},
                                                 {7, 5, 3, 4, 3, 2, true, 3, 2, 1, false, 9},
                                                 {2, 3, 3, 8, 3, 2, true, 3, 1, 1, true, 4}}) {
    const auto p1 = [&](int n) {
      return vm::compute_padding(c.same1 ? vm::Padding::kSame : vm::Padding::kValid, n, c.k1, c.stride1, 1);
    };
    const auto ph = p1(c.h), pw = p1(c.w);
    const auto p2 = [&](int n) {
      return vm::compute_padding(c.same_dw ? vm::Padding::kSame : vm::Padding::kValid, n, c.kdw, c.stride_dw,
                                 c.dilation_dw);
    };
    const auto dh = p2(ph.out), dwd = p2(pw.out);
    const vmcu_shape4 is{1, c.h, c.w, c.cin}, ms{1, ph.out, pw.out, c.c1}, ds{1, dh.out, dwd.out, c.c1},
        os{1, dh.out, dwd.out, c.cout};
    const vmcu_shape4 f1{c.c1, c.k1, c.k1, c.cin}, fdw{1, c.kdw, c.kdw, c.c1}, fpr{c.cout, 1, 1, c.c1};
    StageParams s1 = random_stage(c.c1, static_cast<size_t>(vmcu_shape4_size(f1)), rng, c.stride1);
    s1.p.pad_h = ph.pad_before;
    s1.p.pad_w = pw.pad_before;
    StageParams d = random_stage(c.c1, static_cast<size_t>(vmcu_shape4_size(fdw)), rng, c.stride_dw);
    d.p.dilation_h = d.p.dilation_w = c.dilation_dw;
    d.p.pad_h = dh.pad_before;
    d.p.pad_w = dwd.pad_before;
    d.p.input_offset = -s1.p.output_offset;
    StageParams pr = random_stage(c.cout, static_cast<size_t>(vmcu_shape4_size(fpr)), rng);
    pr.p.input_offset = -d.p.output_offset;
    const auto in = random_s8(static_cast<size_t>(vmcu_shape4_size(is)), rng);
    std::vector<int8_t> mid(static_cast<size_t>(vmcu_shape4_size(ms))), dw(static_cast<size_t>(vmcu_shape4_size(ds))),
        expected(static_cast<size_t>(vmcu_shape4_size(os)));
    vmcu_conv2d_s8(&s1.p, is, in.data(), f1, s1.filter.data(), s1.bias.data(), ms, mid.data());
    vmcu_depthwise_conv2d_s8(&d.p, ms, mid.data(), fdw, d.filter.data(), d.bias.data(), ds, dw.data());
    vmcu_conv2d_s8(&pr.p, ds, dw.data(), fpr, pr.filter.data(), pr.bias.data(), os, expected.data());
    vmcu_stem_block_params sp{};
    sp.conv = s1.p;
    sp.conv_filter_shape = f1;
    sp.conv_filter = s1.filter.data();
    sp.conv_bias = s1.bias.data();
    sp.mid_shape = ms;
    sp.tail = dw_project(d, c.kdw, pr);
    RingFixture f(in, expected.size(), rng);
    std::vector<int8_t> ws(static_cast<size_t>(vmcu_seg_stem_block_workspace_bytes(&sp, c.cout)));
    EXPECT_EQ(ws.size(), static_cast<size_t>(((c.kdw - 1) * c.dilation_dw + 1) * ms.w * c.c1 + c.c1 + c.cout));
    ASSERT_EQ(vmcu_seg_stem_block_s8(&sp, &f.ring, f.in_base, is, f.out_base, os, ws.data()), 0);
    EXPECT_EQ(f.output(expected.size()), expected)
        << c.h << "x" << c.w << " k" << c.k1 << "/" << c.kdw << " s" << c.stride1 << "/" << c.stride_dw;
  }
}

}  // namespace
