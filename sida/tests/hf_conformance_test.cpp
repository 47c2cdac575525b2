// Conformance against Hugging Face transformers' SwitchTransformersForConditionalGeneration:
// checkpoints written by make_checkpoint load in transformers, and the engine's encoder states,
// router choices, decoder logits (relative error <= 1e-4) and greedy tokens match it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "perfmem/core/json.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/expert_store.h"
#include "perfmem/testing/subprocess.h"
#include "test_util.h"
#include "perfmem/testing/required.h"

namespace perfmem::sida {
namespace {

constexpr double kTolerance = 1e-4;

std::string join(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? " " : "") << ids[i];
  return s.str();
}

// Runs the Python oracle; nullopt (after GTEST_SKIP by the caller) when transformers is absent.
std::optional<Json> run_oracle(const std::string& ckpt, int64_t max_new,
                               const std::vector<std::vector<int32_t>>& requests, std::string* why) {
  const std::string python = std::string(PERFMEM_VENV) + "/bin/python";
  if (!std::filesystem::exists(python)) {
    *why = "no Python venv at " + std::string(PERFMEM_VENV) + " (run scripts/install-deps.sh)";
    return std::nullopt;
  }
  const std::string out = ckpt + "/oracle.json";
  std::string cmd = python + " " + PERFMEM_SOURCE_DIR + "/sida/tests/hf_oracle.py " + ckpt + " " + out +
                    " " + std::to_string(max_new);
  for (const auto& r : requests) cmd += " \"" + join(r) + "\"";
  // The sanitizer runtime of this process must not leak into the Python child.
  auto result = perfmem::testing::run_command("env -u LD_PRELOAD -u ASAN_OPTIONS " + cmd);
  if (result.exit_code == 3) {
    *why = "transformers not installed in the venv: " + result.output;
    return std::nullopt;
  }
  EXPECT_EQ(result.exit_code, 0) << result.output;
  auto json = read_json_file(out);
  EXPECT_TRUE(json.ok()) << json.status().to_string();
  if (!json.ok()) return std::nullopt;
  return *json;
}

void check_against_hf(const std::string& ckpt, const std::vector<std::vector<int32_t>>& requests,
                      int64_t max_new, bool expect_drops) {
  std::string why;
  auto oracle = run_oracle(ckpt, max_new, requests, &why);
  if (!oracle) {
    if (!why.empty()) PERFMEM_SKIP_UNLESS_REQUIRED(why);
    return;
  }
  auto model = ModelWeights::load(ckpt);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const SwitchConfig& c = (*model)->config();
  StoreOptions so;
  so.policy = Policy::kAllResident;
  auto store = ExpertStore::create(**model, so);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  ASSERT_TRUE((*store)->load_all().ok());
  Engine engine(**model, **store);

  // Encoder on the padded batch, with router choices.
  std::vector<MoeLayerVisit> visits;
  engine.set_observer([&](const MoeLayerVisit& v) { visits.push_back(v); });
  auto enc = engine.encode(requests);
  ASSERT_TRUE(enc.ok()) << enc.status().to_string();
  const auto hf_hidden = (*oracle)["encoder_hidden"].get<std::vector<float>>();
  ASSERT_EQ(hf_hidden.size(), enc->hidden.size());
  std::vector<float> ours, theirs;
  for (int64_t b = 0; b < enc->batch; ++b)
    for (int64_t t = 0; t < enc->lengths[size_t(b)]; ++t)
      for (int64_t k = 0; k < c.d_model; ++k) {
        size_t i = size_t((b * enc->max_len + t) * c.d_model + k);
        ours.push_back(enc->hidden[i]);
        theirs.push_back(hf_hidden[i]);
      }
  EXPECT_LE(testing::relative_error(ours.data(), theirs.data(), ours.size()), kTolerance);

  const auto hf_routes = (*oracle)["encoder_router_choice"].get<std::vector<std::vector<int32_t>>>();
  ASSERT_EQ(int64_t(hf_routes.size()), c.num_encoder_moe_layers());
  ASSERT_EQ(int64_t(visits.size()), c.num_encoder_moe_layers());
  int64_t compared = 0, dropped = 0;
  for (size_t m = 0; m < visits.size(); ++m) {
    const MoeLayerVisit& v = visits[m];
    for (size_t t = 0; t < v.choice.size(); ++t) {
      const int64_t flat = v.rows[t] * enc->max_len + v.positions[t];
      EXPECT_EQ(v.choice[t], hf_routes[m][size_t(flat)]) << "moe layer " << m << " row " << v.rows[t]
                                                          << " position " << v.positions[t];
      ++compared;
      dropped += v.dropped[t];
    }
  }
  EXPECT_GT(compared, 0);
  if (expect_drops) {
    EXPECT_GT(dropped, 0) << "the capacity test needs tokens over capacity";
  }

  // Greedy generation per request: tokens identical, logits within tolerance.
  engine.set_observer(nullptr);
  const auto& gens = (*oracle)["generations"];
  for (size_t r = 0; r < requests.size(); ++r) {
    GenerateOptions g;
    g.max_new_tokens = max_new;
    g.keep_logits = true;
    auto gen = engine.generate({requests[r]}, g);
    ASSERT_TRUE(gen.ok()) << gen.status().to_string();
    const auto hf_tokens = gens[r]["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(gen->tokens[0], hf_tokens) << "request " << r;
    const auto hf_logits = gens[r]["logits"].get<std::vector<float>>();
    const size_t V = size_t(c.vocab_size);
    ASSERT_EQ(hf_logits.size(), hf_tokens.size() * V);
    for (size_t step = 0; step < hf_tokens.size() && step < gen->logits.size(); ++step)
      EXPECT_LE(testing::relative_error(gen->logits[step].data(), &hf_logits[step * V], V), kTolerance)
          << "request " << r << " step " << step;
  }
}

#ifdef SIDA_CONFORMANCE_BASE8
// switch-base-8 shapes (1.2 GB in bf16): its own executable, labelled slow (release only).
TEST(HuggingFaceConformance, SwitchBase8ShapesBf16) {
  std::string dir = testing::make_test_checkpoint("hf-base8", *preset_config("switch-base-8"), DType::kBF16);
  check_against_hf(dir, {{100, 2000, 31000, 7, 512, 9999, 1}}, 3, false);
  std::filesystem::remove_all(dir);
}
#else
TEST(HuggingFaceConformance, TinyF32WithCapacityDropsAndPaddedBatch) {
  SwitchConfig c = *preset_config("tiny");
  c.expert_capacity = 3;  // small enough that some tokens overflow their expert
  std::string dir = testing::make_test_checkpoint("hf-tiny-f32", c);
  check_against_hf(dir, {{5, 17, 33, 9, 41, 60, 2, 77, 12, 8, 91, 30, 4, 1}, {42, 7, 1}, {11, 12, 13, 14, 15, 16, 1}},
                   6, /*expect_drops=*/true);
  std::filesystem::remove_all(dir);
}

TEST(HuggingFaceConformance, TinyBf16Sharded) {
  std::string dir = testing::make_test_checkpoint("hf-tiny-bf16", *preset_config("tiny"), DType::kBF16,
                                                  /*shard_bytes=*/64 << 10);
  ASSERT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  check_against_hf(dir, {{3, 4, 5, 6, 7, 8, 9, 10, 1}, {20, 21, 1}}, 5, false);
  std::filesystem::remove_all(dir);
}

TEST(HuggingFaceConformance, TinyF16) {
  std::string dir = testing::make_test_checkpoint("hf-tiny-f16", *preset_config("tiny"), DType::kF16);
  check_against_hf(dir, {{50, 40, 30, 20, 10, 1}}, 4, false);
  std::filesystem::remove_all(dir);
}
#endif

}  // namespace
}  // namespace perfmem::sida
