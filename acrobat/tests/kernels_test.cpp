// Batched kernels against their plain reference twins, with operands scattered in memory
// (read through pointer arrays), shared parameters, and values that stress exp/tanh.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <future>
#include <limits>
#include <random>
#include <thread>

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
void check(KernelSig sig, int n, float scale = 1.0f, bool contiguous_out = true,
           int packed_max_rows = kernels::kDefaultPackedMaxRows, GemmIsa packed_isa = best_gemm_isa()) {
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
  scratch.packed_max_rows = packed_max_rows;
  scratch.packed_isa = packed_isa;
  kernels::run_batched(sig, n, args.data(), fo.data(), scratch);
  kernels::run_reference(sig, n, args.data(), ro.data());
  for (int b = 0; b < n; ++b)
    for (int64_t i = 0; i < out_size; ++i)
      ASSERT_NEAR(fo[b][i], ro[b][i], 2e-6f * (1 + std::fabs(ro[b][i])) * std::sqrt(float(out_size + 16)))
          << op_name(sig.op) << " instance " << b << " element " << i;
}

KernelSig sig(OpKind op, std::vector<std::vector<int64_t>> args, std::vector<int> shared, std::vector<int64_t> out,
              std::vector<int64_t> ints = {}) {
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
    check(sig(OpKind::kMatMul, {{8, 12}, {12, 2}}, {0, -1}, {8, 2}), n, 1.0f, false);
    check(sig(OpKind::kMatMul, {{40, 33}, {33, 70}}, {0, -1}, {40, 70}), n, 1.0f, true, 0);
    check(sig(OpKind::kMatMul, {{8, 12}, {12}}, {-1, -1}, {8}), n);  // per-instance matrices
    check(sig(OpKind::kMatMul, {{8, 12}, {12, 3}}, {-1, -1}, {8, 3}), n);
    check(sig(OpKind::kDense, {{24, 16}, {16}, {24}}, {0, -1, 1}, {24}), n);
  }
}

// Stacked products, matmul(W, X1, ..., Xm) = W [X1; ...; Xm] (compile_program's fold of a
// concat into the product): a shared W (the matrix-operand kernel, or OpenBLAS with
// packed_max_rows = 0), a per-instance W, a shared part, parts of one row, and one instance,
// all against the reference.
TEST(AcrobatKernels, StackedProductMatchesReference) {
  for (int n : {1, 3, 17}) {
    check(sig(OpKind::kMatMul, {{24, 40}, {16, 20}, {24, 20}}, {0, -1, -1}, {24, 20}), n);
    check(sig(OpKind::kMatMul, {{24, 40}, {16, 20}, {24, 20}}, {0, -1, -1}, {24, 20}), n, 1.0f, false);
    check(sig(OpKind::kMatMul, {{8, 12}, {5, 3}, {7, 3}}, {0, -1, -1}, {8, 3}), n);
    check(sig(OpKind::kMatMul, {{9, 33}, {1, 16}, {31, 16}, {1, 16}}, {0, -1, -1, -1}, {9, 16}), n);
    check(sig(OpKind::kMatMul, {{8, 12}, {5, 17}, {7, 17}}, {-1, -1, -1}, {8, 17}), n);
    check(sig(OpKind::kMatMul, {{8, 12}, {5, 17}, {7, 17}}, {0, 1, -1}, {8, 17}), n);
    // MV-RNN's W_M [A; B]: its own kernel, and OpenBLAS (packed_max_rows = 0).
    check(sig(OpKind::kMatMul, {{64, 128}, {64, 64}, {64, 64}}, {0, -1, -1}, {64, 64}), n, 1.0f, false);
    check(sig(OpKind::kMatMul, {{64, 128}, {64, 64}, {64, 64}}, {0, -1, -1}, {64, 64}), n, 1.0f, true, 0);
  }
}

// warm_up_blas returns for every pool size (also with a worker busy elsewhere, which it waits
// for only a bounded time before starting) and changes no product's bits: a per-instance
// product by a matrix operand before and after gives the same result.
TEST(AcrobatKernels, BlasWarmUpReturnsForEveryPoolAndChangesNoResult) {
  const KernelSig product = sig(OpKind::kMatMul, {{24, 40}, {40, 20}}, {0, -1}, {24, 20});
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> weight(24 * 40), x0(40 * 20), x1(40 * 20);
  for (auto* v : {&weight, &x0, &x1})
    for (float& e : *v) e = dist(rng);
  auto run = [&] {
    std::vector<float> y(2 * 24 * 20);
    const float* w_ptrs[] = {weight.data(), weight.data()};
    const float* x_ptrs[] = {x0.data(), x1.data()};
    const float* const* args[] = {w_ptrs, x_ptrs};
    float* out[] = {y.data(), y.data() + 24 * 20};
    kernels::Scratch scratch;
    kernels::run_batched(product, 2, args, out, scratch);
    return y;
  };
  const std::vector<float> before = run();

  ThreadPool busy_pool(7);
  std::promise<void> release;
  auto busy = busy_pool.submit([gate = release.get_future().share()] { gate.wait(); });
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    release.set_value();
  });
  kernels::warm_up_blas(&busy_pool);  // one worker busy for 300 ms: still returns
  releaser.join();
  busy.get();
  kernels::warm_up_blas(nullptr);
  for (size_t workers : {0, 1, 3}) {
    ThreadPool pool(workers);
    kernels::warm_up_blas(&pool);
  }
  const std::vector<float> after = run();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(before[i], after[i]) << "element " << i;
}

// The packed kernel (every instruction set the CPU has) and the OpenBLAS path on the edge
// cases of the packing: one or two rows, blocks of tile rows plus remainders, output sizes not
// a multiple of the 16-row panel or of the 3-panel groups split across threads, shared
// dimensions shorter than a vector, with and without a folded bias.
TEST(AcrobatKernels, PackedFewRowsKernelMatchesReferenceOnEdgeCases) {
  for (GemmIsa kernel : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kNeon, GemmIsa::kScalar}) {
    if (!gemm_isa_supported(kernel)) continue;
    SCOPED_TRACE(gemm_isa_name(kernel));
    for (int64_t r : {1, 7, 16, 17, 33, 48, 49, 97}) {
      for (int64_t c : {1, 2, 3, 5, 16, 31}) {
        for (int n : {1, 2, 3, 5, 8, 9, 17, 31}) {
          for (int max_rows : {0, 1 << 20}) {  // OpenBLAS only, packed only
            SCOPED_TRACE("r=" + std::to_string(r) + " c=" + std::to_string(c) + " n=" + std::to_string(n) +
                         " packed_max_rows=" + std::to_string(max_rows));
            check(sig(OpKind::kMatMul, {{r, c}, {c}}, {0, -1}, {r}), n, 1.0f, true, max_rows, kernel);
            check(sig(OpKind::kMatMul, {{r, c}, {c}}, {0, -1}, {r}), n, 1.0f, false, max_rows, kernel);
            check(sig(OpKind::kDense, {{r, c}, {c}, {r}}, {0, -1, 1}, {r}), n, 1.0f, true, max_rows, kernel);
            check(sig(OpKind::kDense, {{r, c}, {c}, {r}}, {0, -1, 1}, {r}), n, 1.0f, false, max_rows, kernel);
            // A per-instance bias cannot be folded: the kernel adds it afterwards.
            check(sig(OpKind::kDense, {{r, c}, {c}, {r}}, {0, -1, -1}, {r}), n, 1.0f, true, max_rows, kernel);
          }
        }
      }
    }
  }
}

// More rows than one chunk of the packed kernel (384): the second chunk must start at the
// right instance.
TEST(AcrobatKernels, PackedKernelAcrossRowChunks) {
  for (int n : {384, 389, 777}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    check(sig(OpKind::kDense, {{50, 19}, {19}, {50}}, {0, -1, 1}, {50}), n, 1.0f, false, 1 << 20);
    check(sig(OpKind::kMatMul, {{3, 7}, {7}}, {0, -1}, {3}), n, 1.0f, true, 1 << 20);
  }
}

// Direct calls: every instance reads the SAME row (pointer arrays may repeat), outputs go to
// scattered places, and a packed copy is independent of the weight it was made from.
TEST(AcrobatKernels, PackedMatrixIsACopyAndRowsMayRepeat) {
  const int64_t r = 21, c = 13;
  std::vector<float> w(r * c), bias(r), x(c);
  for (int64_t i = 0; i < r * c; ++i) w[i] = std::sin(0.37f * float(i));
  for (int64_t i = 0; i < r; ++i) bias[i] = 0.5f - 0.1f * float(i);
  for (int64_t i = 0; i < c; ++i) x[i] = std::cos(0.9f * float(i));
  const PackedWeights packed(w.data(), r, c);
  std::vector<float> expect(r);
  for (int64_t i = 0; i < r; ++i) {
    double t = bias[i];
    for (int64_t q = 0; q < c; ++q) t += double(w[i * c + q]) * x[q];
    expect[i] = static_cast<float>(t);
  }
  std::fill(w.begin(), w.end(), 1e9f);  // the packed copy must not read the original
  const int n = 11;
  std::vector<const float*> xs(n, x.data());
  std::vector<float> out(n * r * 3, -7.0f);
  std::vector<float*> ys(n);
  for (int b = 0; b < n; ++b) ys[b] = out.data() + (n - 1 - b) * r * 3 + r;  // gaps between outputs
  packed_gemm(packed, n, xs.data(), ys.data(), {.bias = bias.data(), .accumulate = false});
  for (int b = 0; b < n; ++b) {
    for (int64_t i = 0; i < r; ++i) ASSERT_NEAR(ys[b][i], expect[i], 1e-5f) << b << " " << i;
    EXPECT_EQ(ys[b][-1], -7.0f) << "wrote before instance " << b << "'s output";
    EXPECT_EQ(ys[b][r], -7.0f) << "wrote past instance " << b << "'s output";
  }
}

// The packed copies are cached by address in the Scratch: a different shape at the same
// address is packed again, a second weight gets its own copy.
TEST(AcrobatKernels, PackedWeightCacheKeysOnAddressAndShape) {
  std::vector<float> w(64 * 8), x(16, 1.0f);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 17) - 8.0f;
  kernels::Scratch scratch;
  for (auto [r, c] : {std::pair<int64_t, int64_t>{16, 8}, {32, 16}, {8, 4}}) {
    KernelSig s = sig(OpKind::kMatMul, {{r, c}, {c}}, {0, -1}, {r});
    const float* wp[2] = {w.data(), w.data()};
    const float* xp[2] = {x.data(), x.data()};
    const float* const* args[2] = {wp, xp};
    std::vector<float> fast(2 * r), ref(2 * r);
    float* fo[2] = {fast.data(), fast.data() + r};
    float* ro[2] = {ref.data(), ref.data() + r};
    kernels::run_batched(s, 2, args, fo, scratch);
    kernels::run_reference(s, 2, args, ro);
    for (int64_t i = 0; i < 2 * r; ++i) ASSERT_NEAR(fast[i], ref[i], 1e-4f) << "r=" << r << " i=" << i;
  }
  EXPECT_EQ(scratch.packed.size(), 1u);
}

// One instance at a time (the fused runs of a group) against the batched reference, on odd
// sizes and shared operands.
TEST(AcrobatKernels, SingleInstanceElementwiseMatchesReference) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-6, 6);
  for (int64_t size : {1, 2, 15, 16, 17, 53, 512}) {
    for (OpKind op : {OpKind::kAdd, OpKind::kSub, OpKind::kMul, OpKind::kSigmoid, OpKind::kTanh, OpKind::kRelu}) {
      bool binary = op == OpKind::kAdd || op == OpKind::kSub || op == OpKind::kMul;
      KernelSig s = binary ? sig(op, {{size}, {size}}, {-1, 7}, {size}) : sig(op, {{size}}, {-1}, {size});
      ASSERT_TRUE(kernels::is_elementwise(op));
      std::vector<float> a(size), b(size), fast(size), ref(size);
      for (auto& v : a) v = dist(rng);
      for (auto& v : b) v = dist(rng);
      const float* operands[2] = {a.data(), b.data()};
      kernels::run_elementwise(s, operands, fast.data());
      const float* a0[1] = {a.data()};
      const float* b0[1] = {b.data()};
      const float* const* args[2] = {a0, b0};
      float* ro[1] = {ref.data()};
      kernels::run_reference(s, 1, args, ro);
      for (int64_t i = 0; i < size; ++i)
        ASSERT_NEAR(fast[i], ref[i], 3e-7f * (1 + std::fabs(ref[i]))) << op_name(op) << " size " << size << " i " << i;
    }
  }
  for (OpKind op : {OpKind::kMatMul, OpKind::kSlice, OpKind::kConcat}) EXPECT_FALSE(kernels::is_elementwise(op));
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
    check(sig(OpKind::kMax, {{19}}, {-1}, {1}), n);
    check(sig(OpKind::kMax, {{3, 5}}, {-1}, {1}), n);
    check(sig(OpKind::kSoftmax, {{19}}, {-1}, {19}), n, 10.0f);
    check(sig(OpKind::kArgmax, {{19}}, {-1}, {1}), n);
    check(sig(OpKind::kLookup, {{7, 6}, {6}}, {0, -1}, {6}), n);  // operand 1: each instance's row
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

// With a thread pool (and no minimum work), every split kernel gives bit-identical results to
// the single-threaded call: products by a shared weight (packed kernel, few and many rows,
// output sizes not a multiple of 48), products by per-instance matrices, elementwise
// operators and activations. The exception is OpenBLAS's product over gathered rows (used
// from 4096 rows on): OpenBLAS picks its kernels by the row count, so the threads' parts
// agree with the whole to rounding only.
TEST(AcrobatKernels, TwoThreadsGiveBitIdenticalResults) {
  ThreadPool pool(1);
  struct Case {
    KernelSig sig;
    int n;
    int packed_max_rows;
    bool exact = true;
  };
  std::vector<Case> cases;
  for (int n : {1, 3, 8, 9, 64}) {
    cases.push_back({sig(OpKind::kMatMul, {{200, 37}, {37}}, {0, -1}, {200}), n, kernels::kDefaultPackedMaxRows});
    cases.push_back({sig(OpKind::kDense, {{97, 64}, {64}, {97}}, {0, -1, 1}, {97}), n, kernels::kDefaultPackedMaxRows});
    cases.push_back({sig(OpKind::kDense, {{97, 64}, {64}, {97}}, {0, -1, 1}, {97}), n, 0, false});  // OpenBLAS
    // Matrix operands: their own kernel, and OpenBLAS (one sgemm per instance: exact as well).
    cases.push_back({sig(OpKind::kMatMul, {{33, 20}, {20, 17}}, {0, -1}, {33, 17}), n, kernels::kDefaultPackedMaxRows});
    cases.push_back({sig(OpKind::kMatMul, {{33, 20}, {20, 17}}, {0, -1}, {33, 17}), n, 0});
    cases.push_back({sig(OpKind::kMatMul, {{64, 128}, {64, 64}, {64, 64}}, {0, -1, -1}, {64, 64}), n,
                     kernels::kDefaultPackedMaxRows});                                // MV-RNN's stacked product
    cases.push_back({sig(OpKind::kMatMul, {{24, 24}, {24}}, {-1, -1}, {24}), n, 0});  // per-instance
    cases.push_back({sig(OpKind::kMul, {{301}, {301}}, {-1, -1}, {301}), n, 0});
    cases.push_back({sig(OpKind::kSigmoid, {{301}}, {-1}, {301}), n, 0});
    cases.push_back({sig(OpKind::kTanh, {{301}}, {-1}, {301}), n, 0});
  }
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-2, 2);
  for (const Case& c : cases) {
    size_t nargs = c.sig.arg_dims.size();
    std::vector<std::vector<float>> storage;
    std::vector<std::vector<const float*>> ptrs(nargs);
    for (size_t i = 0; i < nargs; ++i) {
      int copies = c.sig.shared_param[i] >= 0 ? 1 : c.n;
      for (int k = 0; k < copies; ++k) {
        storage.emplace_back(numel(c.sig.arg_dims[i]));
        for (auto& v : storage.back()) v = dist(rng);
      }
    }
    size_t at = 0;
    for (size_t i = 0; i < nargs; ++i) {
      int copies = c.sig.shared_param[i] >= 0 ? 1 : c.n;
      // Scattered: instance b reads copy (b * 5) mod copies.
      for (int b = 0; b < c.n; ++b) ptrs[i].push_back(storage[at + (copies == 1 ? 0 : (b * 5) % copies)].data());
      at += copies;
    }
    std::vector<const float* const*> args;
    for (auto& p : ptrs) args.push_back(p.data());
    int64_t size = numel(c.sig.out_dims);
    std::vector<float> one(size * c.n), two(size * c.n);
    std::vector<float*> o1, o2;
    for (int b = 0; b < c.n; ++b) {
      o1.push_back(one.data() + b * size);
      o2.push_back(two.data() + b * size);
    }
    kernels::Scratch serial, parallel;
    serial.packed_max_rows = parallel.packed_max_rows = c.packed_max_rows;
    parallel.pool = &pool;
    parallel.parallel_min_work = 0;
    kernels::run_batched(c.sig, c.n, args.data(), o1.data(), serial);
    kernels::run_batched(c.sig, c.n, args.data(), o2.data(), parallel);
    if (c.exact) {
      ASSERT_EQ(one, two) << op_name(c.sig.op) << " n=" << c.n << " rows " << c.sig.out_dims[0];
    } else {
      for (size_t i = 0; i < one.size(); ++i) ASSERT_NEAR(one[i], two[i], 1e-5f * (1 + std::fabs(one[i]))) << i;
    }
  }
}

// NaN and infinities give what the reference twins give (NaN in, NaN out; ±inf saturate),
// through the batched path (one long loop), the per-instance path of fused runs, and in place.
TEST(AcrobatKernels, ActivationsPropagateNaNLikeTheReference) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // 37 values: the special ones land in vectorised bodies and in the scalar tails.
  std::vector<float> x(37, 0.5f);
  for (size_t i : {0, 5, 16, 17, 33, 36}) x[i] = nan;
  x[3] = inf;
  x[20] = -inf;
  x[34] = -nan;
  for (OpKind op : {OpKind::kSigmoid, OpKind::kTanh, OpKind::kRelu}) {
    KernelSig s = sig(op, {{37}}, {-1}, {37});
    std::vector<float> batched(37), single(37), ref(37);
    const float* in[1] = {x.data()};
    const float* const* args[1] = {in};
    float* bo[1] = {batched.data()};
    float* ro[1] = {ref.data()};
    kernels::Scratch scratch;
    kernels::run_batched(s, 1, args, bo, scratch);
    kernels::run_reference(s, 1, args, ro);
    kernels::run_elementwise(s, in, single.data());
    for (size_t i = 0; i < x.size(); ++i) {
      if (op == OpKind::kRelu) continue;  // max(0, NaN) is 0 in both twins
      ASSERT_EQ(std::isnan(ref[i]), std::isnan(x[i])) << op_name(op) << " " << i;
      for (float got : {batched[i], single[i]}) {
        if (std::isnan(ref[i]))
          ASSERT_TRUE(std::isnan(got)) << op_name(op) << " element " << i << " gave " << got;
        else
          ASSERT_NEAR(got, ref[i], 3e-7f) << op_name(op) << " element " << i;
      }
    }
  }
  std::vector<float> y = x;
  kernels::sigmoid_inplace(y.data(), static_cast<int64_t>(y.size()));
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[36]));
  EXPECT_EQ(y[3], 1.0f);
  y = x;
  kernels::tanh_inplace(y.data(), static_cast<int64_t>(y.size()));
  EXPECT_TRUE(std::isnan(y[16]) && std::isnan(y[34]));
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_EQ(y[20], -1.0f);
}

}  // namespace
}  // namespace perfmem::acrobat
