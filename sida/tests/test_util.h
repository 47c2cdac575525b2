// Shared helpers for the sida tests: temporary checkpoints and comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/config.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/expert_store.h"
#include "perfmem/sida/predictor.h"
#include "perfmem/sida/serve.h"
#include "perfmem/core/safetensors.h"
#include "perfmem/core/json.h"
#include "perfmem/testing/scratch_dir.h"

namespace perfmem::sida::testing {

// A fresh folder `sida-<name>` in this test process's scratch folder (removed when the process
// exits; perfmem/testing/scratch_dir.h).
inline std::string temp_dir(const std::string& name) {
  static const perfmem::testing::ScratchDir scratch("sida-test");
  auto dir = scratch.path() / ("sida-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline std::string make_test_checkpoint(const std::string& name, SwitchConfig config, DType dtype = DType::kF32,
                                        uint64_t shard_bytes = 2ull << 30) {
  std::string dir = temp_dir(name);
  MakeCheckpointOptions opt;
  opt.dtype = dtype;
  opt.shard_bytes = shard_bytes;
  opt.show_progress = false;
  Status s = make_checkpoint(config, opt, dir);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return dir;
}

// A loaded model with a store of default options (a slot per expert), for engine tests; null
// members (after a test failure) when loading fails.
struct LoadedModel {
  std::unique_ptr<ModelWeights> model;
  std::unique_ptr<ExpertStore> store;
};
inline LoadedModel load_model(const std::string& dir) {
  LoadedModel out;
  auto model = ModelWeights::load(dir);
  EXPECT_TRUE(model.ok()) << model.status().to_string();
  if (!model.ok()) return out;
  out.model = std::move(*model);
  auto store = ExpertStore::create(*out.model, StoreOptions{});
  EXPECT_TRUE(store.ok()) << store.status().to_string();
  if (store.ok()) out.store = std::move(*store);
  return out;
}

// A checkpoint with no decoder start token encodes, but generation (batch and window) is an
// error naming decoder_start_token_id, as in Hugging Face.
inline void expect_generation_needs_decoder_start(const std::string& dir) {
  LoadedModel m = load_model(dir);
  ASSERT_TRUE(m.store);
  EXPECT_EQ(m.model->config().decoder_start_token_id, -1);
  Engine engine(*m.model, *m.store);
  EXPECT_TRUE(engine.encode({{5, 6, 1}}).ok());
  auto gen = engine.generate({{5, 6, 1}}, {.max_new_tokens = 2});
  ASSERT_FALSE(gen.ok());
  EXPECT_NE(gen.status().to_string().find("decoder_start_token_id"), std::string::npos) << gen.status().to_string();
  EXPECT_FALSE(engine.generate_window({{5, 6, 1}}, {.max_new_tokens = 2}).ok());
}

// Serves `requests` through a fresh store of `slots` expert slots (fp32, or bf16 slots).
inline ServeReport serve_with(const ModelWeights& model, const std::vector<Request>& requests, ServeOptions opt,
                              Policy policy, uint64_t slots, Execution execution, const RouteTable* routes, bool bf16) {
  const SwitchConfig& c = model.config();
  StoreOptions so;
  so.policy = policy;
  so.bf16_fast_tier = bf16;
  so.budget_bytes = slots * (bf16 ? c.expert_f32_bytes() / 2 : c.expert_f32_bytes());
  auto store = ExpertStore::create(model, so);
  EXPECT_TRUE(store.ok()) << store.status().to_string();
  if (!store.ok()) return {};
  EXPECT_EQ((*store)->num_slots(), slots);
  if (policy == Policy::kAllResident) { EXPECT_TRUE((*store)->load_all().ok()); }
  opt.execution = execution;
  opt.routes = routes;
  auto report = serve(model, **store, requests, opt);
  EXPECT_TRUE(report.ok()) << report.status().to_string();
  return report.ok() ? *report : ServeReport{};
}

// max |a - b| / max |b|: the relative error of a whole tensor.
inline double relative_error(const float* a, const float* b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// A predictor's sizes for `model` (its embedding and encoder MoE layers), hidden 8.
inline PredictorConfig predictor_config_for(const ModelWeights& model) {
  PredictorConfig c;
  c.d_model = model.config().d_model;
  c.hidden = 8;
  c.num_moe_layers = model.config().num_encoder_moe_layers();
  c.num_experts = model.config().num_experts;
  c.vocab_size = model.config().vocab_size;
  return c;
}

// A predictor file written by hand (random weights, the documented layout).
inline void write_random_predictor(const std::string& dir, const PredictorConfig& c) {
  std::filesystem::create_directories(dir);
  std::vector<std::vector<float>> keep;
  SafetensorsWriter w;
  uint64_t state = 1;
  for (const auto& [name, shape] : predictor_tensor_shapes(c)) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    keep.emplace_back(size_t(n));
    for (float& v : keep.back()) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      v = float(int64_t(state >> 40) % 2001 - 1000) / 4000.0f;
    }
    w.add(name, DType::kF32, shape, keep.back().data());
  }
  ASSERT_TRUE(w.write(dir + "/predictor.safetensors").ok());
  ASSERT_TRUE(write_predictor_config(dir, c, Json()).ok());
}

}  // namespace perfmem::sida::testing
