// The decoder-only families' per-layer compute (Mixtral, Qwen2-MoE): RMSNorm, rotary positions,
// grouped-query attention over a KV cache, then the shared MoE layer of engine.cpp (and
// Qwen2-MoE's dense MLPs and shared expert, resident).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "perfmem/sida/engine.h"
#include "perfmem/sida/kernels.h"

namespace perfmem::sida {
namespace {

// y (+)= x wᵀ over a matrix kept in its stored 16-bit type (HalfMatrix.data set).
void linear_half(const float* x, const HalfMatrix& w, float* y, int64_t rows, int64_t in, int64_t out,
                 bool accumulate = false) {
  if (w.dtype == DType::kF16)
    linear_f16(x, w.data, y, rows, in, out, accumulate);
  else
    linear_bf16(x, w.data, y, rows, in, out, accumulate);
}

// Hugging Face's rotary tables for the rows' positions (MixtralRotaryEmbedding, fp32):
// inv_freq[j] = 1 / theta^(2j / hd), angle = position * inv_freq[j]; cos and sin [n, hd / 2]
// (the second half of each head repeats the first).
void rotary_tables(double theta, int64_t hd, const std::vector<int64_t>& positions, std::vector<float>* cos,
                   std::vector<float>* sin) {
  const int64_t half = hd / 2, n = int64_t(positions.size());
  cos->resize(size_t(n * half));
  sin->resize(size_t(n * half));
  for (int64_t j = 0; j < half; ++j) {
    const float inv_freq = 1.0f / std::pow(float(theta), float(2 * j) / float(hd));
    for (int64_t i = 0; i < n; ++i) {
      const float angle = float(positions[size_t(i)]) * inv_freq;
      (*cos)[size_t(i * half + j)] = std::cos(angle);
      (*sin)[size_t(i * half + j)] = std::sin(angle);
    }
  }
}

// x [n, heads * hd] in place: x * cos + rotate_half(x) * sin per head, rotate_half(x) = (-x2, x1).
void apply_rotary(float* x, int64_t n, int64_t heads, int64_t hd, const std::vector<float>& cos,
                  const std::vector<float>& sin) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (i * heads + h) * hd;
      const float* c = &cos[size_t(i * half)];
      const float* s = &sin[size_t(i * half)];
      for (int64_t j = 0; j < half; ++j) {
        const float a = v[j], b = v[j + half];
        v[j] = a * c[j] - b * s[j];
        v[j + half] = b * c[j] + a * s[j];
      }
    }
}

// Causal grouped-query attention of n query rows at positions first.. over the cache's keys
// 0..first+i, or with a sliding window (> 0) over first+i-window..first+i, as transformers 4.40
// masks them (per K/V head g, k_heads[g] and v_heads[g] are F32 [positions, hd], keys already
// rotated); query head h reads K/V head h / (heads / kv_heads). Scores are q·k / sqrt(hd), softmax
// in fp32. `masked_keys` (null: none) flags cache positions no query attends (the prompt's pad
// ids, as generate() masks them); a row left with no key to attend (a leading pad) gets zeros,
// and no other row reads it. out: F32 [n, heads * hd]. The (row, K/V head) pairs are independent and split over the
// product threads; each takes the group of query heads that share its K/V head together, so each
// key and value row is read once for the group, while a decoding step's weights streamed since
// the last step have pushed the cache out of the CPU's caches. Every score and output element is
// computed as for one head alone (lane_dot, then keys in order), whichever thread runs it.
void causal_gqa(const float* q, const std::vector<float>* k_heads, const std::vector<float>* v_heads, int64_t n,
                int64_t first, int64_t heads, int64_t kv_heads, int64_t hd, int64_t window, const uint8_t* masked_keys,
                float* out) {
  const int64_t group = heads / kv_heads;
  const float scale = float(std::sqrt(double(hd)));
  parallel_chunks(n * kv_heads, /*chunk=*/1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;  // [group, keys]
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t i = pair / kv_heads, g = pair % kv_heads;
      const int64_t position = first + i;
      const int64_t oldest = window > 0 ? std::max<int64_t>(0, position - window) : 0;
      const int64_t keys = position + 1 - oldest;
      scores.resize(size_t(group * keys));
      const float* qi = q + (i * heads + g * group) * hd;  // the group's query heads, consecutive
      const float *k = k_heads[g].data() + oldest * hd, *v = v_heads[g].data() + oldest * hd;
      for (int64_t j = 0; j < keys; ++j) {
        const float* kj = k + j * hd;
        for (int64_t h = 0; h < group; ++h) scores[size_t(h * keys + j)] = lane_dot(qi + h * hd, kj, hd) / scale;
      }
      float* oi = out + (i * heads + g * group) * hd;
      std::fill(oi, oi + group * hd, 0.f);
      if (masked_keys) {  // a masked key's weight is exactly 0, as exp(finfo.min - max) is
        int64_t attended = 0;
        for (int64_t j = 0; j < keys; ++j)
          if (masked_keys[oldest + j])
            for (int64_t h = 0; h < group; ++h) scores[size_t(h * keys + j)] = -INFINITY;
          else
            ++attended;
        if (attended == 0) continue;
      }
      for (int64_t h = 0; h < group; ++h) softmax_inplace(&scores[size_t(h * keys)], keys);
      for (int64_t j = 0; j < keys; ++j) {
        const float* vj = v + j * hd;
        for (int64_t h = 0; h < group; ++h) {
          const float p = scores[size_t(h * keys + j)];
          float* oh = oi + h * hd;
          for (int64_t t = 0; t < hd; ++t) oh[t] += p * vj[t];
        }
      }
    }
  });
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < width; ++i) y[r * width + i] += bias[i];
}

// y[r] += scale[r] * down(silu(gate h[r]) * up h[r]) for n rows (scale null: 1).
void add_gated_mlp(const GatedMlpWeights& w, const float* h, const float* scale, int64_t n, float* y,
                   std::vector<float>& gate, std::vector<float>& up, std::vector<float>& out) {
  const int64_t ff = w.gate->out(), d = w.down->out();
  gate.resize(size_t(n * ff));
  up.resize(size_t(n * ff));
  out.resize(size_t(n * d));
  linear_packed(h, *w.gate, gate.data(), n);
  linear_packed(h, *w.up, up.data(), n);
  for (int64_t i = 0; i < n * ff; ++i) gate[size_t(i)] = silu(gate[size_t(i)]) * up[size_t(i)];
  linear_packed(gate.data(), *w.down, out.data(), n);
  for (int64_t r = 0; r < n; ++r) {
    const float sr = scale ? scale[r] : 1.f;
    for (int64_t i = 0; i < d; ++i) y[r * d + i] += scale ? sr * out[size_t(r * d + i)] : out[size_t(r * d + i)];
  }
}

}  // namespace

// One sequence of a decoder-only model: the tokens of the current step, its KV cache, its output.
struct Engine::SequenceState {
  int64_t max_steps = 0;
  bool keep_logits = false;
  bool done = false;
  int64_t cached = 0;  // positions in the cache before this step
  // The prompt's pad ids (masked_pad_id), as generate() treats them: masked as keys (per cache
  // position; empty when the prompt has none), and not counted in the rotary positions — a
  // token's position is the number of unmasked tokens before it; a pad's is 1.
  std::vector<uint8_t> masked_keys;
  int64_t unmasked = 0;            // unmasked tokens in the cache before this step
  std::vector<int64_t> positions;  // this step's rotary positions
  std::vector<int32_t> step_ids;   // this step's tokens: the prompt, then the last generated one
  // Per layer and K/V head (layer * kv_heads + head): F32 [positions, hd]. A head's keys lie in
  // one sequential run, which a decoding step reads while the weights streamed since the last
  // step have pushed the cache out of the CPU's caches.
  std::vector<std::vector<float>> k_cache, v_cache;
  std::vector<float> x, h, q, k, v, ctx, cos, sin, last, logits, mlp_gate, mlp_up, mlp_out, shared_scale;
  std::vector<RoutedToken> routed;
  TokenSampler sampler;
  Generation gen;
};

Engine::SequenceState Engine::start_sequence(const std::vector<int32_t>& prompt, const GenerateOptions& options) const {
  SequenceState s;
  s.max_steps = options.max_new_tokens;
  s.keep_logits = options.keep_logits;
  s.sampler = TokenSampler(options.sampling);
  s.step_ids = prompt;
  const int64_t pad = model_.config().masked_pad_id();
  if (pad >= 0 && std::find(prompt.begin(), prompt.end(), int32_t(pad)) != prompt.end())
    for (int32_t id : prompt) s.masked_keys.push_back(id == pad);
  const size_t kv_heads = size_t(model_.config().decoder_only.num_key_value_heads);
  s.k_cache.assign(model_.layers.size() * kv_heads, {});
  s.v_cache.assign(model_.layers.size() * kv_heads, {});
  s.gen.tokens.assign(1, {});
  return s;
}

Status Engine::begin_sequence_step(SequenceState& s) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, n = int64_t(s.step_ids.size());
  s.x.resize(size_t(n * d));
  s.h.resize(size_t(n * d));
  s.routed.clear();
  s.positions.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    // Generated tokens are never masked (generate() extends the mask with ones).
    const bool masked = s.cached + i < int64_t(s.masked_keys.size()) && s.masked_keys[size_t(s.cached + i)];
    s.positions[size_t(i)] = masked ? 1 : s.unmasked++;
    std::memcpy(&s.x[size_t(i * d)], model_.embed_tokens + int64_t(s.step_ids[size_t(i)]) * d,
                size_t(d) * sizeof(float));
    s.routed.push_back({i, 0, int32_t(s.cached + i)});
  }
  if (!s.masked_keys.empty() && s.cached + n > int64_t(s.masked_keys.size()))
    s.masked_keys.resize(size_t(s.cached + n), 0);
  rotary_tables(c.decoder_only.rope_theta, c.d_kv, s.positions, &s.cos, &s.sin);
  return Status::Ok();
}

void Engine::sequence_attention(size_t i, SequenceState& s) const {
  const SwitchConfig& c = model_.config();
  const DecoderLayerWeights& layer = model_.layers[i];
  const int64_t d = c.d_model, n = int64_t(s.step_ids.size()), hd = c.d_kv, heads = c.num_heads;
  const int64_t kv_heads = c.decoder_only.num_key_value_heads, kv_width = kv_heads * hd;
  const float eps = float(c.layer_norm_epsilon);
  rms_norm(s.x.data(), layer.input_norm, s.h.data(), n, d, eps);
  s.q.resize(size_t(n * heads * hd));
  s.k.resize(size_t(n * kv_width));
  s.v.resize(size_t(n * kv_width));
  s.ctx.resize(size_t(n * heads * hd));
  // A decoding step (one row) streams the projections once: from their 16-bit copies when the
  // checkpoint stores them so (half the bytes); prompts reuse each weight over many rows and run
  // the packed fp32 kernel.
  const bool stream_half = n == 1 && layer.q_half.data && layer.k_half.data && layer.v_half.data && layer.o_half.data;
  if (stream_half) {
    // One parallel loop for the three: k and v are a few hundred kilobytes each, too little to
    // keep both threads busy to their end on their own.
    auto of_h = [&](const HalfMatrix& w, float* y, int64_t out) {
      return StreamingProduct{.x = s.h.data(), .w = w.data, .type = w.dtype, .y = y, .rows = 1, .in = d, .out = out};
    };
    const StreamingProduct qkv[] = {of_h(layer.q_half, s.q.data(), heads * hd),
                                    of_h(layer.k_half, s.k.data(), kv_width), of_h(layer.v_half, s.v.data(), kv_width)};
    linear_streaming_group(qkv, 3);
  } else {
    linear_packed(s.h.data(), *layer.attention.q, s.q.data(), n);
    linear_packed(s.h.data(), *layer.attention.k, s.k.data(), n);
    linear_packed(s.h.data(), *layer.attention.v, s.v.data(), n);
  }
  if (layer.q_bias) {
    add_bias(s.q.data(), layer.q_bias, n, heads * hd);
    add_bias(s.k.data(), layer.k_bias, n, kv_width);
    add_bias(s.v.data(), layer.v_bias, n, kv_width);
  }
  apply_rotary(s.q.data(), n, heads, hd, s.cos, s.sin);
  apply_rotary(s.k.data(), n, kv_heads, hd, s.cos, s.sin);
  std::vector<float>* k_heads = &s.k_cache[i * size_t(kv_heads)];
  std::vector<float>* v_heads = &s.v_cache[i * size_t(kv_heads)];
  for (int64_t g = 0; g < kv_heads; ++g)
    for (int64_t r = 0; r < n; ++r) {
      const auto row = std::ptrdiff_t(r * kv_width + g * hd);
      k_heads[g].insert(k_heads[g].end(), s.k.begin() + row, s.k.begin() + row + hd);
      v_heads[g].insert(v_heads[g].end(), s.v.begin() + row, s.v.begin() + row + hd);
    }
  causal_gqa(s.q.data(), k_heads, v_heads, n, s.cached, heads, kv_heads, hd, c.decoder_only.sliding_window,
             s.masked_keys.empty() ? nullptr : s.masked_keys.data(), s.ctx.data());
  if (stream_half)
    linear_half(s.ctx.data(), layer.o_half, s.x.data(), 1, heads * hd, d, /*accumulate=*/true);
  else
    linear_packed(s.ctx.data(), *layer.attention.o, s.x.data(), n, /*accumulate=*/true);
  rms_norm(s.x.data(), layer.post_attention_norm, s.h.data(), n, d, eps);
}

void Engine::sequence_resident_mlp(size_t i, SequenceState& s) const {
  const DecoderLayerWeights& layer = model_.layers[i];
  const int64_t n = int64_t(s.step_ids.size());
  if (!layer.router) {
    add_gated_mlp(layer.dense, s.h.data(), nullptr, n, s.x.data(), s.mlp_gate, s.mlp_up, s.mlp_out);
    return;
  }
  if (!layer.shared_expert_gate) return;
  s.shared_scale.resize(size_t(n));
  linear_packed(s.h.data(), *layer.shared_expert_gate, s.shared_scale.data(), n);
  for (float& g : s.shared_scale) g = 1.f / (1.f + std::exp(-g));  // sigmoid
  add_gated_mlp(layer.shared_expert, s.h.data(), s.shared_scale.data(), n, s.x.data(), s.mlp_gate, s.mlp_up, s.mlp_out);
}

void Engine::end_sequence_step(SequenceState& s, int64_t step) const {
  const SwitchConfig& c = model_.config();
  const int64_t d = c.d_model, V = c.vocab_size, n = int64_t(s.step_ids.size());
  s.last.resize(size_t(d));
  rms_norm(&s.x[size_t((n - 1) * d)], model_.final_norm, s.last.data(), 1, d, float(c.layer_norm_epsilon));
  s.logits.resize(size_t(V));
  if (model_.lm_head_half.data)
    linear_half(s.last.data(), model_.lm_head_half, s.logits.data(), 1, d, V);
  else
    linear(s.last.data(), model_.lm_head, s.logits.data(), 1, d, V);
  if (s.keep_logits) s.gen.logits.push_back(s.logits);
  const int32_t next = s.sampler.next(s.logits.data(), V);
  s.gen.tokens[0].push_back(next);
  s.gen.steps = step + 1;
  s.cached += n;
  s.step_ids.assign(1, next);
  s.done = c.is_generation_eos(next) || step + 1 >= s.max_steps;
}

Result<std::vector<Generation>> Engine::generate_decoder_only(const std::vector<std::vector<int32_t>>& requests,
                                                              const std::vector<GenerateOptions>& options,
                                                              const TokenSink& on_token) {
  PERFMEM_RETURN_IF_ERROR(check_requests(requests));
  std::vector<SequenceState> states;
  states.reserve(requests.size());
  for (size_t r = 0; r < requests.size(); ++r) states.push_back(start_sequence(requests[r], options[r]));
  // on_token marks window execution: visits then carry the request's index.
  const bool window = static_cast<bool>(on_token) || requests.size() > 1;
  for (int64_t step = 0;; ++step) {
    std::vector<SequenceState*> active;
    for (SequenceState& s : states)
      if (!s.done) active.push_back(&s);
    if (active.empty()) break;
    std::vector<WindowMember> members;
    for (SequenceState* s : active) {
      PERFMEM_RETURN_IF_ERROR(begin_sequence_step(*s));
      members.push_back({s->h.data(), s->x.data(), &s->routed, window ? int32_t(s - states.data()) : -1});
    }
    for (size_t i = 0; i < model_.layers.size(); ++i) {
      for (SequenceState* s : active) sequence_attention(i, *s);
      if (model_.layers[i].router)
        PERFMEM_RETURN_IF_ERROR(window_moe_layer({model_.layers[i].moe_layer, model_.layers[i].router}, step, members));
      for (SequenceState* s : active) sequence_resident_mlp(i, *s);
    }
    for (SequenceState* s : active) {
      end_sequence_step(*s, step);
      if (on_token && !on_token(size_t(s - states.data()), s->gen.tokens[0].back())) s->done = true;
    }
  }
  std::vector<Generation> out;
  for (SequenceState& s : states) out.push_back(std::move(s.gen));
  return out;
}

}  // namespace perfmem::sida
