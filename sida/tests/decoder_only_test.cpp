// The decoder-only families, Mixtral and Qwen2-MoE: conformance with Hugging Face transformers'
// MixtralForCausalLM / Qwen2MoeForCausalLM on checkpoints written by make_checkpoint and by
// transformers' save_pretrained (one file, sharded, bf16): greedy ids equal, every step's logits
// within 1e-4 relative error, the router's top-k choices of every MoE layer equal. Exact mode
// gives the all-resident bits under every policy, budget and execution. Bad configs and tensors
// are errors naming the file and the key or tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/expert_store.h"
#include "perfmem/sida/serve.h"
#include "perfmem/testing/required.h"
#include "perfmem/testing/subprocess.h"
#include "test_util.h"

namespace perfmem::sida {
namespace {

constexpr double kTolerance = 1e-4;
using Requests = std::vector<std::vector<int32_t>>;

std::string venv_python() { return std::string(PERFMEM_VENV) + "/bin/python"; }

// Runs hf_mixtral.py with `args`; false with *why set when the venv or transformers is absent.
bool run_hf_script(const std::string& args, std::string* why) {
  if (!std::filesystem::exists(venv_python())) {
    *why = "no Python venv at " + std::string(PERFMEM_VENV) + " (run scripts/install-deps.sh)";
    return false;
  }
  // The sanitizer runtime of this process must not leak into the Python child.
  auto result = perfmem::testing::run_command("env -u LD_PRELOAD -u ASAN_OPTIONS " + venv_python() + " " +
                                              PERFMEM_SOURCE_DIR + "/sida/tests/hf_decoder_only.py " + args);
  if (result.exit_code == 3) {
    *why = "transformers not installed in the venv: " + result.output;
    return false;
  }
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return result.exit_code == 0;
}

// A checkpoint written by transformers (SPEC as in hf_mixtral.py); empty with *why when absent.
std::string write_hf_checkpoint(const std::string& name, const Json& spec, std::string* why) {
  const std::string dir = testing::temp_dir("hf-mixtral-" + name);
  if (!run_hf_script("write " + dir + " '" + spec.dump() + "'", why)) return "";
  return dir;
}

std::string join(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? " " : "") << ids[i];
  return s.str();
}

// What the engine computes for one request: greedy ids, every step's logits, and per MoE layer
// the k experts of every position (prompt, then each generated token fed back).
struct EngineResult {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
  std::vector<std::vector<std::vector<int32_t>>> choice;  // [layer][position][k]
};

EngineResult run_engine(const ModelWeights& model, ExpertProvider& store, const std::vector<int32_t>& request,
                        int64_t max_new) {
  EngineResult out;
  out.choice.resize(size_t(model.config().num_moe_layers()));
  Engine engine(model, store);
  engine.set_observer([&](const MoeLayerVisit& v) {
    auto& layer = out.choice[size_t(v.moe_layer)];
    for (size_t t = 0; t < v.positions.size(); ++t) {
      if (layer.size() <= size_t(v.positions[t])) layer.resize(size_t(v.positions[t]) + 1);
      layer[size_t(v.positions[t])].assign(v.choice.begin() + std::ptrdiff_t(t * size_t(v.experts_per_token)),
                                           v.choice.begin() + std::ptrdiff_t((t + 1) * size_t(v.experts_per_token)));
    }
  });
  auto gen = engine.generate({request}, {.max_new_tokens = max_new, .keep_logits = true});
  EXPECT_TRUE(gen.ok()) << gen.status().to_string();
  if (!gen.ok()) return out;
  out.tokens = gen->tokens[0];
  out.logits = gen->logits;
  return out;
}

// The engine against transformers on `dir`: ids, logits and router choices.
void expect_conforms(const std::string& dir, const Requests& requests, int64_t max_new) {
  std::string why;
  std::string args = "oracle " + dir + " " + dir + "/oracle.json " + std::to_string(max_new);
  for (const auto& r : requests) args += " \"" + join(r) + "\"";
  if (!run_hf_script(args, &why)) {
    if (why.empty()) return;  // the script failed: already reported
    PERFMEM_SKIP_UNLESS_REQUIRED(why);
  }
  auto oracle = read_json_file(dir + "/oracle.json");
  ASSERT_TRUE(oracle.ok()) << oracle.status().to_string();
  testing::LoadedModel m = testing::load_model(dir);
  ASSERT_TRUE(m.store);
  const int64_t V = m.model->config().vocab_size;
  for (size_t r = 0; r < requests.size(); ++r) {
    SCOPED_TRACE("request " + std::to_string(r));
    const Json& expected = (*oracle)["generations"][r];
    EngineResult got = run_engine(*m.model, *m.store, requests[r], max_new);
    EXPECT_EQ(got.tokens, expected["tokens"].get<std::vector<int32_t>>());
    const auto logits = expected["logits"].get<std::vector<float>>();
    ASSERT_EQ(expected["vocab"].get<int64_t>(), V);
    ASSERT_EQ(logits.size(), got.logits.size() * size_t(V));
    for (size_t step = 0; step < got.logits.size(); ++step)
      EXPECT_LE(testing::relative_error(got.logits[step].data(), &logits[step * size_t(V)], size_t(V)), kTolerance)
          << "step " << step;
    const auto& layers = expected["router_choice"];
    ASSERT_EQ(layers.size(), got.choice.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto want = layers[l].get<std::vector<std::vector<int32_t>>>();
      ASSERT_GE(got.choice[l].size(), want.size()) << "layer " << l;
      for (size_t p = 0; p < want.size(); ++p)
        EXPECT_EQ(got.choice[l][p], want[p]) << "layer " << l << " position " << p;
    }
  }
}

// Writes DIR/config.json with `key` set to `value` (null removes it).
void set_config_key(const std::string& dir, const std::string& key, const Json& value) {
  auto json = read_json_file(dir + "/config.json");
  ASSERT_TRUE(json.ok());
  if (value.is_null())
    json->erase(key);
  else
    (*json)[key] = value;
  ASSERT_TRUE(write_text_file(dir + "/config.json", json->dump(2)).ok());
}

const Requests kRequests = {{1, 12, 7, 33, 41, 5, 60, 17}, {1, 90}, {1, 3, 3, 3, 44, 21, 8, 70, 9, 15, 64}};

std::string make_tiny(const std::string& name, DType dtype = DType::kF32, uint64_t shard_bytes = 2ull << 30,
                      const std::string& preset = "mixtral-tiny") {
  auto cfg = preset_config(preset);
  EXPECT_TRUE(cfg.ok());
  return testing::make_test_checkpoint(name, *cfg, dtype, shard_bytes);
}

TEST(MixtralConformance, MakeCheckpointMatchesTransformers) { expect_conforms(make_tiny("mixtral-f32"), kRequests, 6); }

TEST(MixtralConformance, MakeCheckpointShardedBf16MatchesTransformers) {
  const std::string dir = make_tiny("mixtral-bf16", DType::kBF16, 64 << 10);
  ASSERT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  expect_conforms(dir, kRequests, 6);
}

TEST(MixtralConformance, SavePretrainedCheckpointsMatchTransformers) {
  struct Case {
    const char* name;
    Json spec;
    bool sharded;
  };
  const Case cases[] = {
      {"f32", Json{{"seed", 1}}, false},
      {"sharded", Json{{"seed", 2}, {"max_shard_size", "40KB"}}, true},
      {"bf16", Json{{"seed", 3}, {"dtype", "bfloat16"}, {"max_shard_size", "60KB"}}, true},
      // Multi-head attention (as many K/V heads as query heads), top-1 of 3 experts, tied head.
      {"mha-top1-tied",
       Json{{"seed", 4},
            {"config",
             {{"num_key_value_heads", 4},
              {"num_local_experts", 3},
              {"num_experts_per_tok", 1},
              {"tie_word_embeddings", true}}}},
       false},
      // A pad id (3) that save_pretrained writes into generation_config.json: the requests' 3s
      // (after bos, repeated) are masked as generate() masks them.
      {"pad-id", Json{{"seed", 6}, {"config", {{"pad_token_id", 3}}}}, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string why;
    const std::string dir = write_hf_checkpoint(c.name, c.spec, &why);
    if (dir.empty()) {
      if (why.empty()) return;
      PERFMEM_SKIP_UNLESS_REQUIRED(why);
    }
    EXPECT_EQ(std::filesystem::exists(dir + "/model.safetensors.index.json"), c.sharded);
    expect_conforms(dir, kRequests, 5);
  }
}

using testing::serve_with;

// Every request's ids and logits bit for bit as in `reference`.
void expect_same_bits(const ServeReport& got, const ServeReport& reference) {
  ASSERT_EQ(got.results.size(), reference.results.size());
  for (size_t r = 0; r < got.results.size(); ++r) {
    EXPECT_EQ(got.results[r].generated, reference.results[r].generated) << "request " << r;
    ASSERT_EQ(got.results[r].logits.size(), reference.results[r].logits.size());
    for (size_t s = 0; s < got.results[r].logits.size(); ++s)
      EXPECT_EQ(0, std::memcmp(got.results[r].logits[s].data(), reference.results[r].logits[s].data(),
                               got.results[r].logits[s].size() * sizeof(float)))
          << "request " << r << " step " << s;
  }
}

// Exact mode: every policy, budget and execution gives the all-resident ids and logits, bit for
// bit, with fp32 slots and with bf16 slots (the checkpoint is bf16: the kernels widen exactly).
// A 16-bit checkpoint keeps its attention projections and LM head as stored too (decoding steps
// stream them; MakeCheckpointShardedBf16MatchesTransformers checks the logits those steps give),
// and an fp32 one keeps no copies.
TEST(MixtralModel, SixteenBitCheckpointsKeepTheirDecodingCopies) {
  auto half = ModelWeights::load(make_tiny("mixtral-copies-bf16", DType::kBF16));
  auto full = ModelWeights::load(make_tiny("mixtral-copies-f32"));
  ASSERT_TRUE(half.ok()) << half.status().to_string();
  ASSERT_TRUE(full.ok()) << full.status().to_string();
  const SwitchConfig& c = (*half)->config();
  uint64_t copies = uint64_t(c.vocab_size * c.d_model);
  for (const DecoderLayerWeights& layer : (*half)->layers) {
    for (const HalfMatrix* m : {&layer.q_half, &layer.k_half, &layer.v_half, &layer.o_half}) {
      EXPECT_NE(m->data, nullptr);
      EXPECT_EQ(m->dtype, DType::kBF16);
    }
    copies +=
        uint64_t(2 * c.d_model * c.num_heads * c.d_kv + 2 * c.d_model * c.decoder_only.num_key_value_heads * c.d_kv);
  }
  EXPECT_EQ((*half)->lm_head_half.dtype, DType::kBF16);
  for (const DecoderLayerWeights& layer : (*full)->layers) EXPECT_EQ(layer.q_half.data, nullptr);
  EXPECT_EQ((*full)->lm_head_half.data, nullptr);
  EXPECT_EQ((*half)->resident_bytes(), (*full)->resident_bytes() + 2 * copies);
}

TEST(MixtralExactMode, EveryPolicyBudgetAndExecutionGivesTheAllResidentBits) {
  const std::string dir = make_tiny("mixtral-exact", DType::kBF16);
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const SwitchConfig& c = (*model)->config();
  const auto requests = synthetic_requests(6, 3, 12, c.vocab_size, 11);
  ServeOptions opt;
  opt.max_new_tokens = 5;
  opt.keep_outputs = true;
  opt.window = 3;
  auto run = [&](Policy policy, uint64_t slots, Execution execution, const RouteTable* routes, bool bf16) {
    return serve_with(**model, requests, opt, policy, slots, execution, routes, bf16);
  };
  const uint64_t all = uint64_t(c.num_moe_layers() * c.num_experts);
  const ServeReport reference = run(Policy::kAllResident, all, Execution::kRequest, nullptr, false);
  ASSERT_EQ(reference.results.size(), requests.size());
  auto routes = record_routes(**model, requests, opt, true);
  ASSERT_TRUE(routes.ok()) << routes.status().to_string();
  for (bool bf16 : {false, true})
    for (Policy policy : {Policy::kAllResident, Policy::kLru, Policy::kFifo, Policy::kPrefetch})
      for (uint64_t slots : {uint64_t(1), uint64_t(c.experts_per_token), uint64_t(c.num_experts), all / 2, all})
        for (Execution execution : {Execution::kRequest, Execution::kWindow}) {
          if (policy == Policy::kAllResident && slots < all) continue;
          SCOPED_TRACE(std::string(policy_name(policy)) + ", " + std::to_string(slots) + " slots, " +
                       execution_name(execution) + (bf16 ? ", bf16 slots" : ""));
          const ServeReport got = run(policy, slots, execution, policy == Policy::kPrefetch ? &*routes : nullptr, bf16);
          expect_same_bits(got, reference);
          if (slots < all) { EXPECT_GT(got.store.bytes_read, 0u); }
          EXPECT_EQ(got.engine.expert_bytes % (bf16 ? c.expert_f32_bytes() / 2 : c.expert_f32_bytes()), 0u);
        }
  // A bf16 fast tier needs bf16 tensors: an f32 checkpoint is refused, naming a tensor.
  auto f32_model = ModelWeights::load(make_tiny("mixtral-f32-for-bf16"));
  ASSERT_TRUE(f32_model.ok());
  StoreOptions so;
  so.bf16_fast_tier = true;
  auto refused = ExpertStore::create(**f32_model, so);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().to_string().find("experts.0.w1.weight"), std::string::npos)
      << refused.status().to_string();
  EXPECT_NE(refused.status().to_string().find("BF16 or F16"), std::string::npos);
}

// An F16 checkpoint's experts kept as f16 in 16-bit slots (widened exactly as computed) give the
// ids and logits of fp32 slots bit for bit, under lru at one slot and all-resident, request and
// window execution (prompts of up to 12 tokens, so experts see both the streaming and the tiled
// products).
TEST(MixtralExactMode, F16SlotsGiveTheBitsOfFp32Slots) {
  const std::string dir = make_tiny("mixtral-f16-slots", DType::kF16);
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const SwitchConfig& c = (*model)->config();
  const auto requests = synthetic_requests(4, 3, 12, c.vocab_size, 13);
  ServeOptions opt;
  opt.max_new_tokens = 4;
  opt.keep_outputs = true;
  opt.window = 2;
  const uint64_t all = uint64_t(c.num_moe_layers() * c.num_experts);
  const ServeReport reference =
      serve_with(**model, requests, opt, Policy::kAllResident, all, Execution::kRequest, nullptr, false);
  ASSERT_EQ(reference.results.size(), requests.size());
  for (Execution execution : {Execution::kRequest, Execution::kWindow}) {
    SCOPED_TRACE(execution_name(execution));
    expect_same_bits(serve_with(**model, requests, opt, Policy::kLru, 1, execution, nullptr, true), reference);
    const ServeReport resident =
        serve_with(**model, requests, opt, Policy::kAllResident, all, execution, nullptr, true);
    expect_same_bits(resident, reference);
    EXPECT_EQ(resident.engine.expert_bytes % (c.expert_f32_bytes() / 2), 0u);
  }
}

TEST(Qwen2MoeConformance, MakeCheckpointAndSavePretrainedMatchTransformers) {
  expect_conforms(make_tiny("qwen-f32", DType::kF32, 2ull << 30, "qwen2-moe-tiny"), kRequests, 6);
  expect_conforms(make_tiny("qwen-bf16", DType::kBF16, 48 << 10, "qwen2-moe-tiny"), kRequests, 6);
  struct Case {
    const char* name;
    Json spec;
  };
  const Case cases[] = {
      {"f32", Json{{"family", "qwen2_moe"}, {"seed", 5}}},
      {"bf16-sharded", Json{{"family", "qwen2_moe"}, {"seed", 6}, {"dtype", "bfloat16"}, {"max_shard_size", "50KB"}}},
      // Renormalised top-k, every layer sparse, top-3, no shared expert.
      {"norm-topk-step1-no-shared", Json{{"family", "qwen2_moe"},
                                         {"seed", 7},
                                         {"config",
                                          {{"norm_topk_prob", true},
                                           {"decoder_sparse_step", 1},
                                           {"num_experts_per_tok", 3},
                                           {"shared_expert_intermediate_size", 0}}}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string why;
    const std::string dir = write_hf_checkpoint(std::string("qwen-") + c.name, c.spec, &why);
    if (dir.empty()) {
      if (why.empty()) return;
      PERFMEM_SKIP_UNLESS_REQUIRED(why);
    }
    expect_conforms(dir, kRequests, 5);
  }
}

// Qwen2-MoE's sparse layers: (i + 1) % decoder_sparse_step == 0, minus mlp_only_layers (as later
// transformers define the key; 4.40, the oracle, ignores it), in closed form for any depth.
TEST(Qwen2MoeModel, SparseLayersFollowTheStepAndMlpOnlyLayers) {
  auto c = preset_config("qwen2-moe-tiny");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->num_moe_layers(), 3);
  for (int64_t m = 0; m < 3; ++m) EXPECT_EQ(c->moe_layer_place(m).block, 2 * m + 1);
  auto expect_blocks = [](SwitchConfig q, int64_t layers, int64_t step, std::vector<int64_t> mlp_only,
                          std::vector<int64_t> sparse) {
    q.num_decoder_layers = layers;
    q.decoder_only.sparse_step = step;
    q.decoder_only.mlp_only_layers = mlp_only;
    ASSERT_EQ(q.num_moe_layers(), int64_t(sparse.size()));
    std::vector<int64_t> got, scanned;
    for (int64_t m = 0; m < q.num_moe_layers(); ++m) got.push_back(q.moe_layer_place(m).block);
    for (int64_t i = 0; i < layers; ++i)
      if (q.decoder_block_is_sparse(i)) scanned.push_back(i);
    EXPECT_EQ(got, sparse);
    EXPECT_EQ(scanned, sparse);
  };
  expect_blocks(*c, 5, 1, {0, 2}, {1, 3, 4});
  expect_blocks(*c, 8, 2, {3}, {1, 5, 7});
  expect_blocks(*c, 9, 3, {0, 1, 5, 20}, {2, 8});
  // A checkpoint whose config makes layer 3 dense loads it as dense (its MLP tensors, no router).
  SwitchConfig q = *c;
  q.decoder_only.mlp_only_layers = {3};
  const std::string dir = testing::make_test_checkpoint("qwen-mlp-only", q);
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  EXPECT_EQ((*model)->config().num_moe_layers(), 2);
  EXPECT_EQ((*model)->layers[3].router, nullptr);
  EXPECT_NE((*model)->layers[3].dense.down, nullptr);
  EXPECT_NE((*model)->layers[5].router, nullptr);
  EXPECT_EQ((*model)->layers[5].moe_layer, 1);
  // Every layer dense is not an MoE model.
  set_config_key(dir, "mlp_only_layers", Json::array({1, 3, 5}));
  auto dense = ModelWeights::load(dir);
  ASSERT_FALSE(dense.ok());
  EXPECT_NE(dense.status().to_string().find("no sparse layer"), std::string::npos) << dense.status().to_string();
}

TEST(Qwen2MoeModel, ExactModeGivesTheAllResidentBits) {
  const std::string dir = make_tiny("qwen-exact", DType::kBF16, 2ull << 30, "qwen2-moe-tiny");
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const SwitchConfig& c = (*model)->config();
  const auto requests = synthetic_requests(5, 3, 12, c.vocab_size, 3);
  ServeOptions opt;
  opt.max_new_tokens = 4;
  opt.keep_outputs = true;
  opt.window = 2;
  auto run = [&](Policy policy, uint64_t slots, Execution execution, bool bf16) {
    return serve_with(**model, requests, opt, policy, slots, execution, nullptr, bf16);
  };
  const uint64_t all = uint64_t(c.num_moe_layers() * c.num_experts);
  const ServeReport reference = run(Policy::kAllResident, all, Execution::kRequest, false);
  for (bool bf16 : {false, true})
    for (uint64_t slots : {uint64_t(1), uint64_t(c.num_experts), all})
      for (Execution execution : {Execution::kRequest, Execution::kWindow}) {
        SCOPED_TRACE(std::to_string(slots) + " slots, " + execution_name(execution) + (bf16 ? ", bf16" : ""));
        const ServeReport got = run(Policy::kLru, slots, execution, bf16);
        expect_same_bits(got, reference);
      }
}

TEST(MixtralModel, PresetsHaveTheDocumentedShapes) {
  auto bench = preset_config("mixtral-bench");
  ASSERT_TRUE(bench.ok());
  EXPECT_EQ(bench->family, ModelFamily::kMixtral);
  EXPECT_EQ(bench->d_model, 1024);
  EXPECT_EQ(bench->d_ff, 3584);
  EXPECT_EQ(bench->num_experts, 8);
  EXPECT_EQ(bench->experts_per_token, 2);
  EXPECT_EQ(bench->num_heads, 16);
  EXPECT_EQ(bench->decoder_only.num_key_value_heads, 4);
  EXPECT_EQ(bench->vocab_size, 32000);
  EXPECT_EQ(bench->num_moe_layers(), bench->num_decoder_layers);
  EXPECT_EQ(bench->num_encoder_moe_layers(), 0);
  EXPECT_EQ(bench->expert_f32_bytes(), 3ull * 1024 * 3584 * 4);  // w1, w3 and w2
  // Its config.json round-trips through the parser.
  auto parsed = parse_config(config_to_json(*bench), "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->d_kv, 64);
  EXPECT_EQ(parsed->expert_f32_bytes(), bench->expert_f32_bytes());
}

TEST(MixtralModel, DecoderOnlyHasNoEncoderAndGeneratesInWindows) {
  testing::LoadedModel m = testing::load_model(make_tiny("mixtral-window"));
  ASSERT_TRUE(m.store);
  Engine engine(*m.model, *m.store);
  auto enc = engine.encode({{1, 5, 6}});
  ASSERT_FALSE(enc.ok());
  EXPECT_NE(enc.status().to_string().find("decoder-only"), std::string::npos) << enc.status().to_string();
  // A window's requests give what each gives alone, and each expert is acquired once per layer
  // and step for the whole window.
  const Requests requests = {{1, 5, 6, 7}, {1, 40}, {1, 9, 9, 30, 31, 77}};
  GenerateOptions g{.max_new_tokens = 4, .keep_logits = true};
  auto window = engine.generate_window(requests, g);
  ASSERT_TRUE(window.ok()) << window.status().to_string();
  for (size_t r = 0; r < requests.size(); ++r) {
    auto alone = engine.generate({requests[r]}, g);
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ((*window)[r].tokens, alone->tokens);
    ASSERT_EQ((*window)[r].logits.size(), alone->logits.size());
    for (size_t s = 0; s < alone->logits.size(); ++s) EXPECT_EQ((*window)[r].logits[s], alone->logits[s]);
  }
  auto batch = engine.generate(requests, g);  // batch: every sequence on its own positions
  ASSERT_TRUE(batch.ok());
  for (size_t r = 0; r < requests.size(); ++r) EXPECT_EQ(batch->tokens[r], (*window)[r].tokens[0]);
}

// A config key set to a bad value: loading fails with an error holding every `expect` substring.
struct ConfigCase {
  const char* key;
  Json value;
  std::vector<std::string> expect;
};
void expect_config_errors(const std::string& preset, const std::vector<ConfigCase>& cases) {
  for (const ConfigCase& c : cases) {
    SCOPED_TRACE(std::string(c.key) + " = " + c.value.dump());
    const std::string dir = make_tiny(preset + "-bad-" + c.key, DType::kF32, 2ull << 30, preset);
    set_config_key(dir, c.key, c.value);
    auto model = ModelWeights::load(dir);
    ASSERT_FALSE(model.ok());
    for (const std::string& e : c.expect)
      EXPECT_NE(model.status().to_string().find(e), std::string::npos) << model.status().to_string();
  }
}

TEST(MixtralModel, BadConfigsAndTensorsAreErrorsNamingThem) {
  const ConfigCase cases[] = {
      {"hidden_act", "gelu", {"config.json", "hidden_act", "silu"}},
      {"num_local_experts", int64_t(1000000000), {"num_local_experts", "experts.999999999.w1.weight"}},
      {"num_hidden_layers", int64_t(1) << 40, {"num_hidden_layers", "model.layers.1099511627775"}},
      {"hidden_size", int64_t(1) << 62, {"hidden_size"}},
      {"intermediate_size", int64_t(40), {"experts.0.w1.weight", "[40, 32]", "[48, 32]"}},
      {"num_attention_heads", int64_t(3), {"hidden_size", "num_attention_heads"}},
      {"num_key_value_heads", int64_t(3), {"num_key_value_heads"}},
      {"num_experts_per_tok", int64_t(5), {"num_experts_per_tok", "num_local_experts"}},
      {"num_experts_per_tok", 2.5, {"num_experts_per_tok", "an integer"}},
      {"rope_scaling", Json{{"type", "linear"}, {"factor", 2.0}}, {"rope_scaling"}},
      {"rms_norm_eps", -1.0, {"rms_norm_eps"}},
      {"eos_token_id", int64_t(500), {"eos_token_id", "vocab_size"}},
  };
  expect_config_errors("mixtral-tiny", {std::begin(cases), std::end(cases)});
  // A missing expert tensor names it.
  const std::string dir = make_tiny("mixtral-missing");
  set_config_key(dir, "tie_word_embeddings", true);  // then lm_head is not read: still loads
  EXPECT_TRUE(ModelWeights::load(dir).ok());
  set_config_key(dir, "tie_word_embeddings", false);
  std::filesystem::remove(dir + "/model.safetensors");
  EXPECT_FALSE(ModelWeights::load(dir).ok());
}

TEST(Qwen2MoeModel, BadConfigsAndTensorsAreErrorsNamingThem) {
  const ConfigCase cases[] = {
      {"shared_expert_intermediate_size", int64_t(1) << 62, {"shared_expert_intermediate_size", "64 bits"}},
      {"shared_expert_intermediate_size", int64_t(-1), {"shared_expert_intermediate_size"}},
      {"shared_expert_intermediate_size", int64_t(50), {"shared_expert.gate_proj.weight", "[50, 32]", "[56, 32]"}},
      {"intermediate_size", int64_t(0), {"intermediate_size", "positive"}},
      {"moe_intermediate_size", int64_t(20), {"experts.0.gate_proj.weight", "[20, 32]", "[24, 32]"}},
      {"decoder_sparse_step", int64_t(0), {"decoder_sparse_step"}},
      {"decoder_sparse_step", int64_t(1), {"layers.0.mlp.gate.weight"}},  // layer 0 would be sparse
      {"decoder_sparse_step", int64_t(100), {"no sparse layer"}},
      {"mlp_only_layers", Json::array({1, -2}), {"mlp_only_layers", "-2"}},
      {"mlp_only_layers", "3", {"mlp_only_layers", "a list"}},
      {"num_experts", int64_t(1) << 40, {"num_experts", "experts.1099511627775.gate_proj.weight"}},
      {"norm_topk_prob", "yes", {"norm_topk_prob"}},
  };
  expect_config_errors("qwen2-moe-tiny", {std::begin(cases), std::end(cases)});
}

// A sliding window shorter than the prompts and the generations: attention reads only the
// window's keys, in the prompt and at every decoding step, as transformers masks them.
// transformers 4.40 (the oracle) masks by the window in both families (Qwen2-MoE whatever its
// use_sliding_window says).
TEST(MixtralConformance, SequencesPastTheSlidingWindowMatchTransformers) {
  const std::string dir = make_tiny("mixtral-window");
  set_config_key(dir, "sliding_window", int64_t(4));
  expect_conforms(dir, kRequests, 6);
  const std::string qwen = make_tiny("qwen-window", DType::kF32, 2ull << 30, "qwen2-moe-tiny");
  set_config_key(qwen, "sliding_window", int64_t(5));
  expect_conforms(qwen, kRequests, 6);
}

// A pad id inside a prompt (the generation config's, not an end id): generate() masks it as a key
// and leaves it out of the rotary positions (a token's position counts the unmasked tokens before
// it; a pad's is 1); generated tokens equal to it are not masked. Pads in the middle, repeated,
// right after bos and last (the first generated token then reads the pad's own row), with and
// without a sliding window, both families; ids, logits and router choices against transformers.
TEST(MixtralConformance, PadIdsInsidePromptsAreMaskedAsGenerateMasksThem) {
  const Requests with_pads = {{1, 12, 3, 33, 41, 3, 60, 17}, {1, 90, 3}, {1, 3, 3, 3, 44, 21, 8, 70, 9, 15, 64}};
  const std::string dir = make_tiny("mixtral-pad");
  set_config_key(dir, "pad_token_id", int64_t(3));
  expect_conforms(dir, with_pads, 6);
  set_config_key(dir, "sliding_window", int64_t(4));
  expect_conforms(dir, with_pads, 6);
  const std::string qwen = make_tiny("qwen-pad", DType::kF32, 2ull << 30, "qwen2-moe-tiny");
  set_config_key(qwen, "pad_token_id", int64_t(3));
  expect_conforms(qwen, with_pads, 6);
}

// The command line: the presets, --bf16-experts (same ids as fp32 slots; refused for an f32
// checkpoint), and --expert-capacity refused for a decoder-only preset.
TEST(DecoderOnlyCli, PresetsRunWithBf16ExpertsAndRefuseSwitchOnlyOptions) {
  const std::string sida = CLI_PATH;
  const std::string dir = testing::temp_dir("cli-mixtral");
  for (const char* preset : {"mixtral-tiny", "qwen2-moe-tiny"}) {
    SCOPED_TRACE(preset);
    auto made = perfmem::testing::run_command(sida + " make-checkpoint --preset " + preset + " --dtype bf16 -o " + dir +
                                              "/" + preset);
    ASSERT_EQ(made.exit_code, 0) << made.output;
    const std::string run = sida + " run " + dir + "/" + preset + " --tokens '1 12 7 33 41' --max-new-tokens 5";
    auto fp32 = perfmem::testing::run_command(run + " --policy lru --budget 30KiB 2>/dev/null");
    auto bf16 = perfmem::testing::run_command(run + " --policy lru --budget 15KiB --bf16-experts 2>/dev/null");
    ASSERT_EQ(fp32.exit_code, 0) << fp32.output;
    ASSERT_EQ(bf16.exit_code, 0) << bf16.output;
    const std::string ids = fp32.output.substr(0, fp32.output.find('\n'));
    EXPECT_EQ(std::count(ids.begin(), ids.end(), ' '), 4) << ids;  // five ids
    EXPECT_EQ(bf16.output.substr(0, bf16.output.find('\n')), ids);
  }
  auto f32 = perfmem::testing::run_command(sida + " make-checkpoint --preset mixtral-tiny -o " + dir + "/f32");
  ASSERT_EQ(f32.exit_code, 0) << f32.output;
  auto refused = perfmem::testing::run_command(sida + " run " + dir + "/f32 --tokens '1 2' --bf16-experts");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("BF16"), std::string::npos) << refused.output;
  auto capacity = perfmem::testing::run_command(
      sida + " make-checkpoint --preset mixtral-tiny --expert-capacity 4 -o " + dir + "/capacity");
  EXPECT_NE(capacity.exit_code, 0);
  EXPECT_NE(capacity.output.find("--expert-capacity"), std::string::npos) << capacity.output;
}

// Text in and out on a transformers-written Mixtral checkpoint with a SentencePiece
// tokenizer.model saved by LlamaTokenizer (legacy, as Mixtral ships it): `sida run --text` gives
// the prompt ids transformers' tokenizer gives (bos prepended), the greedy ids generate() gives,
// and their decoding as tokenizer.decode(skip_special_tokens=True).
TEST(MixtralText, TextInAndOutMatchesTransformersTokenizer) {
  std::string why;
  const std::string dir = write_hf_checkpoint("text", Json{{"seed", 5}, {"config", {{"vocab_size", 64}}}}, &why);
  if (dir.empty()) {
    if (why.empty()) return;
    PERFMEM_SKIP_UNLESS_REQUIRED(why);
  }
  const std::vector<std::string> texts = {"a very good movie", "the film was bad and the acting worse"};
  std::string args = "text " + dir + " " + dir + "/text.json 6";
  for (const std::string& t : texts) args += " '" + t + "'";
  if (!run_hf_script(args, &why)) {
    if (why.empty()) return;
    PERFMEM_SKIP_UNLESS_REQUIRED(why);
  }
  auto expected = read_json_file(dir + "/text.json");
  ASSERT_TRUE(expected.ok()) << expected.status().to_string();
  for (size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(texts[i]);
    const Json& want = (*expected)["texts"][i];
    auto r = perfmem::testing::run_command(std::string(CLI_PATH) + " run " + dir + " --text '" + texts[i] +
                                           "' --max-new-tokens 6 --dump-routes " + dir + "/routes.json 2>/dev/null");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto routes = read_json_file(dir + "/routes.json");
    ASSERT_TRUE(routes.ok()) << routes.status().to_string();
    EXPECT_EQ((*routes)["requests"][0]["tokens"].get<std::vector<int32_t>>(), want["ids"].get<std::vector<int32_t>>());
    const std::string ids_line = r.output.substr(0, r.output.find('\n'));
    EXPECT_EQ(ids_line, join(want["generated"].get<std::vector<int32_t>>()));
    EXPECT_NE(r.output.find("\ntext: " + want["text"].get<std::string>() + "\n"), std::string::npos)
        << r.output << " vs " << want["text"];
  }
}

}  // namespace
}  // namespace perfmem::sida
