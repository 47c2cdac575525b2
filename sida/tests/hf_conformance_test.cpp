// Conformance against Hugging Face transformers' SwitchTransformersForConditionalGeneration:
// checkpoints written by make_checkpoint load in transformers, and the engine's encoder states,
// router choices (encoder, and decoder per step), decoder logits (relative error <= 1e-4) and
// greedy tokens match it. Checkpoints written by transformers itself (save_pretrained, through
// hf_write_checkpoint.py) load here: explicit sparse steps, the tied embedding under another
// name, pad ids inside requests, a pickle-only folder after the documented conversion; and the
// CLI's dumps of encoder states and router choices match transformers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/safetensors.h"
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
  std::string cmd = python + " " + PERFMEM_SOURCE_DIR + "/sida/tests/hf_oracle.py " + ckpt + " " + out + " " +
                    std::to_string(max_new);
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

[[maybe_unused]] std::string venv_python() { return std::string(PERFMEM_VENV) + "/bin/python"; }

// Writes a checkpoint with transformers' save_pretrained (hf_write_checkpoint.py, SPEC as JSON);
// empty with *why set when transformers is absent.
[[maybe_unused]] std::string write_hf_checkpoint(const std::string& name, const Json& spec, std::string* why) {
  if (!std::filesystem::exists(venv_python())) {
    *why = "no Python venv at " + std::string(PERFMEM_VENV) + " (run scripts/install-deps.sh)";
    return "";
  }
  const std::string dir = testing::temp_dir("hf-written-" + name);
  std::string quoted = spec.dump();
  for (size_t i = 0; (i = quoted.find('\'', i)) != std::string::npos; i += 4) quoted.replace(i, 1, "'\\''");
  auto result =
      perfmem::testing::run_command("env -u LD_PRELOAD -u ASAN_OPTIONS " + venv_python() + " " + PERFMEM_SOURCE_DIR +
                                    "/sida/tests/hf_write_checkpoint.py " + dir + " '" + quoted + "'");
  if (result.exit_code == 3) {
    *why = "transformers not installed in the venv: " + result.output;
    return "";
  }
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return dir;
}

#define SIDA_WRITE_HF_CHECKPOINT(dir, name, spec)                      \
  std::string why_##dir;                                               \
  const std::string dir = write_hf_checkpoint(name, spec, &why_##dir); \
  if (dir.empty()) PERFMEM_SKIP_UNLESS_REQUIRED(why_##dir);            \
  ASSERT_FALSE(HasFailure())

void check_against_hf(const std::string& ckpt, const std::vector<std::vector<int32_t>>& requests, int64_t max_new,
                      bool expect_drops) {
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
      EXPECT_EQ(v.choice[t], hf_routes[m][size_t(flat)])
          << "moe layer " << m << " row " << v.rows[t] << " position " << v.positions[t];
      ++compared;
      dropped += v.dropped[t];
    }
  }
  EXPECT_GT(compared, 0);
  if (expect_drops) { EXPECT_GT(dropped, 0) << "the capacity test needs tokens over capacity"; }

  // Greedy generation per request: tokens identical, logits within tolerance, the decoder
  // routers' choices per step identical.
  const auto& gens = (*oracle)["generations"];
  for (size_t r = 0; r < requests.size(); ++r) {
    GenerateOptions g;
    g.max_new_tokens = max_new;
    g.keep_logits = true;
    std::vector<std::vector<int32_t>> decoder_choices(size_t(c.num_moe_layers() - c.num_encoder_moe_layers()));
    engine.set_observer([&](const MoeLayerVisit& v) {
      if (v.decode_step >= 0)
        decoder_choices[size_t(v.moe_layer - c.num_encoder_moe_layers())].push_back(v.choice.at(0));
    });
    auto gen = engine.generate({requests[r]}, g);
    ASSERT_TRUE(gen.ok()) << gen.status().to_string();
    const auto hf_tokens = gens[r]["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(gen->tokens[0], hf_tokens) << "request " << r;
    EXPECT_EQ(decoder_choices, gens[r]["decoder_router_choice"].get<std::vector<std::vector<int32_t>>>())
        << "request " << r;
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

// Hugging Face writes encoder_sparse_step / decoder_sparse_step and honours them over the counts.
TEST(HuggingFaceWritten, SparseStepKeysAreHonoured) {
  SIDA_WRITE_HF_CHECKPOINT(dir, "steps",
                           (Json{{"config",
                                  {{"num_layers", 6},
                                   {"num_sparse_encoder_layers", 3},
                                   {"encoder_sparse_step", 3},
                                   {"decoder_sparse_step", 1}}}}));
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  EXPECT_EQ((*model)->config().num_encoder_moe_layers(), 2);  // blocks 1 and 4
  EXPECT_EQ((*model)->config().num_moe_layers(), 2 + 4);
  check_against_hf(dir, {{5, 17, 33, 9, 41, 60, 2, 1}, {42, 7, 1}}, 4, false);
  std::filesystem::remove_all(dir);
}

// Without num_decoder_layers in config.json, transformers builds 12 decoder blocks whatever
// num_layers says; a 12-block decoder under a 4-block encoder is read the same way. Absent
// sparse counts take their defaults too (the step keys decide here).
TEST(HuggingFaceWritten, AbsentKeysTakeHuggingFacesDefaults) {
  SIDA_WRITE_HF_CHECKPOINT(
      dir, "decoder-depth",
      (Json{{"config", {{"num_decoder_layers", 12}, {"num_sparse_decoder_layers", 3}}},
            {"drop_config_keys", {"num_decoder_layers", "num_sparse_encoder_layers", "num_sparse_decoder_layers"}}}));
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  EXPECT_EQ((*model)->config().num_decoder_layers, 12);
  check_against_hf(dir, {{5, 17, 33, 9, 41, 60, 2, 1}}, 3, false);
  std::filesystem::remove_all(dir);
}

// safetensors' save_model keeps the tied embedding as decoder.embed_tokens.weight.
TEST(HuggingFaceWritten, TiedEmbeddingUnderAnotherNameLoads) {
  SIDA_WRITE_HF_CHECKPOINT(dir, "save-model", (Json{{"save_model", true}}));
  auto ckpt = SafetensorsCheckpoint::open(dir);
  ASSERT_TRUE(ckpt.ok());
  EXPECT_FALSE(ckpt->find("shared.weight").file);
  EXPECT_TRUE(ckpt->find("decoder.embed_tokens.weight").file);
  check_against_hf(dir, {{3, 4, 5, 6, 7, 1}}, 4, false);
  std::filesystem::remove_all(dir);
}

TEST(HuggingFaceWritten, Bf16ShardedPadIdsInsideRequestsAreMasked) {
  SIDA_WRITE_HF_CHECKPOINT(dir, "bf16-pads", (Json{{"dtype", "bfloat16"}, {"max_shard_size", "40KB"}}));
  ASSERT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  check_against_hf(dir, {{5, 0, 33, 9, 0, 0, 60, 1}, {42, 7, 0, 1}, {0, 11, 1}}, 4, false);
  std::filesystem::remove_all(dir);
}

// generation_config.json decides the end ids (here a list: every id but 0 and 5, so generation
// ends after the first token that is neither) and the pad id masked inside requests (5, not
// config.json's 0).
TEST(HuggingFaceWritten, GenerationConfigEndAndPadIds) {
  Json eos = Json::array();
  for (int id = 1; id < 96; ++id)
    if (id != 5) eos.push_back(id);
  SIDA_WRITE_HF_CHECKPOINT(dir, "generation-ids",
                           (Json{{"generation_config", {{"eos_token_id", eos}, {"pad_token_id", 5}}}}));
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  EXPECT_EQ((*model)->config().masked_pad_id(), 5);
  check_against_hf(dir, {{9, 5, 33, 0, 41, 5, 2, 1}, {42, 7, 5, 1}}, 4, false);
  std::filesystem::remove_all(dir);
}

TEST(HuggingFaceWritten, MissingDecoderStartTokenRefusesGeneration) {
  SIDA_WRITE_HF_CHECKPOINT(dir, "no-start", (Json{{"config", {{"decoder_start_token_id", nullptr}}}}));
  testing::expect_generation_needs_decoder_start(dir);
  std::filesystem::remove_all(dir);
}

TEST(HuggingFaceWritten, DenseT5IsNotASwitchModel) {
  SIDA_WRITE_HF_CHECKPOINT(dir, "t5", (Json{{"t5", true}}));
  auto model = ModelWeights::load(dir);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().to_string().find("not a Switch Transformers model"), std::string::npos)
      << model.status().to_string();
  std::filesystem::remove_all(dir);
}

// The error names the conversion; running it (with the venv's python) gives a folder that loads.
TEST(HuggingFaceWritten, PickleOnlyFolderNamesAConversionThatWorks) {
  SIDA_WRITE_HF_CHECKPOINT(dir, "bin", (Json{{"bin_only", true}}));
  ASSERT_TRUE(std::filesystem::exists(dir + "/pytorch_model.bin"));
  auto model = ModelWeights::load(dir);
  ASSERT_FALSE(model.ok());
  const std::string command = pickle_conversion_command(dir);
  EXPECT_NE(model.status().to_string().find(command), std::string::npos) << model.status().to_string();
  ASSERT_EQ(command.rfind("python3 ", 0), 0u);
  auto converted = perfmem::testing::run_command("env -u LD_PRELOAD -u ASAN_OPTIONS " + venv_python() +
                                                 command.substr(std::string("python3").size()));
  ASSERT_EQ(converted.exit_code, 0) << converted.output;
  check_against_hf(dir, {{3, 4, 5, 6, 7, 1}}, 3, false);
  std::filesystem::remove_all(dir);
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<float> out(std::filesystem::file_size(path) / sizeof(float));
  f.read(reinterpret_cast<char*>(out.data()), std::streamsize(out.size() * sizeof(float)));
  return out;
}

// `sida run --dump-encoder --dump-routes` against transformers, in both executions and with
// --encoder-only (whose --dump-logits is refused: there are no logits).
TEST(HuggingFaceWritten, CliDumpsOfEncoderStatesAndRouterChoicesMatch) {
  SIDA_WRITE_HF_CHECKPOINT(dir, "dumps", (Json{{"config", {{"expert_capacity", 3}}}}));
  const std::vector<std::vector<int32_t>> requests = {{5, 17, 33, 9, 41, 60, 2, 77, 12, 8, 1}, {42, 0, 7, 1}};
  std::string why;
  auto oracle = run_oracle(dir, 3, requests, &why);
  ASSERT_TRUE(oracle) << why;
  ASSERT_TRUE(write_text_file(dir + "/requests.txt", join(requests[0]) + "\n" + join(requests[1]) + "\n").ok());
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const SwitchConfig& c = (*model)->config();
  const auto hf_hidden = (*oracle)["encoder_hidden"].get<std::vector<float>>();
  const auto hf_routes = (*oracle)["encoder_router_choice"].get<std::vector<std::vector<int32_t>>>();
  const int64_t longest = int64_t(hf_hidden.size()) / (int64_t(requests.size()) * c.d_model);
  const std::string base = std::string(CLI_PATH) + " run " + dir + " --requests " + dir +
                           "/requests.txt --dump-encoder " + dir + "/enc.f32 --dump-routes " + dir + "/routes.json";
  for (const char* mode : {"--max-new-tokens 3", "--max-new-tokens 3 --execution window", "--encoder-only"}) {
    SCOPED_TRACE(mode);
    const bool generates = std::string(mode) != "--encoder-only";
    const std::string logits_file = dir + "/logits.f32";
    std::filesystem::remove(logits_file);
    auto run =
        perfmem::testing::run_command(base + " " + mode + (generates ? " --dump-logits " + logits_file : "") + " 2>&1");
    ASSERT_EQ(run.exit_code, 0) << run.output;
    if (generates) {
      // Every step's logits, request after request; the second request has a pad id inside,
      // which both executions mask as transformers does.
      const std::vector<float> logits = read_floats(logits_file);
      size_t offset = 0;
      for (size_t r = 0; r < requests.size(); ++r) {
        const auto hf_logits = (*oracle)["generations"][r]["logits"].get<std::vector<float>>();
        const size_t V = size_t(c.vocab_size);
        ASSERT_LE(offset + hf_logits.size(), logits.size()) << "request " << r;
        for (size_t step = 0; step * V < hf_logits.size(); ++step)
          EXPECT_LE(testing::relative_error(&logits[offset + step * V], &hf_logits[step * V], V), kTolerance)
              << "request " << r << " step " << step;
        offset += hf_logits.size();
      }
      EXPECT_EQ(offset, logits.size());
    }
    const std::vector<float> ours = read_floats(dir + "/enc.f32");
    std::vector<float> theirs;
    for (size_t r = 0; r < requests.size(); ++r)
      for (size_t t = 0; t < requests[r].size(); ++t)
        for (int64_t k = 0; k < c.d_model; ++k)
          theirs.push_back(hf_hidden[(r * size_t(longest) + t) * size_t(c.d_model) + size_t(k)]);
    ASSERT_EQ(ours.size(), theirs.size());
    EXPECT_LE(testing::relative_error(ours.data(), theirs.data(), ours.size()), kTolerance);
    auto routes = read_json_file(dir + "/routes.json");
    ASSERT_TRUE(routes.ok()) << routes.status().to_string();
    int64_t dropped = 0;
    for (size_t r = 0; r < requests.size(); ++r) {
      const Json& req = (*routes)["requests"][r];
      EXPECT_EQ(req["tokens"].get<std::vector<int32_t>>(), requests[r]);
      std::vector<std::vector<int32_t>> decoder(size_t(c.num_moe_layers() - c.num_encoder_moe_layers()));
      for (const Json& layer : req["layers"]) {
        const int64_t m = layer["moe_layer"].get<int64_t>();
        const auto expert = layer["expert"].get<std::vector<int32_t>>();
        for (uint8_t d : layer["dropped"].get<std::vector<uint8_t>>()) dropped += d;
        if (!layer["decoder"].get<bool>()) {
          const auto positions = layer["positions"].get<std::vector<int32_t>>();
          ASSERT_EQ(positions.size(), requests[r].size());
          for (size_t t = 0; t < positions.size(); ++t)
            EXPECT_EQ(expert[t], hf_routes[size_t(m)][r * size_t(longest) + size_t(positions[t])]) << m << " " << t;
        } else {
          decoder[size_t(m - c.num_encoder_moe_layers())].push_back(expert.at(0));
        }
      }
      if (generates) {
        EXPECT_EQ(decoder,
                  (*oracle)["generations"][r]["decoder_router_choice"].get<std::vector<std::vector<int32_t>>>());
      }
    }
    EXPECT_GT(dropped, 0) << "capacity 3 drops tokens of the 11-token request";
  }
  auto refused =
      perfmem::testing::run_command(std::string(CLI_PATH) + " run " + dir +
                                    " --tokens \"5 6 1\" --encoder-only --dump-logits " + dir + "/l.f32 2>&1");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("--dump-encoder"), std::string::npos) << refused.output;
  std::filesystem::remove_all(dir);
}
#endif

}  // namespace
}  // namespace perfmem::sida
