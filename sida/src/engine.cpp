#include "perfmem/sida/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "perfmem/core/stats.h"
#include "perfmem/sida/kernels.h"

namespace perfmem::sida {
namespace {

// Scaled-dot-product attention without scaling (T5 folds it into the weights).
// q: F32 [q_len, inner] rows of one sequence; key j of k and v (F32, inner values each) starts at
// j * kv_stride; bias: F32 [H, q_len, kv_len] or null. Keys j < kv_len with key_mask[j] != 0 (all
// of them when key_mask is null) are attended: the softmax runs over those keys only, which is
// what Hugging Face's additive mask of finfo.min gives (exp underflows to exactly 0), and gives
// a sequence the same bits whatever padding its batch adds. At least one key must be attended.
// out: F32 [q_len, inner].
void attend(const float* q, const float* k, const float* v, int64_t q_len, int64_t kv_len, int64_t kv_stride,
            const uint8_t* key_mask, int64_t num_heads, int64_t d_kv, const float* bias, int64_t bias_q_stride_len,
            int64_t bias_kv_len, float* out, std::vector<float>& scores) {
  const int64_t inner = num_heads * d_kv;
  scores.resize(static_cast<size_t>(kv_len));
  for (int64_t h = 0; h < num_heads; ++h) {
    for (int64_t i = 0; i < q_len; ++i) {
      const float* qi = q + i * inner + h * d_kv;
      int64_t n = 0;
      for (int64_t j = 0; j < kv_len; ++j) {
        if (key_mask && !key_mask[j]) continue;
        const float* kj = k + j * kv_stride + h * d_kv;
        float s = 0.f;
        for (int64_t t = 0; t < d_kv; ++t) s += qi[t] * kj[t];
        if (bias) s += bias[(h * bias_q_stride_len + i) * bias_kv_len + j];
        scores[size_t(n++)] = s;
      }
      softmax_inplace(scores.data(), n);
      float* oi = out + i * inner + h * d_kv;
      std::fill(oi, oi + d_kv, 0.f);
      n = 0;
      for (int64_t j = 0; j < kv_len; ++j) {
        if (key_mask && !key_mask[j]) continue;
        const float* vj = v + j * kv_stride + h * d_kv;
        const float p = scores[size_t(n++)];
        for (int64_t t = 0; t < d_kv; ++t) oi[t] += p * vj[t];
      }
    }
  }
}

// F32 [H, q_len, k_len] position bias for queries at q_offset.. and keys 0..k_len.
std::vector<float> position_bias(const SwitchConfig& c, const float* table, bool bidirectional, int64_t q_offset,
                                 int64_t q_len, int64_t k_len) {
  std::vector<float> bias(static_cast<size_t>(c.num_heads * q_len * k_len));
  for (int64_t i = 0; i < q_len; ++i)
    for (int64_t j = 0; j < k_len; ++j) {
      int64_t bucket = relative_position_bucket(j - (q_offset + i), bidirectional, c.relative_attention_num_buckets,
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
  const int64_t pad = model_.config().masked_pad_id();
  for (size_t r = 0; r < requests.size(); ++r) {
    if (requests[r].empty())
      return input_error("batch item " + std::to_string(r), "tokens", "at least one token id", "none");
    if (pad >= 0 && std::all_of(requests[r].begin(), requests[r].end(), [&](int32_t t) { return t == pad; }))
      return input_error(
          "batch item " + std::to_string(r), "tokens",
          "at least one id other than the pad id " + std::to_string(pad) + " (pad ids are masked out of attention)",
          "only pad ids");
    for (size_t t = 0; t < requests[r].size(); ++t)
      if (requests[r][t] < 0 || requests[r][t] >= model_.config().vocab_size)
        return input_error("batch item " + std::to_string(r), "token " + std::to_string(t),
                           "an id in [0, " + std::to_string(model_.config().vocab_size) + ")",
                           std::to_string(requests[r][t]));
  }
  return Status::Ok();
}

void Engine::route_top_k(LayerRouting* r) const {
  const int64_t E = model_.config().num_experts, k = model_.config().experts_per_token;
  const int64_t n = int64_t(r->logits.size()) / E;
  std::vector<float> probs(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  r->choice.assign(size_t(n * k), 0);
  r->weight.assign(size_t(n * k), 0.f);
  for (int64_t t = 0; t < n; ++t) {
    std::copy_n(&r->logits[size_t(t * E)], E, probs.begin());
    softmax_inplace(probs.data(), E);
    for (int64_t e = 0; e < E; ++e) order[size_t(e)] = int32_t(e);
    // The k largest, descending; equal values keep the lower id first.
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return probs[size_t(a)] > probs[size_t(b)] || (probs[size_t(a)] == probs[size_t(b)] && a < b);
    });
    float sum = 0.f;
    for (int64_t j = 0; j < k; ++j) sum += probs[size_t(order[size_t(j)])];
    if (!model_.config().decoder_only.norm_topk_prob) sum = 1.f;  // Qwen2-MoE's default: the probabilities
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = order[size_t(j)];
      r->choice[size_t(t * k + j)] = e;
      r->weight[size_t(t * k + j)] = probs[size_t(e)] / sum;
      r->uses[size_t(e)] = 1;
    }
  }
}

void Engine::route(const MoeLayerRef& layer, int64_t decode_step, const float* normed,
                   const std::vector<RoutedToken>& tokens, int32_t window_request, LayerRouting* r) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, E = c.num_experts, n = int64_t(tokens.size());
  // Gather the routed rows: F32 [n, d].
  r->h.resize(size_t(n * d));
  for (int64_t t = 0; t < n; ++t)
    std::memcpy(&r->h[size_t(t * d)], normed + tokens[size_t(t)].index * d, size_t(d) * sizeof(float));
  const bool replaced =
      replacement_ && (c.is_decoder_only() ? decode_step == 0 : layer.moe_layer < c.num_encoder_moe_layers());
  if (replaced) {  // SiDA's mode: no router, no capacity
    const int64_t k = r->k = replacement_k_;
    r->logits.assign(size_t(n * E), 0.f);
    r->choice.assign(size_t(n * k), 0);
    r->weight.assign(size_t(n * k), 0.f);
    r->dropped.assign(size_t(n), 0);
    r->uses.assign(size_t(E), 0);
    for (int64_t t = 0; t < n; ++t) {
      const RoutedToken& token = tokens[size_t(t)];
      replacement_(window_request >= 0 ? window_request : token.row, layer.moe_layer, token.position,
                   &r->choice[size_t(t * k)], &r->weight[size_t(t * k)]);
      for (int64_t j = t * k; j < (t + 1) * k; ++j) {
        PERFMEM_CHECK(r->choice[size_t(j)] >= 0 && r->choice[size_t(j)] < E, "replacement expert out of range");
        r->uses[size_t(r->choice[size_t(j)])] = 1;
      }
    }
    return;
  }
  // Router in fp32: logits F32 [n, E].
  r->logits.resize(size_t(n * E));
  if (n > 0) linear_packed(r->h.data(), *layer.router, r->logits.data(), n);
  r->dropped.assign(size_t(n), 0);
  r->uses.assign(size_t(E), 0);
  if (c.is_decoder_only()) {
    r->k = c.experts_per_token;
    return route_top_k(r);
  }
  std::vector<float> probs = r->logits;
  r->choice.assign(size_t(n), 0);
  r->weight.assign(size_t(n), 0.f);
  std::vector<int64_t> counts(static_cast<size_t>(E), 0);
  int32_t current_row = -1;
  for (int64_t t = 0; t < n; ++t) {
    float* pr = &probs[size_t(t * E)];
    softmax_inplace(pr, E);
    const int64_t e = argmax(pr, E);
    r->choice[size_t(t)] = int32_t(e);
    r->weight[size_t(t)] = pr[e];
    if (tokens[size_t(t)].row != current_row) {  // capacity counts restart per sequence
      current_row = tokens[size_t(t)].row;
      std::fill(counts.begin(), counts.end(), 0);
    }
    if (++counts[size_t(e)] > c.expert_capacity && options_.apply_capacity)
      r->dropped[size_t(t)] = 1;
    else
      r->uses[size_t(e)] = 1;
  }
}

void Engine::collect_rows(int64_t e, int64_t k, const LayerRouting& r, const std::vector<RoutedToken>& tokens, float* x,
                          int64_t d, std::vector<ExpertRow>* rows) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (r.dropped[t]) continue;
    for (size_t j = 0; j < size_t(k); ++j)
      if (r.choice[t * size_t(k) + j] == e)
        rows->push_back({&r.h[t * size_t(d)], x + tokens[t].index * d, r.weight[t * size_t(k) + j]});
  }
}

namespace {

// The phases of an expert's rows (Engine::ExpertScratch's fields passed as they are): the rows'
// inputs gathered to xe [m, d], the input product into hidden [m, expert_in_rows], the
// activation, the output product into ye [m, d], and the weighted outputs added to the rows.
template <typename Rows>
void gather_expert_inputs(const SwitchConfig& c, const Rows& rows, std::vector<float>& xe, std::vector<float>& hidden,
                          std::vector<float>& ye) {
  const int64_t d = c.d_model, m = int64_t(rows.size());
  xe.resize(size_t(m * d));
  for (int64_t i = 0; i < m; ++i) std::memcpy(&xe[size_t(i * d)], rows[size_t(i)].in, size_t(d) * sizeof(float));
  hidden.resize(size_t(m * c.expert_in_rows()));
  ye.resize(size_t(m * d));
}

void activate_expert_hidden(const SwitchConfig& c, int64_t m, std::vector<float>& hidden) {
  if (c.gated_experts()) {
    // [m, 2 * d_ff] holds gate then up per row: silu(gate) * up into the first d_ff of the row,
    // then the rows are packed to [m, d_ff].
    const int64_t in_rows = c.expert_in_rows();
    for (int64_t i = 0; i < m; ++i) {
      const float* gate = &hidden[size_t(i * in_rows)];
      const float* up = gate + c.d_ff;
      float* act = &hidden[size_t(i * c.d_ff)];
      for (int64_t f = 0; f < c.d_ff; ++f) act[f] = silu(gate[f]) * up[f];
    }
  } else {
    relu_inplace(hidden.data(), m * c.d_ff);
  }
}

// An expert matrix of `view` (its input matrix, or its output one) as a streaming product.
StreamingProduct expert_product(const ExpertView& view, bool input_matrix, const float* x, float* y, int64_t rows,
                                int64_t in, int64_t out) {
  StreamingProduct p{.x = x, .y = y, .rows = rows, .in = in, .out = out};
  if (view.wi_bf16) {
    p.w = input_matrix ? view.wi_bf16 : view.wo_bf16;
    p.type = view.half_is_f16 ? DType::kF16 : DType::kBF16;
  } else {
    p.w = input_matrix ? view.wi : view.wo;
  }
  return p;
}

}  // namespace

void Engine::run_expert_rows(const ExpertView& view, bool streaming, ExpertScratch& s) {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, m = int64_t(s.rows.size());
  gather_expert_inputs(c, s.rows, s.xe, s.hidden, s.ye);
  const int64_t in_rows = c.expert_in_rows();
  const bool bf16 = view.wi_bf16 != nullptr;
  // A product of the expert's matrix `w` (fp32 or bf16 slot) with `rows` rows.
  auto product = [&](const float* x, const float* w, const uint16_t* w_bf16, float* y, int64_t in, int64_t out) {
    if (bf16 && view.half_is_f16)
      (streaming ? linear_streaming_f16 : linear_f16)(x, w_bf16, y, m, in, out, false);
    else if (bf16)
      (streaming ? linear_streaming_bf16 : linear_bf16)(x, w_bf16, y, m, in, out, false);
    else
      (streaming ? linear_streaming : linear)(x, w, y, m, in, out, false);
  };
  Stopwatch compute;
  product(s.xe.data(), view.wi, view.wi_bf16, s.hidden.data(), d, in_rows);  // F32 [m, in_rows]
  activate_expert_hidden(c, m, s.hidden);
  product(s.hidden.data(), view.wo, view.wo_bf16, s.ye.data(), c.d_ff, d);  // F32 [m, d]
  stats_.expert_compute_s += compute.elapsed_s();
  stats_.expert_bytes += bf16 ? c.expert_f32_bytes() / 2 : c.expert_f32_bytes();
  ++stats_.expert_calls;
  add_expert_outputs(s);
}

void Engine::add_expert_outputs(const ExpertScratch& s) const {
  const int64_t d = model_.config().d_model;
  for (size_t i = 0; i < s.rows.size(); ++i) {
    const ExpertRow& row = s.rows[i];
    for (int64_t k = 0; k < d; ++k) row.out[k] += row.p * s.ye[i * size_t(d) + size_t(k)];
  }
}

void Engine::run_experts_streaming_together(const std::vector<ExpertView>& views, std::vector<ExpertScratch>& scratch) {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, in_rows = c.expert_in_rows();
  thread_local std::vector<StreamingProduct> group;
  for (ExpertScratch& s : scratch) gather_expert_inputs(c, s.rows, s.xe, s.hidden, s.ye);
  Stopwatch compute;
  group.clear();
  for (size_t e = 0; e < views.size(); ++e)
    group.push_back(expert_product(views[e], true, scratch[e].xe.data(), scratch[e].hidden.data(),
                                   int64_t(scratch[e].rows.size()), d, in_rows));
  linear_streaming_group(group.data(), group.size());
  for (ExpertScratch& s : scratch) activate_expert_hidden(c, int64_t(s.rows.size()), s.hidden);
  group.clear();
  for (size_t e = 0; e < views.size(); ++e)
    group.push_back(expert_product(views[e], false, scratch[e].hidden.data(), scratch[e].ye.data(),
                                   int64_t(scratch[e].rows.size()), c.d_ff, d));
  linear_streaming_group(group.data(), group.size());
  stats_.expert_compute_s += compute.elapsed_s();
  for (size_t e = 0; e < views.size(); ++e) {
    stats_.expert_bytes += views[e].wi_bf16 ? c.expert_f32_bytes() / 2 : c.expert_f32_bytes();
    ++stats_.expert_calls;
    add_expert_outputs(scratch[e]);
  }
}

void Engine::finish_moe_layer(const MoeLayerRef& layer, int64_t decode_step, LayerRouting& r,
                              const std::vector<RoutedToken>& tokens, float* x, int32_t window_request) {
  const int64_t d = model_.config().d_model, n = int64_t(tokens.size());
  // Tokens over capacity pass their normed input through, scaled like an expert output.
  for (int64_t t = 0; t < n; ++t) {
    if (!r.dropped[size_t(t)]) continue;
    float* xr = x + tokens[size_t(t)].index * d;
    const float p = r.weight[size_t(t)];  // dropping is Switch's only: one choice per token
    for (int64_t k = 0; k < d; ++k) xr[k] += p * r.h[size_t(t * d + k)];
  }
  if (!observer_) return;
  MoeLayerVisit visit;
  visit.moe_layer = layer.moe_layer;
  visit.decode_step = decode_step;
  visit.experts_per_token = r.k;
  visit.window_request = window_request;
  for (size_t e = 0; e < r.uses.size(); ++e)
    if (r.uses[e]) visit.experts_used.push_back(int32_t(e));
  if (n > 0) {
    visit.rows.resize(size_t(n));
    visit.positions.resize(size_t(n));
    for (int64_t t = 0; t < n; ++t) {
      visit.rows[size_t(t)] = tokens[size_t(t)].row;
      visit.positions[size_t(t)] = tokens[size_t(t)].position;
    }
    visit.choice = std::move(r.choice);
    visit.dropped = std::move(r.dropped);
    visit.router_logits = std::move(r.logits);
  }
  observer_(visit);
}

Status Engine::moe_layer(const MoeLayerRef& layer, int64_t decode_step, const float* normed, float* x,
                         const std::vector<RoutedToken>& tokens) {
  LayerRouting routing;
  route(layer, decode_step, normed, tokens, -1, &routing);
  // Experts in ascending id order; each computes its tokens as one matrix product.
  ExpertScratch scratch;
  const int64_t E = model_.config().num_experts;
  for (int64_t e = 0; e < E; ++e) {
    if (!routing.uses[size_t(e)]) continue;
    PERFMEM_ASSIGN_OR_RETURN(ExpertView view, experts_.acquire(int32_t(layer.moe_layer * E + e)));
    scratch.rows.clear();
    collect_rows(e, routing.k, routing, tokens, x, model_.config().d_model, &scratch.rows);
    run_expert_rows(view, /*streaming=*/false, scratch);
    experts_.release(view);
  }
  finish_moe_layer(layer, decode_step, routing, tokens, x, -1);
  return Status::Ok();
}

// The encoder's activations for a batch of requests padded to the longest.
struct Engine::EncoderState {
  EncoderOutput out;
  std::vector<float> x, h, q, k, v, ctx, ff, scores, bias;
  std::vector<RoutedToken> routed;
  int64_t rows = 0;
};

Engine::EncoderState Engine::start_encoder(const std::vector<std::vector<int32_t>>& requests) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, inner = c.inner_dim(), B = int64_t(requests.size());
  EncoderState s;
  s.out.batch = B;
  s.out.d_model = d;
  for (const auto& r : requests) {
    s.out.lengths.push_back(int64_t(r.size()));
    s.out.max_len = std::max(s.out.max_len, int64_t(r.size()));
  }
  const int64_t L = s.out.max_len;
  s.rows = B * L;
  s.out.key_mask.assign(size_t(B * L), 0);
  s.x.resize(size_t(s.rows * d));
  s.h.resize(size_t(s.rows * d));
  for (auto* buf : {&s.q, &s.k, &s.v, &s.ctx}) buf->resize(size_t(s.rows * inner));
  s.ff.resize(size_t(s.rows * c.d_ff));
  const int64_t masked_pad = c.masked_pad_id();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t) {
      const bool real = t < s.out.lengths[size_t(b)];
      const int64_t token = real ? requests[size_t(b)][size_t(t)] : c.pad_token_id;
      std::memcpy(&s.x[size_t((b * L + t) * d)], model_.shared + token * d, size_t(d) * sizeof(float));
      // Hugging Face routes a pad id inside a request (and counts it against capacity) but
      // masks it as a key; batch padding is neither routed nor attended.
      if (real) s.routed.push_back({b * L + t, int32_t(b), int32_t(t)});
      s.out.key_mask[size_t(b * L + t)] = real && token != masked_pad;
    }
  s.bias = position_bias(c, model_.encoder_relative_bias, true, 0, L, L);
  return s;
}

void Engine::encoder_attention(const BlockWeights& block, EncoderState& s) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, inner = c.inner_dim(), L = s.out.max_len, rows = s.rows;
  const float eps = float(c.layer_norm_epsilon);
  rms_norm(s.x.data(), block.self_attention_norm, s.h.data(), rows, d, eps);
  const AttentionWeights& a = block.self_attention;
  linear_packed(s.h.data(), *a.q, s.q.data(), rows);
  linear_packed(s.h.data(), *a.k, s.k.data(), rows);
  linear_packed(s.h.data(), *a.v, s.v.data(), rows);
  for (int64_t b = 0; b < s.out.batch; ++b)
    attend(&s.q[size_t(b * L * inner)], &s.k[size_t(b * L * inner)], &s.v[size_t(b * L * inner)], L,
           s.out.lengths[size_t(b)], inner, &s.out.key_mask[size_t(b * L)], c.num_heads, c.d_kv, s.bias.data(), L, L,
           &s.ctx[size_t(b * L * inner)], s.scores);
  linear_packed(s.ctx.data(), *a.o, s.x.data(), rows, /*accumulate=*/true);
  rms_norm(s.x.data(), block.ffn_norm, s.h.data(), rows, d, eps);
}

void Engine::dense_ffn(const BlockWeights& block, EncoderState& s) const {
  const SwitchConfig& c = model_.config();
  linear_packed(s.h.data(), *block.dense_wi, s.ff.data(), s.rows);
  relu_inplace(s.ff.data(), s.rows * c.d_ff);
  linear_packed(s.ff.data(), *block.dense_wo, s.x.data(), s.rows, /*accumulate=*/true);
}

EncoderOutput Engine::finish_encoder(EncoderState& s) const {
  const SwitchConfig& c = model_.config();
  s.out.hidden.resize(size_t(s.rows * c.d_model));
  rms_norm(s.x.data(), model_.encoder_final_norm, s.out.hidden.data(), s.rows, c.d_model, float(c.layer_norm_epsilon));
  return std::move(s.out);
}

namespace {
Status no_encoder_error(const ModelWeights& model) {
  return unsupported_error(model.dir() + "/config.json", "key \"model_type\"",
                           std::string("\"") + model_family_name(model.config().family) +
                               "\": a decoder-only model has no encoder (generate instead)");
}
}  // namespace

Result<EncoderOutput> Engine::encode(const std::vector<std::vector<int32_t>>& requests) {
  if (model_.config().is_decoder_only()) return no_encoder_error(model_);
  PERFMEM_RETURN_IF_ERROR(check_requests(requests));
  EncoderState state = start_encoder(requests);
  for (const BlockWeights& block : model_.encoder) {
    encoder_attention(block, state);
    if (block.router)
      PERFMEM_RETURN_IF_ERROR(moe_layer(moe_of(block), -1, state.h.data(), state.x.data(), state.routed));
    else
      dense_ffn(block, state);
  }
  return finish_encoder(state);
}

Status Engine::window_moe_layer(const MoeLayerRef& layer, int64_t decode_step,
                                const std::vector<WindowMember>& members) {
  const SwitchConfig& c = model_.config();
  const int64_t E = c.num_experts, d = c.d_model;
  std::vector<LayerRouting> routings(members.size());
  for (size_t i = 0; i < members.size(); ++i)
    route(layer, decode_step, members[i].normed, *members[i].tokens, members[i].request, &routings[i]);
  // Whether every request sends each expert at most kLinearStreamingMaxRows rows (a decoding
  // step: one token per request), so that every expert's rows take the streaming kernel.
  auto all_rows_stream = [&] {
    std::vector<int64_t> rows(static_cast<size_t>(E));
    for (const LayerRouting& r : routings) {
      std::fill(rows.begin(), rows.end(), 0);
      for (size_t t = 0; t < r.dropped.size(); ++t)
        for (size_t j = 0; j < size_t(r.k) && !r.dropped[t]; ++j)
          if (++rows[size_t(r.choice[t * size_t(r.k) + j])] > kLinearStreamingMaxRows) return false;
    }
    return true;
  };
  if (experts_.holds_every_expert() && all_rows_stream()) {
    // Nothing is ever evicted, so holding the layer's experts together changes no residency
    // decision: the same experts are acquired in the same order, then computed as two parallel
    // loops instead of two per expert (a decoding step's products are short; each loop ends with
    // a wait for the slower thread).
    std::vector<ExpertView> views;
    std::vector<ExpertScratch> together;
    Status status = Status::Ok();
    for (int64_t e = 0; e < E && status.ok(); ++e) {
      bool needed = false;
      for (const LayerRouting& r : routings) needed = needed || r.uses[size_t(e)];
      if (!needed) continue;
      Result<ExpertView> view = experts_.acquire(int32_t(layer.moe_layer * E + e));
      if (!view.ok()) {
        status = view.status();
        break;
      }
      views.push_back(*view);
      together.emplace_back();
      for (size_t i = 0; i < members.size(); ++i)
        if (routings[i].uses[size_t(e)])
          collect_rows(e, routings[i].k, routings[i], *members[i].tokens, members[i].x, d, &together.back().rows);
    }
    if (status.ok()) run_experts_streaming_together(views, together);
    for (const ExpertView& view : views) experts_.release(view);
    PERFMEM_RETURN_IF_ERROR(status);
    for (size_t i = 0; i < members.size(); ++i)
      finish_moe_layer(layer, decode_step, routings[i], *members[i].tokens, members[i].x, members[i].request);
    return Status::Ok();
  }
  ExpertScratch scratch, alone;
  // Each expert once per layer: every request routed to it uses it before it is released.
  // Requests sending it at most kLinearStreamingMaxRows tokens (nearly all) share one pass over
  // its weights through the streaming kernel, which is what linear() runs for them in batch 1
  // and gives each row the same bits whatever rows it is merged with; a request with more
  // tokens runs its own product, exactly as in batch 1.
  for (int64_t e = 0; e < E; ++e) {
    bool needed = false;
    for (const LayerRouting& r : routings) needed = needed || r.uses[size_t(e)];
    if (!needed) continue;
    PERFMEM_ASSIGN_OR_RETURN(ExpertView view, experts_.acquire(int32_t(layer.moe_layer * E + e)));
    scratch.rows.clear();
    for (size_t i = 0; i < members.size(); ++i) {
      if (!routings[i].uses[size_t(e)]) continue;
      const size_t first = scratch.rows.size();
      collect_rows(e, routings[i].k, routings[i], *members[i].tokens, members[i].x, d, &scratch.rows);
      if (int64_t(scratch.rows.size() - first) <= kLinearStreamingMaxRows) continue;
      alone.rows.assign(scratch.rows.begin() + std::ptrdiff_t(first), scratch.rows.end());
      scratch.rows.resize(first);
      run_expert_rows(view, /*streaming=*/false, alone);
    }
    if (!scratch.rows.empty()) run_expert_rows(view, /*streaming=*/true, scratch);
    experts_.release(view);
  }
  for (size_t i = 0; i < members.size(); ++i)
    finish_moe_layer(layer, decode_step, routings[i], *members[i].tokens, members[i].x, members[i].request);
  return Status::Ok();
}

Result<std::vector<EncoderOutput>> Engine::encode_window(const std::vector<std::vector<int32_t>>& requests) {
  if (model_.config().is_decoder_only()) return no_encoder_error(model_);
  PERFMEM_RETURN_IF_ERROR(check_requests(requests));
  std::vector<EncoderState> states;
  states.reserve(requests.size());
  for (const auto& r : requests) states.push_back(start_encoder({r}));
  std::vector<WindowMember> members;
  for (EncoderState& s : states) members.push_back({s.h.data(), s.x.data(), &s.routed, int32_t(members.size())});
  for (const BlockWeights& block : model_.encoder) {
    for (EncoderState& s : states) encoder_attention(block, s);
    if (block.router) {
      PERFMEM_RETURN_IF_ERROR(window_moe_layer(moe_of(block), -1, members));
    } else {
      for (EncoderState& s : states) dense_ffn(block, s);
    }
  }
  std::vector<EncoderOutput> outputs;
  for (EncoderState& s : states) outputs.push_back(finish_encoder(s));
  return outputs;
}

// Decoding a batch: the encoder's output, the caches and the tokens so far.
struct Engine::DecoderState {
  EncoderOutput enc;
  int64_t max_steps = 0;
  bool keep_logits = false;
  bool done = false;
  std::vector<std::vector<float>> cross_k, cross_v;  // F32 [B * L, inner] per block
  // F32 [steps so far, B, inner] per block: grows by one step at a time, so a large
  // max_new_tokens costs nothing until tokens are generated.
  std::vector<std::vector<float>> self_k, self_v;
  std::vector<int32_t> current;
  std::vector<uint8_t> finished;
  std::vector<TokenSampler> samplers;  // one per row, each seeded alike (a row samples as alone)
  Generation gen;
  std::vector<float> x, h, q, kv, ctx, ff, logits, scores, bias;
  std::vector<RoutedToken> routed;
};

Engine::DecoderState Engine::start_decoder(EncoderOutput enc, const GenerateOptions& options) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, inner = c.inner_dim(), B = enc.batch, L = enc.max_len;
  const size_t n_blocks = model_.decoder.size();
  DecoderState s;
  s.enc = std::move(enc);
  s.max_steps = options.max_new_tokens;
  s.keep_logits = options.keep_logits;
  // Cross-attention keys and values, computed once.
  s.cross_k.resize(n_blocks);
  s.cross_v.resize(n_blocks);
  for (size_t i = 0; i < n_blocks; ++i) {
    s.cross_k[i].resize(size_t(B * L * inner));
    s.cross_v[i].resize(size_t(B * L * inner));
    linear_packed(s.enc.hidden.data(), *model_.decoder[i].cross_attention.k, s.cross_k[i].data(), B * L);
    linear_packed(s.enc.hidden.data(), *model_.decoder[i].cross_attention.v, s.cross_v[i].data(), B * L);
  }
  s.self_k.assign(n_blocks, {});
  s.self_v.assign(n_blocks, {});
  s.gen.tokens.assign(size_t(B), {});
  if (options.keep_encoder) s.gen.encoder = s.enc;
  s.current.assign(size_t(B), int32_t(c.decoder_start_token_id));
  s.finished.assign(size_t(B), 0);
  s.samplers.assign(size_t(B), TokenSampler(options.sampling));
  for (auto* buf : {&s.x, &s.h}) buf->resize(size_t(B * d));
  for (auto* buf : {&s.q, &s.kv, &s.ctx}) buf->resize(size_t(B * inner));
  s.ff.resize(size_t(B * c.d_ff));
  s.logits.resize(size_t(B * c.vocab_size));
  return s;
}

void Engine::begin_decoder_step(DecoderState& s, int64_t step) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, B = s.enc.batch;
  s.routed.clear();
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(&s.x[size_t(b * d)], model_.shared + int64_t(s.current[size_t(b)]) * d, size_t(d) * sizeof(float));
    if (!s.finished[size_t(b)]) s.routed.push_back({b, int32_t(b), int32_t(step)});
  }
  s.bias = position_bias(c, model_.decoder_relative_bias, false, step, 1, step + 1);
}

void Engine::decoder_attention(size_t i, DecoderState& s, int64_t step) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, inner = c.inner_dim(), B = s.enc.batch, L = s.enc.max_len;
  const float eps = float(c.layer_norm_epsilon);
  const BlockWeights& block = model_.decoder[i];
  const AttentionWeights& sa = block.self_attention;
  rms_norm(s.x.data(), block.self_attention_norm, s.h.data(), B, d, eps);
  linear_packed(s.h.data(), *sa.q, s.q.data(), B);
  // This step's keys and values append one [B, inner] slab to the caches.
  linear_packed(s.h.data(), *sa.k, s.kv.data(), B);
  s.self_k[i].insert(s.self_k[i].end(), s.kv.begin(), s.kv.begin() + std::ptrdiff_t(B * inner));
  linear_packed(s.h.data(), *sa.v, s.kv.data(), B);
  s.self_v[i].insert(s.self_v[i].end(), s.kv.begin(), s.kv.begin() + std::ptrdiff_t(B * inner));
  for (int64_t b = 0; b < B; ++b)
    attend(&s.q[size_t(b * inner)], &s.self_k[i][size_t(b * inner)], &s.self_v[i][size_t(b * inner)], 1, step + 1,
           B * inner, nullptr, c.num_heads, c.d_kv, s.bias.data(), 1, step + 1, &s.ctx[size_t(b * inner)], s.scores);
  linear_packed(s.ctx.data(), *sa.o, s.x.data(), B, true);

  const AttentionWeights& ca = block.cross_attention;
  rms_norm(s.x.data(), block.cross_attention_norm, s.h.data(), B, d, eps);
  linear_packed(s.h.data(), *ca.q, s.q.data(), B);
  for (int64_t b = 0; b < B; ++b)
    attend(&s.q[size_t(b * inner)], &s.cross_k[i][size_t(b * L * inner)], &s.cross_v[i][size_t(b * L * inner)], 1,
           s.enc.lengths[size_t(b)], inner, &s.enc.key_mask[size_t(b * L)], c.num_heads, c.d_kv, nullptr, 0, 0,
           &s.ctx[size_t(b * inner)], s.scores);
  linear_packed(s.ctx.data(), *ca.o, s.x.data(), B, true);
  rms_norm(s.x.data(), block.ffn_norm, s.h.data(), B, d, eps);
}

void Engine::decoder_dense_ffn(const BlockWeights& block, DecoderState& s) const {
  const SwitchConfig& c = model_.config();
  const int64_t B = s.enc.batch;
  linear_packed(s.h.data(), *block.dense_wi, s.ff.data(), B);
  relu_inplace(s.ff.data(), B * c.d_ff);
  linear_packed(s.ff.data(), *block.dense_wo, s.x.data(), B, true);
}

void Engine::end_decoder_step(DecoderState& s, int64_t step) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, B = s.enc.batch, V = c.vocab_size;
  rms_norm(s.x.data(), model_.decoder_final_norm, s.h.data(), B, d, float(c.layer_norm_epsilon));
  const float scale = 1.0f / std::sqrt(float(d));  // tied embeddings: d_model^-0.5
  for (float& value : s.h) value *= scale;
  linear(s.h.data(), model_.shared, s.logits.data(), B, d, V);
  if (s.keep_logits) s.gen.logits.push_back(s.logits);
  s.gen.steps = step + 1;
  bool all_done = true;
  for (int64_t b = 0; b < B; ++b) {
    if (s.finished[size_t(b)]) {
      s.current[size_t(b)] = int32_t(c.pad_token_id);
      continue;
    }
    const int32_t next = s.samplers[size_t(b)].next(&s.logits[size_t(b * V)], V);
    s.gen.tokens[size_t(b)].push_back(next);
    s.current[size_t(b)] = next;
    if (c.is_generation_eos(next)) s.finished[size_t(b)] = 1;
    all_done = all_done && s.finished[size_t(b)];
  }
  s.done = all_done || step + 1 >= s.max_steps;
}

Status Engine::check_generate(const GenerateOptions& options) const {
  if (options.max_new_tokens < 1)
    return input_error("generate options", "max_new_tokens", "at least 1", std::to_string(options.max_new_tokens));
  PERFMEM_RETURN_IF_ERROR(check_sampling(options.sampling, "generate options"));
  if (!model_.config().is_decoder_only() && model_.config().decoder_start_token_id < 0)
    return input_error(model_.dir() + "/config.json", "key \"decoder_start_token_id\"",
                       "a decoder start token for generation (here, in generation_config.json, or a "
                       "bos_token_id), as Hugging Face requires",
                       "none");
  return Status::Ok();
}

Result<Generation> Engine::generate(const std::vector<std::vector<int32_t>>& requests, const GenerateOptions& options) {
  PERFMEM_RETURN_IF_ERROR(check_generate(options));
  if (model_.config().is_decoder_only()) {
    // Each sequence alone (its own positions and cache); merged into one Generation.
    PERFMEM_ASSIGN_OR_RETURN(
        std::vector<Generation> each,
        generate_decoder_only(requests, std::vector<GenerateOptions>(requests.size(), options), nullptr));
    Generation merged;
    const int64_t V = model_.config().vocab_size, B = int64_t(each.size());
    for (const Generation& g : each) merged.steps = std::max(merged.steps, g.steps);
    if (options.keep_logits)  // rows of sequences that ended earlier stay zero
      merged.logits.assign(size_t(merged.steps), std::vector<float>(size_t(B * V), 0.f));
    for (int64_t b = 0; b < B; ++b) {
      merged.tokens.push_back(std::move(each[size_t(b)].tokens[0]));
      for (size_t t = 0; t < each[size_t(b)].logits.size(); ++t)
        std::copy(each[size_t(b)].logits[t].begin(), each[size_t(b)].logits[t].end(),
                  merged.logits[t].begin() + std::ptrdiff_t(b * V));
    }
    return merged;
  }
  PERFMEM_ASSIGN_OR_RETURN(EncoderOutput enc, encode(requests));
  DecoderState s = start_decoder(std::move(enc), options);
  for (int64_t step = 0; !s.done; ++step) {
    begin_decoder_step(s, step);
    for (size_t i = 0; i < model_.decoder.size(); ++i) {
      const BlockWeights& block = model_.decoder[i];
      decoder_attention(i, s, step);
      if (block.router) {
        PERFMEM_RETURN_IF_ERROR(moe_layer(moe_of(block), step, s.h.data(), s.x.data(), s.routed));
      } else {
        decoder_dense_ffn(block, s);
      }
    }
    end_decoder_step(s, step);
  }
  return std::move(s.gen);
}

Result<std::vector<Generation>> Engine::generate_window(const std::vector<std::vector<int32_t>>& requests,
                                                        const GenerateOptions& options) {
  return generate_window(requests, std::vector<GenerateOptions>(requests.size(), options), nullptr);
}

Result<std::vector<Generation>> Engine::generate_window(const std::vector<std::vector<int32_t>>& requests,
                                                        const std::vector<GenerateOptions>& options,
                                                        const TokenSink& on_token) {
  if (options.size() != requests.size())
    return input_error("generate_window", "options", std::to_string(requests.size()) + " (one per request)",
                       std::to_string(options.size()));
  for (const GenerateOptions& o : options) PERFMEM_RETURN_IF_ERROR(check_generate(o));
  if (model_.config().is_decoder_only()) return generate_decoder_only(requests, options, on_token);
  PERFMEM_ASSIGN_OR_RETURN(std::vector<EncoderOutput> encs, encode_window(requests));
  std::vector<DecoderState> states;
  states.reserve(encs.size());
  for (size_t r = 0; r < encs.size(); ++r) states.push_back(start_decoder(std::move(encs[r]), options[r]));
  // Step by step, the requests still generating advance together through the decoder.
  for (int64_t step = 0;; ++step) {
    std::vector<DecoderState*> active;
    for (DecoderState& s : states)
      if (!s.done) active.push_back(&s);
    if (active.empty()) break;
    std::vector<WindowMember> members;
    for (DecoderState* s : active) {
      begin_decoder_step(*s, step);
      members.push_back({s->h.data(), s->x.data(), &s->routed, int32_t(s - states.data())});
    }
    for (size_t i = 0; i < model_.decoder.size(); ++i) {
      const BlockWeights& block = model_.decoder[i];
      for (DecoderState* s : active) decoder_attention(i, *s, step);
      if (block.router) {
        PERFMEM_RETURN_IF_ERROR(window_moe_layer(moe_of(block), step, members));
      } else {
        for (DecoderState* s : active) decoder_dense_ffn(block, *s);
      }
    }
    for (DecoderState* s : active) {
      const size_t before = s->gen.tokens[0].size();
      end_decoder_step(*s, step);
      if (on_token && s->gen.tokens[0].size() > before && !on_token(size_t(s - states.data()), s->gen.tokens[0].back()))
        s->done = true;
    }
  }
  std::vector<Generation> out;
  for (DecoderState& s : states) out.push_back(std::move(s.gen));
  return out;
}

}  // namespace perfmem::sida
