#include "perfmem/sida/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "perfmem/core/stats.h"
#include "perfmem/sida/kernels.h"

namespace perfmem::sida {
namespace {

// Scaled-dot-product attention without scaling (T5 folds it into the weights).
// q: F32 [q_len, inner] rows of one sequence; k, v: F32 [kv_len, inner]; bias: F32 [H, q_len,
// kv_len] or null; only the first `kv_valid` keys are attended. out: F32 [q_len, inner].
void attend(const float* q, const float* k, const float* v, int64_t q_len, int64_t kv_valid,
            int64_t num_heads, int64_t d_kv, const float* bias, int64_t bias_q_stride_len,
            int64_t bias_kv_len, float* out, std::vector<float>& scores) {
  const int64_t inner = num_heads * d_kv;
  scores.resize(static_cast<size_t>(kv_valid));
  for (int64_t h = 0; h < num_heads; ++h) {
    for (int64_t i = 0; i < q_len; ++i) {
      const float* qi = q + i * inner + h * d_kv;
      for (int64_t j = 0; j < kv_valid; ++j) {
        const float* kj = k + j * inner + h * d_kv;
        float s = 0.f;
        for (int64_t t = 0; t < d_kv; ++t) s += qi[t] * kj[t];
        if (bias) s += bias[(h * bias_q_stride_len + i) * bias_kv_len + j];
        scores[size_t(j)] = s;
      }
      softmax_inplace(scores.data(), kv_valid);
      float* oi = out + i * inner + h * d_kv;
      std::fill(oi, oi + d_kv, 0.f);
      for (int64_t j = 0; j < kv_valid; ++j) {
        const float* vj = v + j * inner + h * d_kv;
        const float p = scores[size_t(j)];
        for (int64_t t = 0; t < d_kv; ++t) oi[t] += p * vj[t];
      }
    }
  }
}

// F32 [H, q_len, k_len] position bias for queries at q_offset.. and keys 0..k_len.
std::vector<float> position_bias(const SwitchConfig& c, const float* table, bool bidirectional,
                                 int64_t q_offset, int64_t q_len, int64_t k_len) {
  std::vector<float> bias(static_cast<size_t>(c.num_heads * q_len * k_len));
  for (int64_t i = 0; i < q_len; ++i)
    for (int64_t j = 0; j < k_len; ++j) {
      int64_t bucket = relative_position_bucket(j - (q_offset + i), bidirectional,
                                                c.relative_attention_num_buckets,
                                                c.relative_attention_max_distance);
      for (int64_t h = 0; h < c.num_heads; ++h)
        bias[size_t((h * q_len + i) * k_len + j)] = table[bucket * c.num_heads + h];
    }
  return bias;
}

}  // namespace

Engine::Engine(const ModelWeights& model, ExpertProvider& experts, EngineOptions options)
    : model_(model), experts_(experts), options_(options) {}

Status Engine::check_requests(const std::vector<std::vector<int32_t>>& requests) const {
  if (requests.empty()) return Status(StatusCode::kInvalidInput, "no requests given");
  for (size_t r = 0; r < requests.size(); ++r) {
    if (requests[r].empty())
      return input_error("batch item " + std::to_string(r), "tokens", "at least one token id", "none");
    for (size_t t = 0; t < requests[r].size(); ++t)
      if (requests[r][t] < 0 || requests[r][t] >= model_.config().vocab_size)
        return input_error("batch item " + std::to_string(r), "token " + std::to_string(t),
                           "an id in [0, " + std::to_string(model_.config().vocab_size) + ")",
                           std::to_string(requests[r][t]));
  }
  return Status::Ok();
}

Status Engine::moe_layer(const BlockWeights& block, int64_t decode_step, const float* normed,
                         float* x, const std::vector<RoutedToken>& tokens) {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, E = c.num_experts, n = int64_t(tokens.size());
  MoeLayerVisit visit;
  visit.moe_layer = block.moe_layer;
  visit.decode_step = decode_step;
  if (n == 0) {
    if (observer_) observer_(visit);
    return Status::Ok();
  }
  // Gather the routed rows: F32 [n, d].
  std::vector<float> h(static_cast<size_t>(n * d));
  for (int64_t t = 0; t < n; ++t)
    std::memcpy(&h[size_t(t * d)], normed + tokens[size_t(t)].index * d, size_t(d) * sizeof(float));
  // Router in fp32: logits F32 [n, E].
  std::vector<float> logits(static_cast<size_t>(n * E));
  linear(h.data(), block.router, logits.data(), n, d, E);
  std::vector<float> probs = logits;
  std::vector<int32_t> choice(static_cast<size_t>(n));
  std::vector<float> top_prob(static_cast<size_t>(n));
  std::vector<uint8_t> dropped(static_cast<size_t>(n), 0);
  std::vector<int64_t> counts(static_cast<size_t>(E), 0);
  int32_t current_row = -1;
  for (int64_t t = 0; t < n; ++t) {
    float* pr = &probs[size_t(t * E)];
    softmax_inplace(pr, E);
    const int64_t e = argmax(pr, E);
    choice[size_t(t)] = int32_t(e);
    top_prob[size_t(t)] = pr[e];
    if (tokens[size_t(t)].row != current_row) {  // capacity counts restart per sequence
      current_row = tokens[size_t(t)].row;
      std::fill(counts.begin(), counts.end(), 0);
    }
    if (++counts[size_t(e)] > c.expert_capacity && options_.apply_capacity) dropped[size_t(t)] = 1;
  }

  // Experts in ascending id order; each computes its tokens as one matrix product.
  std::vector<float> xe, hidden, ye;
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t> members;
    for (int64_t t = 0; t < n; ++t)
      if (choice[size_t(t)] == e && !dropped[size_t(t)]) members.push_back(t);
    if (members.empty()) continue;
    const int64_t m = int64_t(members.size());
    xe.resize(size_t(m * d));
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(&xe[size_t(i * d)], &h[size_t(members[size_t(i)] * d)], size_t(d) * sizeof(float));
    const int32_t id = int32_t(block.moe_layer * E + e);
    PERFMEM_ASSIGN_OR_RETURN(ExpertView view, experts_.acquire(id));
    visit.experts_used.push_back(int32_t(e));
    hidden.resize(size_t(m * c.d_ff));
    ye.resize(size_t(m * d));
    Stopwatch compute;
    linear(xe.data(), view.wi, hidden.data(), m, d, c.d_ff);  // F32 [m, d_ff]
    relu_inplace(hidden.data(), m * c.d_ff);
    linear(hidden.data(), view.wo, ye.data(), m, c.d_ff, d);  // F32 [m, d]
    stats_.expert_compute_s += compute.elapsed_s();
    stats_.expert_bytes += c.expert_f32_bytes();
    ++stats_.expert_calls;
    experts_.release(view);
    for (int64_t i = 0; i < m; ++i) {
      const int64_t t = members[size_t(i)];
      float* xr = x + tokens[size_t(t)].index * d;
      const float p = top_prob[size_t(t)];
      for (int64_t k = 0; k < d; ++k) xr[k] += p * ye[size_t(i * d + k)];
    }
  }
  // Tokens over capacity pass their normed input through, scaled like an expert output.
  for (int64_t t = 0; t < n; ++t) {
    if (!dropped[size_t(t)]) continue;
    float* xr = x + tokens[size_t(t)].index * d;
    const float p = top_prob[size_t(t)];
    for (int64_t k = 0; k < d; ++k) xr[k] += p * h[size_t(t * d + k)];
  }

  if (observer_) {
    visit.rows.resize(size_t(n));
    visit.positions.resize(size_t(n));
    for (int64_t t = 0; t < n; ++t) {
      visit.rows[size_t(t)] = tokens[size_t(t)].row;
      visit.positions[size_t(t)] = tokens[size_t(t)].position;
    }
    visit.choice = std::move(choice);
    visit.dropped = std::move(dropped);
    visit.router_logits = std::move(logits);
    observer_(visit);
  }
  return Status::Ok();
}

Result<EncoderOutput> Engine::encode(const std::vector<std::vector<int32_t>>& requests) {
  PERFMEM_RETURN_IF_ERROR(check_requests(requests));
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, inner = c.inner_dim(), B = int64_t(requests.size());
  EncoderOutput out;
  out.batch = B;
  out.d_model = d;
  for (const auto& r : requests) {
    out.lengths.push_back(int64_t(r.size()));
    out.max_len = std::max(out.max_len, int64_t(r.size()));
  }
  const int64_t L = out.max_len, rows = B * L;
  std::vector<float> x(size_t(rows * d)), h(size_t(rows * d));
  std::vector<float> q(size_t(rows * inner)), k(size_t(rows * inner)), v(size_t(rows * inner)),
      ctx(size_t(rows * inner)), ff(size_t(rows * c.d_ff)), scores;
  std::vector<RoutedToken> routed;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t) {
      const bool real = t < out.lengths[size_t(b)];
      const int64_t token = real ? requests[size_t(b)][size_t(t)] : c.pad_token_id;
      std::memcpy(&x[size_t((b * L + t) * d)], model_.shared + token * d, size_t(d) * sizeof(float));
      if (real) routed.push_back({b * L + t, int32_t(b), int32_t(t)});
    }
  const std::vector<float> bias = position_bias(c, model_.encoder_relative_bias, true, 0, L, L);
  const float eps = float(c.layer_norm_epsilon);

  for (const BlockWeights& block : model_.encoder) {
    rms_norm(x.data(), block.self_attention_norm, h.data(), rows, d, eps);
    const AttentionWeights& a = block.self_attention;
    linear(h.data(), a.q, q.data(), rows, d, inner);
    linear(h.data(), a.k, k.data(), rows, d, inner);
    linear(h.data(), a.v, v.data(), rows, d, inner);
    for (int64_t b = 0; b < B; ++b)
      attend(&q[size_t(b * L * inner)], &k[size_t(b * L * inner)], &v[size_t(b * L * inner)], L,
             out.lengths[size_t(b)], c.num_heads, c.d_kv, bias.data(), L, L,
             &ctx[size_t(b * L * inner)], scores);
    linear(ctx.data(), a.o, x.data(), rows, inner, d, /*accumulate=*/true);

    rms_norm(x.data(), block.ffn_norm, h.data(), rows, d, eps);
    if (block.router) {
      PERFMEM_RETURN_IF_ERROR(moe_layer(block, -1, h.data(), x.data(), routed));
    } else {
      linear(h.data(), block.dense_wi, ff.data(), rows, d, c.d_ff);
      relu_inplace(ff.data(), rows * c.d_ff);
      linear(ff.data(), block.dense_wo, x.data(), rows, c.d_ff, d, /*accumulate=*/true);
    }
  }
  out.hidden.resize(size_t(rows * d));
  rms_norm(x.data(), model_.encoder_final_norm, out.hidden.data(), rows, d, eps);
  return out;
}

Result<Generation> Engine::generate(const std::vector<std::vector<int32_t>>& requests,
                                    const GenerateOptions& options) {
  if (options.max_new_tokens < 1)
    return input_error("generate options", "max_new_tokens", "at least 1",
                       std::to_string(options.max_new_tokens));
  PERFMEM_ASSIGN_OR_RETURN(EncoderOutput enc, encode(requests));
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, inner = c.inner_dim(), B = enc.batch, L = enc.max_len;
  const int64_t S = options.max_new_tokens, V = c.vocab_size;
  const float eps = float(c.layer_norm_epsilon);
  const size_t n_blocks = model_.decoder.size();

  // Cross-attention keys and values, computed once: F32 [B * L, inner] per block.
  std::vector<std::vector<float>> cross_k(n_blocks), cross_v(n_blocks);
  for (size_t i = 0; i < n_blocks; ++i) {
    cross_k[i].resize(size_t(B * L * inner));
    cross_v[i].resize(size_t(B * L * inner));
    linear(enc.hidden.data(), model_.decoder[i].cross_attention.k, cross_k[i].data(), B * L, d, inner);
    linear(enc.hidden.data(), model_.decoder[i].cross_attention.v, cross_v[i].data(), B * L, d, inner);
  }
  // Self-attention cache: F32 [B, S, inner] per block.
  std::vector<std::vector<float>> self_k(n_blocks, std::vector<float>(size_t(B * S * inner))),
      self_v(n_blocks, std::vector<float>(size_t(B * S * inner)));

  Generation gen;
  gen.tokens.assign(size_t(B), {});
  std::vector<int32_t> current(size_t(B), int32_t(c.decoder_start_token_id));
  std::vector<uint8_t> finished(size_t(B), 0);
  std::vector<float> x(size_t(B * d)), h(size_t(B * d)), q(size_t(B * inner)), kv(size_t(B * inner)),
      ctx(size_t(B * inner)), ff(size_t(B * c.d_ff)), logits(size_t(B * V)), scores;
  for (int64_t step = 0; step < S; ++step) {
    std::vector<RoutedToken> routed;
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(&x[size_t(b * d)], model_.shared + int64_t(current[size_t(b)]) * d, size_t(d) * sizeof(float));
      if (!finished[size_t(b)]) routed.push_back({b, int32_t(b), int32_t(step)});
    }
    const std::vector<float> bias =
        position_bias(c, model_.decoder_relative_bias, false, step, 1, step + 1);
    for (size_t i = 0; i < n_blocks; ++i) {
      const BlockWeights& block = model_.decoder[i];
      const AttentionWeights& sa = block.self_attention;
      rms_norm(x.data(), block.self_attention_norm, h.data(), B, d, eps);
      linear(h.data(), sa.q, q.data(), B, d, inner);
      linear(h.data(), sa.k, kv.data(), B, d, inner);
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(&self_k[i][size_t((b * S + step) * inner)], &kv[size_t(b * inner)], size_t(inner) * sizeof(float));
      linear(h.data(), sa.v, kv.data(), B, d, inner);
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(&self_v[i][size_t((b * S + step) * inner)], &kv[size_t(b * inner)], size_t(inner) * sizeof(float));
      for (int64_t b = 0; b < B; ++b)
        attend(&q[size_t(b * inner)], &self_k[i][size_t(b * S * inner)], &self_v[i][size_t(b * S * inner)],
               1, step + 1, c.num_heads, c.d_kv, bias.data(), 1, step + 1, &ctx[size_t(b * inner)], scores);
      linear(ctx.data(), sa.o, x.data(), B, inner, d, true);

      const AttentionWeights& ca = block.cross_attention;
      rms_norm(x.data(), block.cross_attention_norm, h.data(), B, d, eps);
      linear(h.data(), ca.q, q.data(), B, d, inner);
      for (int64_t b = 0; b < B; ++b)
        attend(&q[size_t(b * inner)], &cross_k[i][size_t(b * L * inner)], &cross_v[i][size_t(b * L * inner)],
               1, enc.lengths[size_t(b)], c.num_heads, c.d_kv, nullptr, 0, 0, &ctx[size_t(b * inner)], scores);
      linear(ctx.data(), ca.o, x.data(), B, inner, d, true);

      rms_norm(x.data(), block.ffn_norm, h.data(), B, d, eps);
      if (block.router) {
        PERFMEM_RETURN_IF_ERROR(moe_layer(block, step, h.data(), x.data(), routed));
      } else {
        linear(h.data(), block.dense_wi, ff.data(), B, d, c.d_ff);
        relu_inplace(ff.data(), B * c.d_ff);
        linear(ff.data(), block.dense_wo, x.data(), B, c.d_ff, d, true);
      }
    }
    rms_norm(x.data(), model_.decoder_final_norm, h.data(), B, d, eps);
    const float scale = 1.0f / std::sqrt(float(d));  // tied embeddings: d_model^-0.5
    for (float& value : h) value *= scale;
    linear(h.data(), model_.shared, logits.data(), B, d, V);
    if (options.keep_logits) gen.logits.push_back(logits);
    gen.steps = step + 1;
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (finished[size_t(b)]) {
        current[size_t(b)] = int32_t(c.pad_token_id);
        continue;
      }
      const int32_t next = int32_t(argmax(&logits[size_t(b * V)], V));
      gen.tokens[size_t(b)].push_back(next);
      current[size_t(b)] = next;
      if (next == c.eos_token_id) finished[size_t(b)] = 1;
      all_done = all_done && finished[size_t(b)];
    }
    if (all_done) break;
  }
  return gen;
}

}  // namespace perfmem::sida
