// A test without GoogleTest, so that it builds with a cross compiler alone and runs under an
// emulator: every instruction set the CPU supports (on aarch64: NEON) against the plain-loop
// twin, bit for bit, over the shapes that reach every tile and epilogue. Exit 0 when all match.
//   packed_gemm_isa_check     prints one line per instruction set checked
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "perfmem/core/packed_gemm.h"

int main() {
  using namespace perfmem;
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  int failures = 0, checked_isas = 0;
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kNeon, GemmIsa::kScalar}) {
    if (!gemm_isa_supported(isa)) continue;
    ++checked_isas;
    int64_t products = 0;
    for (int64_t out : {1, 15, 16, 17, 50})
      for (int64_t in : {0, 1, 3, 17, 300}) {
        std::vector<float> w(out * in), bias(out);
        for (float& v : w) v = dist(rng);
        for (float& v : bias) v = dist(rng);
        const PackedWeights packed(w.data(), out, in);
        for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 300}) {
          std::vector<float> x(rows * in);
          for (float& v : x) v = dist(rng);
          for (int variant = 0; variant < 4; ++variant) {
            std::vector<float> got(rows * out, 0.25f), want(rows * out, 0.25f);
            std::vector<const float*> xr;
            std::vector<float*> gr, wr;
            for (int64_t r = 0; r < rows; ++r) {
              xr.push_back(x.data() + r * in);
              gr.push_back(got.data() + r * out);
              wr.push_back(want.data() + r * out);
            }
            const GemmEpilogue epilogue{variant & 1 ? bias.data() : nullptr, (variant & 2) != 0};
            packed_gemm(packed, rows, xr.data(), gr.data(), epilogue, isa);
            packed_gemm_reference(packed, rows, xr.data(), wr.data(), epilogue);
            ++products;
            if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0) {
              std::printf("MISMATCH %s rows %lld out %lld in %lld variant %d\n", gemm_isa_name(isa),
                          static_cast<long long>(rows), static_cast<long long>(out), static_cast<long long>(in),
                          variant);
              ++failures;
            }
          }
        }
      }
    std::printf("%s: %lld products compared with the plain-loop twin\n", gemm_isa_name(isa),
                static_cast<long long>(products));
  }
  return failures == 0 && checked_isas > 0 ? 0 : 1;
}
