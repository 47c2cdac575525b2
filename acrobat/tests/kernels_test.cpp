// Batched kernels against their plain reference twins, with operands scattered in memory
// (read through pointer arrays), shared parameters, and values that stress exp/tanh.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "perfmem/acrobat/kernels.h"

namespace perfmem::acrobat {
namespace {

int64_t numel(const std::vector<int64_t>& d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

// Runs `sig` for n instances both ways and compares. Non-shared operands of each instance
// live in separate, shuffled places; shared ones are one buffer.
void check(KernelSig sig, int n, float scale = 1.0f, bool contiguous_out = true) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-scale, scale);
  size_t nargs = sig.arg_dims.size();
  std::vector<std::vector<std::vector<float>>> storage(nargs);
  std::vector<std::vector<const float*>> ptrs(nargs);
  std::vector<const float* const*> args(nargs);
  for (size_t i = 0; i < nargs; ++i) {
    int64_t m = std::max<int64_t>(1, numel(sig.arg_dims[i]));
    int copies = sig.shared_param[i] >= 0 ? 1 : n;
    for (int c = 0; c < copies; ++c) {
      std::vector<float> v(m);
      for (auto& x : v) x = dist(rng);
      storage[i].push_back(std::move(v));
    }
    for (int b = 0; b < n; ++b) ptrs[i].push_back(storage[i][sig.shared_param[i] >= 0 ? 0 : (b * 7) % n].data());
    args[i] = ptrs[i].data();
  }
  int64_t out_size = numel(sig.out_dims);
  std::vector<float> fast(out_size * n * 2), ref(out_size * n);
  std::vector<float*> fo(n), ro(n);
  for (int b = 0; b < n; ++b) {
    fo[b] = fast.data() + (contiguous_out ? b : 2 * (n - 1 - b)) * out_size;
    ro[b] = ref.data() + b * out_size;
  }
  kernels::Scratch scratch;
  kernels::run_batched(sig, n, args.data(), fo.data(), scratch);
  kernels::run_reference(sig, n, args.data(), ro.data());
  for (int b = 0; b < n; ++b)
    for (int64_t i = 0; i < out_size; ++i)
      ASSERT_NEAR(fo[b][i], ro[b][i], 2e-6f * (1 + std::fabs(ro[b][i])) * std::sqrt(float(out_size + 16)))
          << op_name(sig.op) << " instance " << b << " element " << i;
}

KernelSig sig(OpKind op, std::vector<std::vector<int64_t>> args, std::vector<int> shared,
              std::vector<int64_t> out, std::vector<int64_t> ints = {}) {
  KernelSig s;
  s.op = op;
  s.arg_dims = std::move(args);
  s.shared_param = std::move(shared);
  s.out_dims = std::move(out);
  s.ints = std::move(ints);
  return s;
}

TEST(AcrobatKernels, MatmulSharedWeightIsOneGemmAndMatchesReference) {
  for (int n : {1, 3, 17}) {
    check(sig(OpKind::kMatMul, {{24, 16}, {16}}, {0, -1}, {24}), n);
    check(sig(OpKind::kMatMul, {{24, 16}, {16}}, {0, -1}, {24}), n, 1.0f, false);
    check(sig(OpKind::kMatMul, {{8, 12}, {12, 5}}, {0, -1}, {8, 5}), n);
    check(sig(OpKind::kMatMul, {{8, 12}, {12}}, {-1, -1}, {8}), n);      // per-instance matrices
    check(sig(OpKind::kMatMul, {{8, 12}, {12, 3}}, {-1, -1}, {8, 3}), n);
    check(sig(OpKind::kDense, {{24, 16}, {16}, {24}}, {0, -1, 1}, {24}), n);
  }
}

TEST(AcrobatKernels, ElementwiseAndActivationsMatchReference) {
  for (int n : {1, 5, 33}) {
    for (OpKind op : {OpKind::kAdd, OpKind::kSub, OpKind::kMul}) {
      check(sig(op, {{37}, {37}}, {-1, -1}, {37}), n);
      check(sig(op, {{37}, {37}}, {-1, 3}, {37}), n);  // second operand a shared parameter
    }
    for (OpKind op : {OpKind::kSigmoid, OpKind::kTanh, OpKind::kRelu}) {
      check(sig(op, {{53}}, {-1}, {53}), n, 1.0f);
      check(sig(op, {{53}}, {-1}, {53}), n, 40.0f);  // saturation, exp range clamping
    }
    check(sig(OpKind::kConcat, {{3}, {5}, {2}}, {-1, -1, -1}, {10}), n);
    check(sig(OpKind::kConcat, {{2, 4}, {3, 4}}, {-1, -1}, {5, 4}), n);
    check(sig(OpKind::kSlice, {{10}}, {-1}, {4}, {3, 4}), n);
    check(sig(OpKind::kSlice, {{5, 3}}, {-1}, {2, 3}, {1, 2}), n);
    check(sig(OpKind::kSum, {{19}}, {-1}, {1}), n);
    check(sig(OpKind::kSoftmax, {{19}}, {-1}, {19}), n, 10.0f);
    check(sig(OpKind::kArgmax, {{19}}, {-1}, {1}), n);
  }
}

TEST(AcrobatKernels, FastActivationsAreAccurateOverTheWholeRange) {
  std::vector<float> x, y;
  for (float v = -100.0f; v <= 100.0f; v += 0.01f) x.push_back(v);
  y = x;
  kernels::tanh_inplace(y.data(), static_cast<int64_t>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], std::tanh(x[i]), 3e-7f) << x[i];
  y = x;
  kernels::sigmoid_inplace(y.data(), static_cast<int64_t>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], 1.0 / (1.0 + std::exp(-double(x[i]))), 3e-7) << x[i];
}

}  // namespace
}  // namespace perfmem::acrobat
