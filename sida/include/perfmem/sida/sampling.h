// Choosing the next token from a step's logits: greedy (the default) or sampled with temperature,
// top-k and top-p (nucleus), as Hugging Face's generate() filters them, from a seeded generator.
//
//   perfmem::sida::SamplingOptions s{.temperature = 0.8, .top_k = 40, .top_p = 0.95, .seed = 7};
//   PERFMEM_RETURN_IF_ERROR(perfmem::sida::check_sampling(s, "request"));
//   perfmem::sida::TokenSampler sampler(s);
//   int32_t next = sampler.next(logits, vocab);   // one call per decoding step
//
// Determinism: every sequence owns one TokenSampler, seeded from its SamplingOptions::seed alone
// (std::mt19937_64, whose output the C++ standard fixes), and draws exactly one number per step
// it generates. So a sequence's samples depend only on its logits and its seed: not on the other
// requests of a batch or window, the residency policy, the budget or the execution (whose logits
// are bit-identical in exact mode). Torch's generator is another one, so the ids differ from
// transformers' for the same seed; the distribution is the same.
//
// The distribution (sampling_candidates): logits / temperature; top-k keeps the k largest (and
// any tied with the k-th, as transformers' TopKLogitsWarper does); top-p keeps the most probable
// tokens, in descending order, up to and including the first whose cumulative probability
// reaches top_p (at least one; transformers' TopPLogitsWarper); the kept tokens' softmax.
// temperature 0 is greedy: the first maximum, top_k and top_p ignored, no number drawn.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem::sida {

struct SamplingOptions {
  double temperature = 0;  // 0: greedy; > 0: sample from softmax(logits / temperature)
  int64_t top_k = 0;       // 0: no top-k filter
  double top_p = 1;        // in (0, 1]; 1: no top-p filter
  uint64_t seed = 0;
  bool greedy() const { return temperature == 0; }
};

// temperature finite and >= 0, top_k >= 0, top_p in (0, 1]; errors name `where` and the field.
Status check_sampling(const SamplingOptions& options, std::string_view where);

// A token kept by the filters and its probability (the kept tokens' probabilities sum to 1).
struct SamplingCandidate {
  int32_t token;
  double probability;
};
// The kept tokens in descending probability (lower id first on ties). Requires !greedy().
std::vector<SamplingCandidate> sampling_candidates(const float* logits, int64_t vocab, const SamplingOptions& options);

class TokenSampler {
 public:
  explicit TokenSampler(const SamplingOptions& options = {}) : options_(options), rng_(options.seed) {}
  // Greedy: argmax (first on ties). Else one uniform draw u in [0, 1), the first candidate whose
  // cumulative probability exceeds u.
  int32_t next(const float* logits, int64_t vocab);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace perfmem::sida
