// The MoE engine: fp32 compute, batched requests of different lengths, greedy or sampled decoding
// (GenerateOptions::sampling) with a KV cache. Expert weights come from an ExpertProvider (the tiered store);
// everything else is resident in ModelWeights. The model's family (ModelFamily) decides the per-layer compute:
//   Switch Transformers: T5 encoder-decoder with top-1 MoE layers (below);
//   Mixtral (decoder-only): RMSNorm, rotary positions, grouped-query attention with a KV cache,
//     top-k routing as Hugging Face computes it (softmax over the router logits in fp32, the k
//     largest, renormalised to sum 1), experts w2(silu(w1 x) * (w3 x)). generate() and
//     generate_window() run the prompt in one pass (step 0, whose last row gives the first token)
//     and then one token per step; encode() and encode_window() are errors (no encoder).
// What is shared by every family: the MoE layer (experts acquired once each in ascending id order,
// their tokens' rows through one product, window execution's sharing), the observer, the stats.
//
//   auto model = perfmem::sida::ModelWeights::load("ckpt/");
//   auto store = perfmem::sida::ExpertStore::create(**model, store_options);
//   perfmem::sida::Engine engine(**model, **store);
//   auto enc = engine.encode({{37, 5, 12, 1}});                  // F32 [B, L, d_model]
//   auto gen = engine.generate({{37, 5, 12, 1}}, {.max_new_tokens = 8});
//   // gen->tokens[0]: generated ids (decoder start excluded, the end id included when produced)
//
// Routing follows Hugging Face: router logits in fp32, softmax, argmax (first on ties), output
// scaled by the top probability; with capacity on, a token whose position among the sequence's
// tokens routed to the same expert exceeds expert_capacity skips the expert (its output is
// p · normed input, as in Hugging Face). Padding positions of a batch are not routed at all:
// they are masked out of attention, so they cannot change any real token's result. A pad id
// inside a request is masked as a key (encoder self-attention and cross-attention) but still
// routed and counted against capacity, as Hugging Face's generate() does with the mask it
// builds from the ids (SwitchConfig::masked_pad_id: generate()'s pad id, unless it also ends
// sequences). Generation stops at any of generate()'s end ids (SwitchConfig::generation_eos_ids).
// The self-attention KV cache grows step by step.
// Experts of a layer are acquired in ascending id order, one at a time; this is the access order
// that route tables record. (Where the provider holds every expert, a decoding step's experts are
// acquired in that order but held together, and their products run as grouped loops: same
// accesses, same bits.)
//
// encode_window() runs a window of requests layer by layer together: attention, dense layers and
// routing are computed for every request on its own (batch 1: the same calls on the same rows as
// encode({request})), but at each MoE layer an expert is acquired ONCE and applied to every
// request of the window routed to it before it is released. The rows that requests send to it
// (at most kLinearStreamingMaxRows per request, nearly always) go through one pass of the
// streaming kernel, which gives each row the bits batch 1 gives it; a request sending more rows
// runs its own product. Outputs are therefore bit-identical to encoding the requests one by one;
// the access order is, per MoE layer, the window's distinct experts in ascending id order.
// generate_window() continues the same way through the decoder, step by step, with the requests
// that have not finished; per step, per decoder MoE layer, the distinct experts in id order.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/sampling.h"

namespace perfmem::sida {

// One expert's weights in fast memory, valid until release().
struct ExpertView {
  const float* wi = nullptr;  // F32 [expert_in_rows, d_model]: wi, or gate (w1) over up (w3)
  const float* wo = nullptr;  // F32 [d_model, d_ff]
  int32_t id = -1;            // moe_layer * num_experts + expert
  int32_t slot = -1;
  // A 16-bit fast tier's slots (wi and wo are null then): the same matrices as raw bf16 bits, or
  // IEEE f16 bits when half_is_f16 (an F16 checkpoint's experts, kept as stored).
  const uint16_t* wi_bf16 = nullptr;
  const uint16_t* wo_bf16 = nullptr;
  bool half_is_f16 = false;
};

// Where the engine gets expert weights. Implementations: ExpertStore (two tiers).
class ExpertProvider {
 public:
  virtual ~ExpertProvider() = default;
  // Blocks until expert `id` (moe_layer * E + e) is in fast memory; errors when it cannot be read.
  virtual Result<ExpertView> acquire(int32_t id) = 0;
  virtual void release(const ExpertView& view) = 0;
  // True when fast memory has room for every expert at once, so that holding several acquired
  // experts never forces an eviction another order of releases would not: the engine then holds
  // a layer's experts together and runs their products as one parallel loop (same accesses in
  // the same order, same bits).
  virtual bool holds_every_expert() const { return false; }
};

// Observes every MoE layer the engine runs (used to record route tables and by tests).
struct MoeLayerVisit {
  int64_t moe_layer = 0;
  int64_t decode_step = -1;           // -1 in the encoder
  int32_t window_request = -1;        // encode_window/generate_window: the request's index; else -1
  std::vector<int32_t> rows;          // batch row of each routed token
  std::vector<int32_t> positions;     // position of each routed token in its sequence
  int64_t experts_per_token = 1;      // k: experts per routed token (1 for Switch)
  std::vector<int32_t> choice;        // [tokens, k]: the chosen experts per routed token
  std::vector<uint8_t> dropped;       // 1 when over capacity
  std::vector<float> router_logits;   // [tokens, E]
  std::vector<int32_t> experts_used;  // distinct experts acquired, in acquisition order
};
using MoeObserver = std::function<void(const MoeLayerVisit&)>;

// SiDA's router replacement: at a MoE layer the request's own tokens pass through before
// generation (Switch's encoder layers; every MoE layer of a decoder-only model at its prompt
// step), the k experts a routed token goes to and the scale of each one's output, given the
// token's sequence (its row in encode()/generate()'s batch, or its request's index in
// encode_window()/generate_window()'s window), the layer and the token's position in its
// sequence, instead of the router's decision (k set with
// Engine::set_router_replacement: SiDA's top-1 gives the predicted expert and its probability;
// its top-3 the three best, scaled by degrading factors). The router is not run there and expert
// capacity is not applied; the observer sees zero router logits and k choices per token.
// Switch's decoder layers and a decoder-only model's generated tokens route as usual.
using RouterReplacement =
    std::function<void(int32_t sequence, int64_t moe_layer, int32_t position, int32_t* experts, float* scales)>;

struct EngineOptions {
  bool apply_capacity = true;  // Hugging Face's expert capacity; off = every token gets its expert
};

struct EncoderOutput {
  int64_t batch = 0, max_len = 0, d_model = 0;
  std::vector<int64_t> lengths;
  std::vector<float> hidden;  // F32 [batch, max_len, d_model]; padding rows are unspecified
  // [batch, max_len]: 1 where a position is attended as a key (self- and cross-attention): real
  // positions except pad ids, which Hugging Face's generate() masks (SwitchConfig::masked_pad_id).
  std::vector<uint8_t> key_mask;
};

struct GenerateOptions {
  int64_t max_new_tokens = 8;
  bool keep_logits = false;   // fill Generation::logits
  bool keep_encoder = false;  // fill Generation::encoder
  // Greedy by default. Sampled: each sequence (each row of a batch) has its own TokenSampler
  // seeded with sampling.seed, so its ids are those of generating it alone with these options.
  SamplingOptions sampling{};
};

struct Generation {
  std::vector<std::vector<int32_t>> tokens;  // per request
  // F32 [steps][batch, vocab] when keep_logits: the raw logits of each decoding step.
  std::vector<std::vector<float>> logits;
  EncoderOutput encoder;  // when keep_encoder: the encoder's output the decoder attended to
  int64_t steps = 0;
};

// Where the engine's time goes on expert matrices (for bandwidth figures).
struct EngineStats {
  uint64_t expert_calls = 0;
  uint64_t expert_bytes = 0;    // weight bytes streamed by expert products (fp32 or bf16 slots)
  double expert_compute_s = 0;  // time in expert products (excluding waits for I/O)
};

class Engine {
 public:
  Engine(const ModelWeights& model, ExpertProvider& experts, EngineOptions options = {});

  void set_observer(MoeObserver observer) { observer_ = std::move(observer); }
  // Empty: the routers decide (exact mode). Used with one request at a time (batch 1).
  // `experts_per_token` (k >= 1): how many experts the replacement gives each token.
  void set_router_replacement(RouterReplacement replacement, int64_t experts_per_token = 1) {
    replacement_ = std::move(replacement);
    replacement_k_ = experts_per_token;
  }
  const EngineStats& stats() const { return stats_; }

  // Token ids must lie in [0, vocab); empty requests are errors.
  Result<EncoderOutput> encode(const std::vector<std::vector<int32_t>>& requests);
  // One EncoderOutput (batch 1) per request, sharing each acquired expert across the window.
  Result<std::vector<EncoderOutput>> encode_window(const std::vector<std::vector<int32_t>>& requests);
  // One Generation (batch 1) per request: encode_window, then the requests still generating
  // advance step by step together, sharing each acquired decoder expert the same way.
  Result<std::vector<Generation>> generate_window(const std::vector<std::vector<int32_t>>& requests,
                                                  const GenerateOptions& options);
  // The same with options per request (each its own max_new_tokens) and `on_token`, called after
  // every decoding step for each request that produced a token (its index and the token); when it
  // returns false that request stops there (its Generation keeps the tokens so far). Each
  // request's tokens and logits are those of generate({request}, its options), whatever the
  // others do: a stopped or finished request only leaves the window's later steps.
  using TokenSink = std::function<bool(size_t request, int32_t token)>;
  Result<std::vector<Generation>> generate_window(const std::vector<std::vector<int32_t>>& requests,
                                                  const std::vector<GenerateOptions>& options,
                                                  const TokenSink& on_token);
  Result<Generation> generate(const std::vector<std::vector<int32_t>>& requests, const GenerateOptions& options);

 private:
  // The family-independent part of a MoE layer: its index and router.
  struct MoeLayerRef {
    int64_t moe_layer;
    const PackedWeights* router;
  };
  // Empty requests, ids outside the vocabulary and requests of pad ids only are errors.
  Status check_requests(const std::vector<std::vector<int32_t>>& requests) const;
  Status check_generate(const GenerateOptions& options) const;
  // A token of the activation matrix that goes through the MoE layer, in (row, position) order.
  struct RoutedToken {
    int64_t index;
    int32_t row;
    int32_t position;
  };
  // The router's decisions for one MoE layer over one set of tokens (k experts per token).
  struct LayerRouting {
    int64_t k = 1;                 // experts per token: 1 (Switch), the model's (decoder-only) or the replacement's
    std::vector<float> h;          // F32 [n, d]: the routed tokens' normed rows
    std::vector<float> logits;     // F32 [n, E]
    std::vector<int32_t> choice;   // [n, k]: the chosen experts (Switch: the argmax)
    std::vector<float> weight;     // [n, k]: each chosen expert's output scale
    std::vector<uint8_t> dropped;  // 1 when over capacity
    std::vector<uint8_t> uses;     // [E]: 1 when some kept token goes to the expert
  };
  struct EncoderState;
  // normed: F32 [*, d] (ffn-normed input); adds each routed token's MoE output to x [*, d].
  Status moe_layer(const MoeLayerRef& layer, int64_t decode_step, const float* normed, float* x,
                   const std::vector<RoutedToken>& tokens);
  // decode_step: -1 in Switch's encoder, else the generation step (0: a decoder-only prompt).
  // window_request: the tokens' request in a window, or -1 (their rows are their sequences).
  void route(const MoeLayerRef& layer, int64_t decode_step, const float* normed, const std::vector<RoutedToken>& tokens,
             int32_t window_request, LayerRouting* routing) const;
  // Hugging Face's Mixtral / Qwen2-MoE routing of r->logits: softmax in fp32, the k largest (the
  // first on ties), renormalised to sum 1 (Qwen2-MoE: only with norm_topk_prob).
  void route_top_k(LayerRouting* r) const;
  // One token row through an expert: in = its normed row, out += p * expert(in).
  struct ExpertRow {
    const float* in;
    float* out;
    float p;
  };
  struct ExpertScratch {
    std::vector<float> xe, hidden, ye;
    std::vector<ExpertRow> rows;
  };
  // Appends the rows of the tokens routed to expert e (kept, not dropped), k choices per token.
  static void collect_rows(int64_t e, int64_t k, const LayerRouting& routing, const std::vector<RoutedToken>& tokens,
                           float* x, int64_t d, std::vector<ExpertRow>* rows);
  // Runs scratch.rows through expert `view`: with linear() (as batch 1 does for one request's
  // rows), or with the streaming kernel (rows of several requests in one pass, same bits per row).
  void run_expert_rows(const ExpertView& view, bool streaming, ExpertScratch& scratch);
  // The same for several experts held at once, all through the streaming kernel: their input
  // products as one parallel loop, then their output products as another; outputs
  // added in the order of `views`, as run_expert_rows() one expert after another adds them.
  // Adds each row's weighted output (row.p * ye) to row.out, rows in order.
  void add_expert_outputs(const ExpertScratch& scratch) const;
  void run_experts_streaming_together(const std::vector<ExpertView>& views, std::vector<ExpertScratch>& scratch);
  // Passes dropped tokens through and reports the layer to the observer.
  void finish_moe_layer(const MoeLayerRef& layer, int64_t decode_step, LayerRouting& routing,
                        const std::vector<RoutedToken>& tokens, float* x, int32_t window_request);
  // A request of a window at one MoE layer: its normed rows, activations, routed tokens and its
  // index among the window's requests.
  struct WindowMember {
    const float* normed;
    float* x;
    const std::vector<RoutedToken>* tokens;
    int32_t request;
  };
  // The window's MoE layer: each expert acquired once for all members (see encode_window).
  Status window_moe_layer(const MoeLayerRef& layer, int64_t decode_step, const std::vector<WindowMember>& members);
  static MoeLayerRef moe_of(const BlockWeights& block) { return {block.moe_layer, block.router}; }

  // Decoder-only families (engine_decoder_only.cpp). A sequence: its cache and the rows of the
  // current step (the prompt at step 0, then the last token).
  struct SequenceState;
  SequenceState start_sequence(const std::vector<int32_t>& prompt, const GenerateOptions& options) const;
  // Embeds the step's rows.
  Status begin_sequence_step(SequenceState& s) const;
  // Attention of layer i over the step's rows (keys and values appended to the cache), then the
  // post-attention norm into s.h.
  void sequence_attention(size_t i, SequenceState& s) const;
  // Qwen2-MoE's feed-forward parts that are not routed experts, added to s.x from s.h: a dense
  // layer's MLP, or a MoE layer's shared expert scaled by sigmoid(shared_expert_gate · h).
  void sequence_resident_mlp(size_t i, SequenceState& s) const;
  // Final norm and LM head on the last row, the next token (greedy or sampled), and whether the
  // sequence is done.
  void end_sequence_step(SequenceState& s, int64_t step) const;
  Result<std::vector<Generation>> generate_decoder_only(const std::vector<std::vector<int32_t>>& requests,
                                                        const std::vector<GenerateOptions>& options,
                                                        const TokenSink& on_token);
  struct DecoderState;
  DecoderState start_decoder(EncoderOutput enc, const GenerateOptions& options) const;
  void begin_decoder_step(DecoderState& state, int64_t step) const;
  // Self- and cross-attention of decoder block i, then the FFN norm into state.h.
  void decoder_attention(size_t i, DecoderState& state, int64_t step) const;
  void decoder_dense_ffn(const BlockWeights& block, DecoderState& state) const;
  // Logits, next tokens (greedy or sampled), and whether every sequence is finished (or the step
  // limit reached).
  void end_decoder_step(DecoderState& state, int64_t step) const;
  EncoderState start_encoder(const std::vector<std::vector<int32_t>>& requests) const;
  // Self-attention of one block, then the FFN norm into state.h.
  void encoder_attention(const BlockWeights& block, EncoderState& state) const;
  void dense_ffn(const BlockWeights& block, EncoderState& state) const;
  EncoderOutput finish_encoder(EncoderState& state) const;

  const ModelWeights& model_;
  ExpertProvider& experts_;
  EngineOptions options_;
  MoeObserver observer_;
  RouterReplacement replacement_;
  int64_t replacement_k_ = 1;
  EngineStats stats_;
};

}  // namespace perfmem::sida
