#include "perfmem/sida/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "perfmem/sida/kernels.h"

namespace perfmem::sida {

Status check_sampling(const SamplingOptions& options, std::string_view where) {
  if (!std::isfinite(options.temperature) || options.temperature < 0)
    return input_error(where, "temperature", "a finite number >= 0 (0: greedy)", std::to_string(options.temperature));
  if (options.top_k < 0)
    return input_error(where, "top_k", "an integer >= 0 (0: no top-k filter)", std::to_string(options.top_k));
  if (!(options.top_p > 0 && options.top_p <= 1))
    return input_error(where, "top_p", "a number in (0, 1] (1: no top-p filter)", std::to_string(options.top_p));
  return Status::Ok();
}

std::vector<SamplingCandidate> sampling_candidates(const float* logits, int64_t vocab, const SamplingOptions& options) {
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  // Descending logit, lower id first on ties: a strict total order, so the result is unique.
  auto before = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (options.top_k > 0 && options.top_k < vocab) {
    // Keep the k largest and every token tied with the k-th.
    std::nth_element(order.begin(), order.begin() + (options.top_k - 1), order.end(), before);
    const float kth = logits[order[size_t(options.top_k - 1)]];
    order.erase(std::remove_if(order.begin(), order.end(), [&](int32_t t) { return logits[t] < kth; }), order.end());
  }
  std::sort(order.begin(), order.end(), before);
  // Softmax of logits / temperature over the kept tokens, in double.
  const double max_scaled = double(logits[order[0]]) / options.temperature;
  std::vector<SamplingCandidate> kept;
  kept.reserve(order.size());
  double total = 0;
  for (int32_t t : order) {
    const double p = std::exp(double(logits[t]) / options.temperature - max_scaled);
    kept.push_back({t, p});
    total += p;
  }
  // Top-p: the smallest prefix whose mass reaches top_p (a token is kept while the mass before it
  // is below top_p).
  double mass_before = 0, kept_total = 0;
  size_t n = 0;
  const bool filter = options.top_p < 1;
  for (; n < kept.size() && (n == 0 || !filter || mass_before < options.top_p); ++n) {
    kept[n].probability /= total;
    mass_before += kept[n].probability;
    kept_total += kept[n].probability;
  }
  kept.resize(n);
  for (SamplingCandidate& c : kept) c.probability /= kept_total;
  return kept;
}

int32_t TokenSampler::next(const float* logits, int64_t vocab) {
  if (options_.greedy()) return int32_t(argmax(logits, vocab));
  const std::vector<SamplingCandidate> candidates = sampling_candidates(logits, vocab, options_);
  // 53 random bits: a double uniform in [0, 1), the same on every platform.
  const double u = double(rng_() >> 11) * 0x1.0p-53;
  double cumulative = 0;
  for (const SamplingCandidate& c : candidates) {
    cumulative += c.probability;
    if (u < cumulative) return c.token;
  }
  return candidates.back().token;  // rounding left u above the last cumulative sum
}

}  // namespace perfmem::sida
