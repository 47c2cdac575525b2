// Batched kernels (BLAS for products, vectorised loops elsewhere) and reference twins.
#include "perfmem/acrobat/kernels.h"

#include <cblas.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include "perfmem/core/fast_math.h"

namespace perfmem::acrobat::kernels {
namespace {

int64_t numel(const std::vector<int64_t>& d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

bool contiguous(const float* const* p, int n, int64_t stride) {
  for (int b = 1; b < n; ++b)
    if (p[b] != p[0] + b * stride) return false;
  return true;
}

// x86-64: the elementwise loops are cloned for AVX-512, AVX2 and the baseline (chosen once per
// process). Elsewhere (aarch64) they compile to the native SIMD as they are.
#if defined(__x86_64__)
#define PERFMEM_ACROBAT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PERFMEM_ACROBAT_CLONES
#endif

// NaN stays NaN, like std::exp / std::tanh in the reference twins (core/fast_math.h).
PERFMEM_ACROBAT_CLONES void sigmoid_loop(const float* __restrict x, float* __restrict y, int64_t size) {
  for (int64_t i = 0; i < size; ++i) y[i] = fast_sigmoid(x[i]);
}
PERFMEM_ACROBAT_CLONES void tanh_loop(const float* __restrict x, float* __restrict y, int64_t size) {
  for (int64_t i = 0; i < size; ++i) y[i] = fast_tanh(x[i]);
}
PERFMEM_ACROBAT_CLONES void add_loop(const float* __restrict a, const float* __restrict b, float* __restrict y,
                                     int64_t size) {
  for (int64_t i = 0; i < size; ++i) y[i] = a[i] + b[i];
}
PERFMEM_ACROBAT_CLONES void sub_loop(const float* __restrict a, const float* __restrict b, float* __restrict y,
                                     int64_t size) {
  for (int64_t i = 0; i < size; ++i) y[i] = a[i] - b[i];
}
PERFMEM_ACROBAT_CLONES void mul_loop(const float* __restrict a, const float* __restrict b, float* __restrict y,
                                     int64_t size) {
  for (int64_t i = 0; i < size; ++i) y[i] = a[i] * b[i];
}
PERFMEM_ACROBAT_CLONES void relu_loop(const float* __restrict x, float* __restrict y, int64_t size) {
  for (int64_t i = 0; i < size; ++i) y[i] = x[i] > 0 ? x[i] : 0.0f;
}

// In-place safe versions (x may equal y): the restrict loops above need distinct buffers.
void apply_unary(OpKind op, const float* x, float* y, int64_t size) {
  if (x == y) {
    thread_local std::vector<float> tmp;
    tmp.assign(x, x + size);
    x = tmp.data();
  }
  switch (op) {
    case OpKind::kSigmoid: sigmoid_loop(x, y, size); return;
    case OpKind::kTanh: tanh_loop(x, y, size); return;
    case OpKind::kRelu: relu_loop(x, y, size); return;
    default: break;
  }
}

bool matmul_shared_blas(const float* W, int64_t r, int64_t c, int64_t k, const float* const* x, float* const* y, int n,
                        const float* bias, Scratch& s);

// One row block of a matrix operand: instance b's block is x[shared ? 0 : b], rows x k.
struct RowBlock {
  const float* const* x;
  bool shared;
  int64_t rows;
};

void matmul_shared_in_place(const float* W, int64_t r, int64_t c, int64_t k, const std::vector<RowBlock>& blocks,
                            float* const* y, int n, Scratch& s);

const PackedWeights& packed_weight(const float* W, int64_t r, int64_t c, Scratch& s) {
  auto it = s.packed.find(W);
  if (it == s.packed.end() || it->second.out() != r || it->second.in() != c)
    it = s.packed.insert_or_assign(W, PackedWeights(W, r, c)).first;
  return it->second;
}

// Y[b] = W X[b] for a shared W (r x c) and per-instance X[b] (c x k). With `bias` (a shared
// dense bias) the kernel may fold it in: returns whether it did.
bool matmul_shared(const float* W, int64_t r, int64_t c, int64_t k, const float* const* x, float* const* y, int n,
                   const float* bias, Scratch& s) {
  if (k == 1 && n < s.packed_max_rows) {
    const PackedWeights& w = packed_weight(W, r, c, s);  // packed on the calling thread
    // Split over groups of 3 panels; every output element is computed by one thread with the
    // same arithmetic whatever the split (packed_gemm's invariant).
    constexpr int64_t kGroupPanels = 3;
    const int64_t groups = (w.panels() + kGroupPanels - 1) / kGroupPanels;
    parallel_ranges(s, groups, r * c * n, [&](int64_t g0, int64_t g1) {
      packed_gemm(w, n, x, y, {.bias = bias, .accumulate = false}, s.packed_isa,
                  {g0 * kGroupPanels, std::min(w.panels(), g1 * kGroupPanels)});
    });
    return bias != nullptr;
  }
  if (k >= 2 && s.packed_max_rows > 0) {  // 0: OpenBLAS for every product (benchmarks, tests)
    matmul_shared_in_place(W, r, c, k, {{x, false, c}}, y, n, s);
    return false;
  }
  return matmul_shared_blas(W, r, c, k, x, y, n, bias, s);
}

// W (r x c) in panels of kPanelRows rows, column-major within a panel: panel p holds
// W[p * kPanelRows + i][l] at (p * c + l) * kPanelRows + i; rows past r are zero.
constexpr int64_t kPanelRows = 6;

const std::vector<float>& row_panels(const float* W, int64_t r, int64_t c, Scratch& s) {
  auto it = s.row_panels.find(W);
  const size_t size = static_cast<size_t>((r + kPanelRows - 1) / kPanelRows * kPanelRows * c);
  if (it != s.row_panels.end() && it->second.size() == size) return it->second;
  std::vector<float> panels(size, 0.0f);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t l = 0; l < c; ++l)
      panels[static_cast<size_t>(((i / kPanelRows) * c + l) * kPanelRows + i % kPanelRows)] = W[i * c + l];
  return s.row_panels.insert_or_assign(W, std::move(panels)).first->second;
}

// Output element (i, j) of instance b: one fma chain over l = 0..c-1 in order, starting at 0.
// The AVX2 kernel below computes the same chain per element, so both give the same bits.
void columns_tile_scalar(const float* panel, int64_t rows, int64_t k, const RowBlock* blocks, size_t nblocks, int64_t b,
                         int64_t j, float* y_panel) {
  for (int64_t i = 0; i < rows; ++i) {
    float acc = 0.0f;
    int64_t l = 0;
    for (size_t p = 0; p < nblocks; ++p) {
      const float* x = blocks[p].x[blocks[p].shared ? 0 : b];
      for (int64_t q = 0; q < blocks[p].rows; ++q, ++l) acc = std::fma(panel[l * kPanelRows + i], x[q * k + j], acc);
    }
    y_panel[i * k + j] = acc;
  }
}

#if defined(__x86_64__)
// Columns [j, j + 16) of one panel's rows: 6 x 2 accumulators; every row l of the operand is
// read in place (16 contiguous floats), every weight is broadcast from the panel.
__attribute__((target("avx2,fma"))) void columns_tile_avx2(const float* panel, int64_t rows, int64_t k,
                                                           const RowBlock* blocks, size_t nblocks, int64_t b, int64_t j,
                                                           float* y_panel) {
  static_assert(kPanelRows == 6);
  // Twelve named accumulators: an array of them is kept in memory by GCC, a store per fma.
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00,
         a40 = a00, a41 = a00, a50 = a00, a51 = a00;
  const float* w = panel;
  for (size_t p = 0; p < nblocks; ++p) {
    const float* x = blocks[p].x[blocks[p].shared ? 0 : b] + j;
    for (int64_t q = 0; q < blocks[p].rows; ++q, x += k, w += kPanelRows) {
      const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
      __m256 wi = _mm256_broadcast_ss(w);
      a00 = _mm256_fmadd_ps(wi, x0, a00);
      a01 = _mm256_fmadd_ps(wi, x1, a01);
      wi = _mm256_broadcast_ss(w + 1);
      a10 = _mm256_fmadd_ps(wi, x0, a10);
      a11 = _mm256_fmadd_ps(wi, x1, a11);
      wi = _mm256_broadcast_ss(w + 2);
      a20 = _mm256_fmadd_ps(wi, x0, a20);
      a21 = _mm256_fmadd_ps(wi, x1, a21);
      wi = _mm256_broadcast_ss(w + 3);
      a30 = _mm256_fmadd_ps(wi, x0, a30);
      a31 = _mm256_fmadd_ps(wi, x1, a31);
      wi = _mm256_broadcast_ss(w + 4);
      a40 = _mm256_fmadd_ps(wi, x0, a40);
      a41 = _mm256_fmadd_ps(wi, x1, a41);
      wi = _mm256_broadcast_ss(w + 5);
      a50 = _mm256_fmadd_ps(wi, x0, a50);
      a51 = _mm256_fmadd_ps(wi, x1, a51);
    }
  }
  const __m256 rows_out[kPanelRows][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
  for (int64_t i = 0; i < rows; ++i) {
    _mm256_storeu_ps(y_panel + i * k + j, rows_out[i][0]);
    _mm256_storeu_ps(y_panel + i * k + j + 8, rows_out[i][1]);
  }
}
#endif

// Y[b] = W [X1[b]; X2[b]; ...] for a shared W (r x c) and matrix operands of k >= 2 columns,
// without packing the operands: W is packed once per process in panels of 6 rows, and the
// kernel reads each operand row in place, 16 columns at a time (OpenBLAS's sgemm re-packs W
// and both operands on every call, which on MV-RNN's 64 x 128 x 64 products took a third of
// the product time). Split over instances; every output element is one fma chain on one
// thread, so the bits depend neither on the thread count nor on the instruction set.
void matmul_shared_in_place(const float* W, int64_t r, int64_t c, int64_t k, const std::vector<RowBlock>& blocks,
                            float* const* y, int n, Scratch& s) {
  const std::vector<float>& panels = row_panels(W, r, c, s);  // packed on the calling thread
  [[maybe_unused]] const bool avx2 = s.packed_isa == GemmIsa::kAvx2 || s.packed_isa == GemmIsa::kAvx512;
  parallel_ranges(s, n, r * c * k * n, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t p = 0; p * kPanelRows < r; ++p) {
        const float* panel = panels.data() + p * c * kPanelRows;
        const int64_t rows = std::min(kPanelRows, r - p * kPanelRows);
        float* y_panel = y[b] + p * kPanelRows * k;
        int64_t j = 0;
#if defined(__x86_64__)
        if (avx2)
          for (; j + 16 <= k; j += 16) columns_tile_avx2(panel, rows, k, blocks.data(), blocks.size(), b, j, y_panel);
#endif
        for (; j < k; ++j) columns_tile_scalar(panel, rows, k, blocks.data(), blocks.size(), b, j, y_panel);
      }
  });
}

// OpenBLAS: one sgemm over all rows (gathered through the pointer array when scattered).
// Returns whether it folded `bias` in: the output starts as the bias rows and the product is
// accumulated onto them (beta = 1), which replaces sgemm's zero fill of the output and saves
// a read-modify-write pass over it afterwards.
bool matmul_shared_blas(const float* W, int64_t r, int64_t c, int64_t k, const float* const* x, float* const* y, int n,
                        const float* bias, Scratch& s) {
  if (n == 1) {
    if (k == 1)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, r, c, 1.0f, W, c, x[0], 1, 0.0f, y[0], 1);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, k, c, 1.0f, W, c, x[0], k, 0.0f, y[0], k);
    return false;
  }
  if (k == 1) {
    // C (n x r) = X (n x c) * W^T, X's rows gathered through the pointer array. With a pool,
    // each thread multiplies its own rows (disjoint parts of the gather and output buffers).
    bool in_place_x = contiguous(x, n, c);
    bool out_in_place = contiguous(y, n, r);
    if (!in_place_x) s.a.resize(static_cast<size_t>(n * c));
    if (!out_in_place) s.b.resize(static_cast<size_t>(n * r));
    parallel_ranges(s, n, r * c * n, [&](int64_t b0, int64_t b1) {
      const float* X = x[b0];
      if (!in_place_x) {
        for (int64_t b = b0; b < b1; ++b) std::memcpy(s.a.data() + b * c, x[b], sizeof(float) * c);
        X = s.a.data() + b0 * c;
      }
      float* C = out_in_place ? y[b0] : s.b.data() + b0 * r;
      if (bias)
        for (int64_t b = 0; b < b1 - b0; ++b) std::memcpy(C + b * r, bias, sizeof(float) * r);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b1 - b0, r, c, 1.0f, X, c, W, c, bias ? 1.0f : 0.0f, C, r);
      if (!out_in_place)
        for (int64_t b = b0; b < b1; ++b) std::memcpy(y[b], s.b.data() + b * r, sizeof(float) * r);
    });
    return bias != nullptr;
  }
  // Matrix operands with many columns are each a full GEMM already: one call per instance.
  if (k >= 16) {
    parallel_ranges(s, n, r * c * k * n, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, k, c, 1.0f, W, c, x[b], k, 0.0f, y[b], k);
    });
    return false;
  }
  // Narrow matrix operands: B = [X_0 | X_1 | ...] (c x n*k), C = W B (r x n*k), then split.
  int64_t nk = n * k;
  s.a.resize(static_cast<size_t>(c * nk));
  for (int b = 0; b < n; ++b)
    for (int64_t i = 0; i < c; ++i) std::memcpy(s.a.data() + i * nk + b * k, x[b] + i * k, sizeof(float) * k);
  s.b.resize(static_cast<size_t>(r * nk));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, nk, c, 1.0f, W, c, s.a.data(), nk, 0.0f, s.b.data(), nk);
  for (int b = 0; b < n; ++b)
    for (int64_t i = 0; i < r; ++i) std::memcpy(y[b] + i * k, s.b.data() + i * nk + b * k, sizeof(float) * k);
  return false;
}

// Y[b] = A[b] X[b]: every instance has its own matrix (no shared weight to batch on).
void matmul_each(const float* const* A, int64_t r, int64_t c, int64_t k, const float* const* x, float* const* y, int n,
                 Scratch& s) {
  parallel_ranges(s, n, r * c * k * n, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      if (k == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, r, c, 1.0f, A[b], c, x[b], 1, 0.0f, y[b], 1);
      else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, k, c, 1.0f, A[b], c, x[b], k, 0.0f, y[b], k);
    }
  });
}

void softmax_row(const float* x, float* y, int64_t size) {
  float m = x[0];
  for (int64_t i = 1; i < size; ++i) m = std::max(m, x[i]);
  double total = 0;
  for (int64_t i = 0; i < size; ++i) {
    y[i] = std::exp(x[i] - m);
    total += y[i];
  }
  float inv = static_cast<float>(1.0 / total);
  for (int64_t i = 0; i < size; ++i) y[i] *= inv;
}

void argmax_row(const float* x, float* y, int64_t size) {
  int64_t best = 0;
  for (int64_t i = 1; i < size; ++i)
    if (x[i] > x[best]) best = i;
  y[0] = static_cast<float>(best);
}

// The batched data-movement and reduction operators (memcpy, vectorisable loops); the
// reference twin (run_reference) writes them as plain element-by-element loops.
bool run_movement(const KernelSig& sig, int n, const float* const* const* args, float* const* out) {
  switch (sig.op) {
    case OpKind::kConcat: {
      for (int b = 0; b < n; ++b) {
        float* dst = out[b];
        for (size_t i = 0; i < sig.arg_dims.size(); ++i) {
          int64_t m = numel(sig.arg_dims[i]);
          std::memcpy(dst, args[i][b], sizeof(float) * m);
          dst += m;
        }
      }
      return true;
    }
    case OpKind::kSlice: {
      int64_t row = sig.arg_dims[0].size() == 2 ? sig.arg_dims[0][1] : 1;
      int64_t off = sig.ints[0] * row, len = sig.ints[1] * row;
      for (int b = 0; b < n; ++b) std::memcpy(out[b], args[0][b] + off, sizeof(float) * len);
      return true;
    }
    case OpKind::kLookup: {
      // Only the graph-building baselines record lookups (copying the row, as DyNet does);
      // the compiled path reads the row in place. args[1][b] points at instance b's row.
      int64_t row = numel(sig.out_dims);
      for (int b = 0; b < n; ++b) std::memcpy(out[b], args[1][b], sizeof(float) * row);
      return true;
    }
    case OpKind::kArgmax:
      for (int b = 0; b < n; ++b) argmax_row(args[0][b], out[b], sig.arg_dims[0][0]);
      return true;
    case OpKind::kSoftmax:
      for (int b = 0; b < n; ++b) softmax_row(args[0][b], out[b], numel(sig.arg_dims[0]));
      return true;
    case OpKind::kMax:
      for (int b = 0; b < n; ++b) {
        const float* x = args[0][b];
        float m = x[0];
        for (int64_t i = 1, size = numel(sig.arg_dims[0]); i < size; ++i) m = x[i] > m ? x[i] : m;
        out[b][0] = m;
      }
      return true;
    case OpKind::kSum:
      for (int b = 0; b < n; ++b) {
        double t = 0;
        int64_t m = numel(sig.arg_dims[0]);
        for (int64_t i = 0; i < m; ++i) t += args[0][b][i];
        out[b][0] = static_cast<float>(t);
      }
      return true;
    default: return false;
  }
}

}  // namespace

void sigmoid_inplace(float* x, int64_t size) { apply_unary(OpKind::kSigmoid, x, x, size); }
void tanh_inplace(float* x, int64_t size) { apply_unary(OpKind::kTanh, x, x, size); }

void set_blas_threads(int threads) { openblas_set_num_threads(threads); }

void warm_up_blas(ThreadPool* pool) {
  // OpenBLAS keeps its work buffers for the life of the process, so each number of concurrent
  // callers needs warming once.
  static std::mutex mutex;
  static int warmed_threads = 0;
  const int threads = 1 + (pool != nullptr ? static_cast<int>(pool->size()) : 0);
  std::lock_guard<std::mutex> lock(mutex);
  if (threads <= warmed_threads) return;
  std::atomic<int> arrived{0};
  auto warm = [&](int64_t, int64_t) {
    // Start together, so that every thread's call holds its own buffer; the wait is bounded, so
    // a worker that is slow to wake costs a shared buffer, never a stall.
    arrived.fetch_add(1);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (arrived.load() < threads && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    constexpr int kSize = 512;
    std::vector<float> a(kSize * kSize, 0.5f), b(kSize * kSize, 0.25f), c(kSize * kSize);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kSize, kSize, kSize, 1.0f, a.data(), kSize, b.data(), kSize,
                0.0f, c.data(), kSize);
  };
  if (threads == 1)
    warm(0, 1);
  else
    pool->parallel_for(0, threads, warm);
  warmed_threads = threads;
}

void parallel_ranges(Scratch& scratch, int64_t count, int64_t work, const std::function<void(int64_t, int64_t)>& fn) {
  if (scratch.pool == nullptr || scratch.pool->size() == 0 || count < 2 || work < scratch.parallel_min_work) {
    fn(0, count);
    return;
  }
  scratch.pool->parallel_for(0, count, fn);
}

namespace {

// Y[b] = W [X1[b]; X2[b]; ...] for matrices Xi (ci x k) and W (r x sum ci): a stacked product
// (compile_program folds matmul(W, concat(X1, ..., Xm)) into one). With a shared W and k >= 16,
// each part is one sgemm of W's column block, read in place (leading dimension c), accumulated
// onto the output; otherwise the parts are stacked into a copy and the plain product runs.
void matmul_stacked(const KernelSig& sig, int n, const float* const* const* args, float* const* out, Scratch& s) {
  const int64_t r = sig.arg_dims[0][0], c = sig.arg_dims[0][1], k = sig.arg_dims[1][1];
  const size_t parts = sig.arg_dims.size() - 1;
  auto part = [&](size_t p, int64_t b) { return args[p + 1][sig.shared_param[p + 1] >= 0 ? 0 : b]; };
  if (sig.shared_param[0] >= 0 && k >= 2 && s.packed_max_rows > 0) {
    std::vector<RowBlock> blocks;
    for (size_t p = 0; p < parts; ++p)
      blocks.push_back({args[p + 1], sig.shared_param[p + 1] >= 0, sig.arg_dims[p + 1][0]});
    matmul_shared_in_place(args[0][0], r, c, k, blocks, out, n, s);
    return;
  }
  std::vector<float> stacked(static_cast<size_t>(n * c * k));
  std::vector<const float*> x(static_cast<size_t>(n));
  for (int b = 0; b < n; ++b) {
    float* to = stacked.data() + b * c * k;
    x[static_cast<size_t>(b)] = to;
    for (size_t p = 0; p < parts; ++p) {
      const int64_t size = numel(sig.arg_dims[p + 1]);
      std::memcpy(to, part(p, b), sizeof(float) * static_cast<size_t>(size));
      to += size;
    }
  }
  if (sig.shared_param[0] >= 0)
    matmul_shared(args[0][0], r, c, k, x.data(), out, n, nullptr, s);
  else
    matmul_each(args[0], r, c, k, x.data(), out, n, s);
}

}  // namespace

void run_batched(const KernelSig& sig, int n, const float* const* const* args, float* const* out, Scratch& s) {
  if (run_movement(sig, n, args, out)) return;
  int64_t size = numel(sig.out_dims);
  switch (sig.op) {
    case OpKind::kMatMul:
    case OpKind::kDense: {
      if (sig.op == OpKind::kMatMul && sig.arg_dims.size() > 2) {
        matmul_stacked(sig, n, args, out, s);
        return;
      }
      int64_t r = sig.arg_dims[0][0], c = sig.arg_dims[0][1];
      int64_t k = sig.arg_dims[1].size() == 2 ? sig.arg_dims[1][1] : 1;
      const float* shared_bias = sig.op == OpKind::kDense && sig.shared_param[2] >= 0 ? args[2][0] : nullptr;
      bool bias_done = false;
      if (sig.shared_param[0] >= 0)
        bias_done = matmul_shared(args[0][0], r, c, k, args[1], out, n, shared_bias, s);
      else
        matmul_each(args[0], r, c, k, args[1], out, n, s);
      if (sig.op == OpKind::kDense && !bias_done)
        for (int b = 0; b < n; ++b) {
          const float* bias = args[2][sig.shared_param[2] >= 0 ? 0 : b];
          for (int64_t i = 0; i < r; ++i) out[b][i] += bias[i];
        }
      return;
    }
    case OpKind::kAdd:
    case OpKind::kSub:
    case OpKind::kMul: {
      auto loop = sig.op == OpKind::kAdd ? add_loop : sig.op == OpKind::kSub ? sub_loop : mul_loop;
      bool s0 = sig.shared_param[0] >= 0, s1 = sig.shared_param[1] >= 0;
      // Distinct buffers are guaranteed: outputs are fresh arena memory.
      parallel_ranges(s, n, size * n, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) loop(args[0][s0 ? 0 : b], args[1][s1 ? 0 : b], out[b], size);
      });
      return;
    }
    case OpKind::kSigmoid:
    case OpKind::kTanh:
    case OpKind::kRelu: {
      bool s0 = sig.shared_param[0] >= 0;
      bool in_contig = !s0 && contiguous(args[0], n, size) && contiguous(out, n, size);
      parallel_ranges(s, n, size * n, [&](int64_t b0, int64_t b1) {
        if (in_contig)
          apply_unary(sig.op, args[0][b0], out[b0], size * (b1 - b0));  // one long loop
        else
          for (int64_t b = b0; b < b1; ++b) apply_unary(sig.op, args[0][s0 ? 0 : b], out[b], size);
      });
      return;
    }
    default: break;
  }
  PERFMEM_CHECK(false, std::string("run_batched: unhandled operator ") + op_name(sig.op));
}

bool is_elementwise(OpKind op) {
  switch (op) {
    case OpKind::kAdd:
    case OpKind::kSub:
    case OpKind::kMul:
    case OpKind::kSigmoid:
    case OpKind::kTanh:
    case OpKind::kRelu: return true;
    default: return false;
  }
}

void run_elementwise(const KernelSig& sig, const float* const* operands, float* out) {
  int64_t size = numel(sig.out_dims);
  switch (sig.op) {
    case OpKind::kAdd: add_loop(operands[0], operands[1], out, size); return;
    case OpKind::kSub: sub_loop(operands[0], operands[1], out, size); return;
    case OpKind::kMul: mul_loop(operands[0], operands[1], out, size); return;
    case OpKind::kSigmoid:
    case OpKind::kTanh:
    case OpKind::kRelu: apply_unary(sig.op, operands[0], out, size); return;
    default: break;
  }
  PERFMEM_CHECK(false, std::string("run_elementwise: not an elementwise operator: ") + op_name(sig.op));
}

void run_reference(const KernelSig& sig, int n, const float* const* const* args, float* const* out) {
  int64_t size = numel(sig.out_dims);
  for (int b = 0; b < n; ++b) {
    auto arg = [&](size_t i) { return args[i][sig.shared_param[i] >= 0 ? 0 : b]; };
    switch (sig.op) {
      case OpKind::kConcat: {
        int64_t k = 0;
        for (size_t i = 0; i < sig.arg_dims.size(); ++i)
          for (int64_t j = 0; j < numel(sig.arg_dims[i]); ++j) out[b][k++] = arg(i)[j];
        break;
      }
      case OpKind::kSlice: {
        int64_t row = sig.arg_dims[0].size() == 2 ? sig.arg_dims[0][1] : 1;
        for (int64_t j = 0; j < sig.ints[1] * row; ++j) out[b][j] = arg(0)[sig.ints[0] * row + j];
        break;
      }
      case OpKind::kLookup:  // args[1][b] is instance b's row of the table
        for (int64_t j = 0; j < size; ++j) out[b][j] = args[1][b][j];
        break;
      case OpKind::kArgmax: {
        int64_t best = 0;
        for (int64_t j = 0; j < sig.arg_dims[0][0]; ++j)
          if (arg(0)[j] > arg(0)[best]) best = j;
        out[b][0] = static_cast<float>(best);
        break;
      }
      case OpKind::kSoftmax: {
        double m = -std::numeric_limits<double>::infinity(), total = 0;
        for (int64_t j = 0; j < size; ++j) m = std::max(m, double(arg(0)[j]));
        for (int64_t j = 0; j < size; ++j) total += std::exp(double(arg(0)[j]) - m);
        for (int64_t j = 0; j < size; ++j) out[b][j] = static_cast<float>(std::exp(double(arg(0)[j]) - m) / total);
        break;
      }
      case OpKind::kMax: {
        float m = arg(0)[0];
        for (int64_t j = 1; j < numel(sig.arg_dims[0]); ++j) m = std::max(m, arg(0)[j]);
        out[b][0] = m;
        break;
      }
      case OpKind::kSum: {
        double t = 0;
        for (int64_t j = 0; j < numel(sig.arg_dims[0]); ++j) t += arg(0)[j];
        out[b][0] = static_cast<float>(t);
        break;
      }
      case OpKind::kMatMul:
      case OpKind::kDense: {
        int64_t r = sig.arg_dims[0][0], c = sig.arg_dims[0][1];
        int64_t k = sig.arg_dims[1].size() == 2 ? sig.arg_dims[1][1] : 1;
        // Row q of the second operand; a stacked product (matmul(W, X1, ..., Xm)) finds it in
        // the part that holds it.
        const bool stacked = sig.op == OpKind::kMatMul && sig.arg_dims.size() > 2;
        auto operand = [&](int64_t q, int64_t j) {
          size_t p = 1;
          while (stacked && q >= sig.arg_dims[p][0]) q -= sig.arg_dims[p++][0];
          return arg(p)[q * k + j];
        };
        for (int64_t i = 0; i < r; ++i)
          for (int64_t j = 0; j < k; ++j) {
            double t = 0;
            for (int64_t q = 0; q < c; ++q) t += double(arg(0)[i * c + q]) * operand(q, j);
            if (sig.op == OpKind::kDense) t += arg(2)[i];
            out[b][i * k + j] = static_cast<float>(t);
          }
        break;
      }
      case OpKind::kAdd:
        for (int64_t i = 0; i < size; ++i) out[b][i] = arg(0)[i] + arg(1)[i];
        break;
      case OpKind::kSub:
        for (int64_t i = 0; i < size; ++i) out[b][i] = arg(0)[i] - arg(1)[i];
        break;
      case OpKind::kMul:
        for (int64_t i = 0; i < size; ++i) out[b][i] = arg(0)[i] * arg(1)[i];
        break;
      case OpKind::kSigmoid:
        for (int64_t i = 0; i < size; ++i) out[b][i] = static_cast<float>(1.0 / (1.0 + std::exp(-double(arg(0)[i]))));
        break;
      case OpKind::kTanh:
        for (int64_t i = 0; i < size; ++i) out[b][i] = std::tanh(arg(0)[i]);
        break;
      case OpKind::kRelu:
        for (int64_t i = 0; i < size; ++i) out[b][i] = std::max(0.0f, arg(0)[i]);
        break;
      default: PERFMEM_CHECK(false, std::string("run_reference: unhandled operator ") + op_name(sig.op));
    }
  }
}

}  // namespace perfmem::acrobat::kernels
