// Where the packed few-rows kernel stops beating OpenBLAS: times y[b] = W x[b] + bias for a
// shared weight and n scattered vectors both ways (same call as the runtime makes) and prints
// the ratio per row count. The crossover sets kernels::kDefaultPackedMaxRows.
//
//   acrobat_gemm_crossover                        # the weight shapes of the bundled models
//   acrobat_gemm_crossover --shapes 2048x512 --rows 1,8,64 --json out.json
#include <algorithm>
#include <cstdio>
#include <random>

#include "perfmem/acrobat/kernels.h"
#include "perfmem/core/cli.h"
#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/stats.h"

namespace {

using namespace perfmem;
using namespace perfmem::acrobat;

std::vector<int64_t> split_ints(const std::string& s, char sep) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    out.push_back(std::atoll(s.substr(start, end - start).c_str()));
    start = end + 1;
  }
  return out;
}

// Median microseconds of one batched dense call (the packed copy is made before timing, as
// the runtime keeps it for the model's lifetime).
double time_dense(int64_t r, int64_t c, int n, bool packed, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> w(static_cast<size_t>(r * c)), bias(static_cast<size_t>(r));
  for (auto& v : w) v = dist(rng);
  for (auto& v : bias) v = dist(rng);
  // Operands scattered (every other slot of a larger block), outputs contiguous: the layout
  // the runtime hands the kernels.
  std::vector<float> xs(static_cast<size_t>(2 * n * c)), ys(static_cast<size_t>(n * r));
  for (auto& v : xs) v = dist(rng);
  std::vector<const float*> xp(n);
  std::vector<float*> yp(n);
  for (int b = 0; b < n; ++b) {
    xp[b] = xs.data() + static_cast<size_t>(2 * b) * c;
    yp[b] = ys.data() + static_cast<size_t>(b) * r;
  }
  KernelSig sig;
  sig.op = OpKind::kDense;
  sig.arg_dims = {{r, c}, {c}, {r}};
  sig.shared_param = {0, -1, 1};
  sig.out_dims = {r};
  const float* w0 = w.data();
  const float* b0 = bias.data();
  std::vector<const float*> wp(n, w0), bp(n, b0);
  const float* const* args[3] = {wp.data(), xp.data(), bp.data()};
  kernels::Scratch scratch;
  scratch.packed_max_rows = packed ? n + 1 : 0;
  std::vector<double> us;
  const int reps = n >= 1024 ? 8 : 25;  // large products take long enough to time well
  for (int rep = 0; rep < reps; ++rep) {
    Stopwatch sw;
    kernels::run_batched(sig, n, args, yp.data(), scratch);
    if (rep >= 3) us.push_back(sw.elapsed_s() * 1e6);
  }
  return summarize(us).median;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"acrobat_gemm_crossover: packed few-rows kernel vs OpenBLAS sgemm, by row count"};
  std::vector<std::string> shapes = {"3072x1024", "2048x512", "1536x512", "512x512", "1024x256", "768x256", "256x256"};
  std::vector<int64_t> rows = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096};
  std::string json_path;
  app.add_option("--shapes", shapes, "Weight shapes RxC (comma-separated)")->delimiter(',');
  app.add_option("--rows", rows, "Row counts, instances per call (comma-separated)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--json", json_path, "Also write the results as JSON to this file");
  return run_cli(app, argc, argv, [&]() -> int {
    kernels::set_blas_threads(1);
    std::mt19937 rng(7);
    Json all = Json::array();
    std::printf("| weight | rows | OpenBLAS us | packed us | OpenBLAS / packed |\n|---|---|---|---|---|\n");
    for (const std::string& shape : shapes) {
      auto dims = split_ints(shape, 'x');
      if (dims.size() != 2 || dims[0] < 1 || dims[1] < 1)
        return report_failure(app, input_error("--shapes", shape, "RxC with positive R and C"));
      for (int64_t n : rows) {
        double blas = time_dense(dims[0], dims[1], static_cast<int>(n), false, rng);
        double packed = time_dense(dims[0], dims[1], static_cast<int>(n), true, rng);
        std::printf("| %s | %lld | %.1f | %.1f | %.2fx |\n", shape.c_str(), static_cast<long long>(n), blas, packed,
                    blas / packed);
        std::fflush(stdout);
        all.push_back({{"weight", shape}, {"rows", n}, {"openblas_us", blas}, {"packed_us", packed}});
      }
    }
    if (!json_path.empty()) {
      Status s = write_text_file(json_path, all.dump(2));
      if (!s.ok()) return report_failure(app, s);
    }
    return kExitOk;
  });
}
