// Config parsing, presets, make_checkpoint's layout, and clear errors for broken checkpoints:
// missing shard, truncated file, lying header, wrong shapes, missing tensors, unsupported config.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/safetensors.h"
#include "test_util.h"

namespace perfmem::sida {
namespace {

void expect_load_error(const std::string& dir, const std::vector<std::string>& words) {
  auto m = ModelWeights::load(dir);
  ASSERT_FALSE(m.ok()) << "loading " << dir << " should fail";
  for (const std::string& w : words)
    EXPECT_NE(m.status().to_string().find(w), std::string::npos)
        << "error should mention \"" << w << "\": " << m.status().to_string();
}

void edit_config(const std::string& dir, const std::function<void(Json&)>& edit) {
  auto j = read_json_file(dir + "/config.json");
  ASSERT_TRUE(j.ok());
  edit(*j);
  ASSERT_TRUE(write_text_file(dir + "/config.json", j->dump(2)).ok());
}

TEST(Config, PresetsHaveTheRealShapes) {
  auto base = preset_config("switch-base-128");
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(base->num_experts, 128);
  EXPECT_EQ(base->d_model, 768);
  EXPECT_EQ(base->d_ff, 3072);
  EXPECT_EQ(base->num_moe_layers(), 12);
  EXPECT_TRUE(base->encoder_block_is_sparse(1));
  EXPECT_FALSE(base->encoder_block_is_sparse(0));
  EXPECT_TRUE(base->decoder_block_is_sparse(11));
  EXPECT_EQ(base->expert_f32_bytes(), 2ull * 768 * 3072 * 4);  // 18.9 MB
  EXPECT_FALSE(preset_config("switch-large-128").ok());
  // Sizes quoted for the fp32 models (binary units): base-8 2.30, base-128 27.6 (no lm_head copy).
  MakeCheckpointOptions opt;
  opt.write_lm_head = false;
  const double gib = double(1ull << 30);
  EXPECT_NEAR(double(checkpoint_data_bytes(*preset_config("switch-base-8"), opt)) / gib, 2.30, 0.02);
  EXPECT_NEAR(double(checkpoint_data_bytes(*base, opt)) / gib, 27.6, 0.1);
}

TEST(Config, RoundTripsThroughJson) {
  SwitchConfig c = *preset_config("tiny");
  c.expert_capacity = 5;
  auto back = parse_config(config_to_json(c), "config.json");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->expert_capacity, 5);
  EXPECT_EQ(back->num_moe_layers(), c.num_moe_layers());
}

TEST(Checkpoint, MakeCheckpointWritesTheHuggingFaceLayout) {
  std::string dir = testing::make_test_checkpoint("layout", *preset_config("tiny"), DType::kBF16, 100 << 10);
  auto ckpt = SafetensorsCheckpoint::open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().to_string();
  EXPECT_GT(ckpt->files().size(), 1u);
  auto wi = ckpt->get("encoder.block.1.layer.1.mlp.experts.expert_3.wi.weight");
  ASSERT_TRUE(wi.ok());
  EXPECT_EQ(wi->info->dtype, DType::kBF16);
  EXPECT_EQ(wi->info->shape, (Shape{48, 32}));
  EXPECT_TRUE(ckpt->get("decoder.block.3.layer.2.mlp.router.classifier.weight").ok());
  EXPECT_TRUE(ckpt->get("decoder.block.0.layer.1.EncDecAttention.q.weight").ok());
  EXPECT_TRUE(ckpt->get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").ok());
  EXPECT_FALSE(ckpt->get("encoder.block.0.layer.1.mlp.experts.expert_0.wi.weight").ok());  // dense
  auto m = ModelWeights::load(dir);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->expert(0, 3).wi->name, "encoder.block.1.layer.1.mlp.experts.expert_3.wi.weight");
  EXPECT_EQ((*m)->expert(3, 0).wo->name, "decoder.block.3.layer.2.mlp.experts.expert_0.wo.weight");
  std::filesystem::remove_all(dir);
}

TEST(CorruptCheckpoint, MissingShard) {
  std::string dir = testing::make_test_checkpoint("missing-shard", *preset_config("tiny"), DType::kF32, 100 << 10);
  std::string victim;
  for (auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().filename().string().find("-of-") != std::string::npos) victim = e.path().string();
  ASSERT_FALSE(victim.empty());
  std::filesystem::remove(victim);
  expect_load_error(dir, {std::filesystem::path(victim).filename().string()});
  std::filesystem::remove_all(dir);
}

TEST(CorruptCheckpoint, TruncatedFile) {
  std::string dir = testing::make_test_checkpoint("truncated", *preset_config("tiny"));
  std::string file = dir + "/model.safetensors";
  ASSERT_EQ(0, ::truncate(file.c_str(), off_t(std::filesystem::file_size(file) - 1000)));
  expect_load_error(dir, {"model.safetensors"});
  std::filesystem::remove_all(dir);
}

TEST(CorruptCheckpoint, LyingHeaderLength) {
  std::string dir = testing::make_test_checkpoint("lying", *preset_config("tiny"));
  std::string file = dir + "/model.safetensors";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    uint64_t huge = 1ull << 40;
    f.write(reinterpret_cast<const char*>(&huge), 8);
  }
  expect_load_error(dir, {"model.safetensors", "header"});
  std::filesystem::remove_all(dir);
}

TEST(CorruptCheckpoint, WrongShapeNamesTheTensor) {
  std::string dir = testing::make_test_checkpoint("shape", *preset_config("tiny"));
  edit_config(dir, [](Json& j) { j["d_ff"] = 50; });  // the weights say 48
  expect_load_error(dir, {"encoder.block.0.layer.1.mlp.wi.weight", "[50, 32]", "[48, 32]"});
  std::filesystem::remove_all(dir);
}

TEST(CorruptCheckpoint, MissingExpertTensorIsNamed) {
  std::string dir = testing::make_test_checkpoint("missing-tensor", *preset_config("tiny"));
  edit_config(dir, [](Json& j) { j["num_experts"] = 5; });
  expect_load_error(dir, {"num_experts", "expert_4.wi.weight"});  // checked before the shapes
  std::filesystem::remove_all(dir);
}

TEST(CorruptCheckpoint, UnsupportedConfigValuesAreRefused) {
  std::string dir = testing::make_test_checkpoint("unsupported", *preset_config("tiny"));
  edit_config(dir, [](Json& j) { j["dense_act_fn"] = "gelu_new"; });
  expect_load_error(dir, {"config.json", "dense_act_fn", "gelu_new"});
  edit_config(dir, [](Json& j) {
    j["dense_act_fn"] = "relu";
    j["router_bias"] = true;
  });
  expect_load_error(dir, {"router_bias"});
  edit_config(dir, [](Json& j) {
    j["router_bias"] = false;
    j.erase("num_experts");
  });
  expect_load_error(dir, {"num_experts"});
  std::filesystem::remove_all(dir);
}

TEST(Config, IntegersMustBeIntegersAndTheModelTypeSwitch) {
  Json j = config_to_json(*preset_config("tiny"));
  j["num_experts"] = 4.5;  // nlohmann alone would read 4; Hugging Face refuses it
  auto r = parse_config(j, "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().to_string().find("num_experts"), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().to_string().find("4.5"), std::string::npos) << r.status().to_string();
  j["num_experts"] = 1e9;  // a float, even if whole
  EXPECT_FALSE(parse_config(j, "config.json").ok());
  j["num_experts"] = 4;
  j["model_type"] = "t5";
  r = parse_config(j, "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().to_string().find("not a Switch Transformers model"), std::string::npos)
      << r.status().to_string();
  j.erase("model_type");
  r = parse_config(j, "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().to_string().find("not a Switch Transformers model"), std::string::npos);
}

TEST(Config, SparseStepKeysDecideTheSparseBlocksAsInHuggingFace) {
  SwitchConfig tiny = *preset_config("tiny");
  tiny.num_layers = 6;
  Json j = config_to_json(tiny);
  EXPECT_EQ(j["encoder_sparse_step"], 3);  // written like Hugging Face writes it
  j["num_sparse_encoder_layers"] = 3;      // step 2 from the counts...
  j["encoder_sparse_step"] = 3;            // ...but the key wins: blocks 1 and 4
  j["decoder_sparse_step"] = 1;            // every decoder block
  auto c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  std::vector<int64_t> sparse;
  for (int64_t i = 0; i < c->num_layers; ++i)
    if (c->encoder_block_is_sparse(i)) sparse.push_back(i);
  EXPECT_EQ(sparse, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(c->num_encoder_moe_layers(), 2);
  EXPECT_EQ(c->num_moe_layers(), 2 + c->num_decoder_layers);
  EXPECT_EQ(c->moe_layer_place(1).block, 4);
  EXPECT_EQ(c->moe_layer_place(2).decoder, true);
  EXPECT_EQ(c->moe_layer_place(5).block, 3);
  for (int64_t step : {0, -2}) {  // Hugging Face: no sparse block unless step > 0
    j["encoder_sparse_step"] = step;
    c = parse_config(j, "config.json");
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->num_encoder_moe_layers(), 0) << step;
  }
  // Without the keys, the counts give the step; the closed forms agree with the block rule.
  for (int64_t layers : {1, 2, 5, 12, 13})
    for (int64_t sparse_count : {0, 1, 2, 3, 6, 20}) {
      SwitchConfig s = tiny;
      s.num_layers = layers;
      s.num_sparse_encoder_layers = sparse_count;
      int64_t n = 0;
      for (int64_t i = 0; i < layers; ++i)
        if (s.encoder_block_is_sparse(i)) { EXPECT_EQ(s.moe_layer_place(n++).block, i); }
      EXPECT_EQ(s.num_encoder_moe_layers(), n) << layers << " " << sparse_count;
    }
}

// SwitchTransformersConfig's constructor defaults num_decoder_layers to 12, not to num_layers
// (only an explicit null copies num_layers), and the sparse counts to 3.
TEST(Config, AbsentDecoderDepthAndSparseCountsAreHuggingFacesDefaults) {
  Json j = config_to_json(*preset_config("tiny"));  // 4 encoder blocks
  j.erase("num_decoder_layers");
  auto c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->num_decoder_layers, 12);
  EXPECT_TRUE(c->num_decoder_layers_defaulted);
  EXPECT_EQ(c->num_moe_layers(), 2 + 6);  // decoder_sparse_step 2 as written: blocks 1, 3, ..., 11
  j["num_decoder_layers"] = nullptr;
  c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->num_decoder_layers, 4);
  EXPECT_FALSE(c->num_decoder_layers_defaulted);
  // Absent sparse counts are the constructor's 3: without step keys, 4 // 3 = step 1 (every block).
  j["num_decoder_layers"] = 4;
  j.erase("num_sparse_encoder_layers");
  j.erase("num_sparse_decoder_layers");
  c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->num_encoder_moe_layers(), 2);  // the step keys still decide: step 2
  j.erase("encoder_sparse_step");
  j.erase("decoder_sparse_step");
  c = parse_config(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->num_moe_layers(), 4 + 4);
  // A 4-block decoder without the key is not silently read as 4 blocks.
  std::string dir = testing::make_test_checkpoint("decoder-depth", *preset_config("tiny"));
  edit_config(dir, [](Json& config) { config.erase("num_decoder_layers"); });
  expect_load_error(dir, {"config.json", "num_decoder_layers", "12", "default", "decoder.block.11"});
  std::filesystem::remove_all(dir);
}

TEST(Config, DecoderStartTokenIsReadWhereHuggingFaceReadsIt) {
  std::string dir = testing::make_test_checkpoint("decoder-start", *preset_config("tiny"));
  edit_config(dir, [](Json& j) { j.erase("decoder_start_token_id"); });
  auto c = load_config(dir);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->decoder_start_token_id, -1);  // missing: generation is refused (engine test)
  edit_config(dir, [](Json& j) { j["bos_token_id"] = 7; });
  EXPECT_EQ(load_config(dir)->decoder_start_token_id, 7);
  ASSERT_TRUE(write_text_file(dir + "/generation_config.json", "{\"decoder_start_token_id\": 9}").ok());
  EXPECT_EQ(load_config(dir)->decoder_start_token_id, 9);
  ASSERT_TRUE(write_text_file(dir + "/generation_config.json", "{\"decoder_start_token_id\": 900}").ok());
  auto bad = load_config(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().to_string().find("generation_config.json"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// generate() reads its end ids and pad id from generation_config.json when the folder has one
// (a key absent there is None), else from config.json.
TEST(Config, EndAndPadIdsAreReadWhereGenerateReadsThem) {
  std::string dir = testing::make_test_checkpoint("generation-ids", *preset_config("tiny"));
  auto c = load_config(dir);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->generation_eos_ids, (std::vector<int64_t>{1}));
  EXPECT_EQ(c->masked_pad_id(), 0);
  edit_config(dir, [](Json& j) { j["pad_token_id"] = 1; });  // pad == eos: nothing is masked
  EXPECT_EQ(load_config(dir)->masked_pad_id(), -1);
  ASSERT_TRUE(write_text_file(dir + "/generation_config.json", R"({"eos_token_id": [7, 9], "pad_token_id": 5})").ok());
  c = load_config(dir);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->generation_eos_ids, (std::vector<int64_t>{7, 9}));
  EXPECT_TRUE(c->is_generation_eos(9));
  EXPECT_FALSE(c->is_generation_eos(1));
  EXPECT_EQ(c->eos_token_id, 1);  // config.json's, for the tokenizer
  EXPECT_EQ(c->masked_pad_id(), 5);
  ASSERT_TRUE(write_text_file(dir + "/generation_config.json", R"({"eos_token_id": 3})").ok());
  c = load_config(dir);
  EXPECT_EQ(c->generation_eos_ids, (std::vector<int64_t>{3}));
  EXPECT_EQ(c->masked_pad_id(), -1);  // no pad id: generate() pads with the end id
  for (const char* bad : {R"({"eos_token_id": [1, 900]})", R"({"eos_token_id": [1.5]})", R"({"pad_token_id": "0"})"}) {
    ASSERT_TRUE(write_text_file(dir + "/generation_config.json", bad).ok());
    auto r = load_config(dir);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().to_string().find("generation_config.json"), std::string::npos) << r.status().to_string();
  }
  std::filesystem::remove_all(dir);
}

TEST(CorruptCheckpoint, AbsurdSizesAreRefusedBeforeAnythingIsAllocated) {
  std::string dir = testing::make_test_checkpoint("absurd", *preset_config("tiny"));
  const Json original = *read_json_file(dir + "/config.json");
  struct Case {
    const char* key;
    Json value;
    std::vector<std::string> words;
  };
  const Case cases[] = {
      {"num_experts", 1000000000, {"num_experts", "1000000000", "expert_999999999"}},
      {"num_layers", 1000000000, {"num_layers", "encoder.block.999999999"}},
      {"num_decoder_layers", 1000000000, {"num_decoder_layers", "decoder.block.999999999"}},
      {"d_kv", int64_t(1) << 62, {"d_kv", "64 bits"}},
      {"d_ff", int64_t(1) << 61, {"d_ff", "64 bits"}},
      {"vocab_size", INT64_MAX, {"vocab_size", "64 bits"}},
      {"num_experts", 1e9, {"num_experts", "an integer"}},
      {"num_layers", 18446744073709551615ull, {"num_layers", "2^63"}},
      {"encoder_sparse_step", 1, {"encoder_sparse_step", "block 0", "router"}},  // every block sparse
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.key);
    edit_config(dir, [&](Json& j) {
      j = original;
      j[k.key] = k.value;
    });
    expect_load_error(dir, k.words);
  }
  std::filesystem::remove_all(dir);
}

// A file that does hold a tensor of block 999999999 still cannot make the loader size a billion
// blocks: the tensors the config needs are counted (in 128 bits) against those present first.
TEST(CorruptCheckpoint, ABillionBlocksAreCountedAgainstTheTensorsPresent) {
  std::string dir = testing::make_test_checkpoint("billion", *preset_config("tiny"));
  {
    auto file = SafetensorsFile::open(dir + "/model.safetensors");
    ASSERT_TRUE(file.ok());
    SafetensorsWriter w;
    for (const TensorInfo& t : file->tensors()) w.add(t.name, t.dtype, t.shape, file->mapped_bytes(t));
    const TensorInfo* q = file->find("encoder.block.3.layer.0.SelfAttention.q.weight");
    ASSERT_TRUE(q);
    w.add("encoder.block.999999999.layer.0.SelfAttention.q.weight", q->dtype, q->shape, file->mapped_bytes(*q));
    ASSERT_TRUE(w.write(dir + "/rewritten.safetensors").ok());
  }
  std::filesystem::rename(dir + "/rewritten.safetensors", dir + "/model.safetensors");
  edit_config(dir, [](Json& j) {
    j["num_layers"] = 1000000000;
    j["encoder_sparse_step"] = 0;  // all dense: no router to miss, only the count can tell
  });
  expect_load_error(dir, {"config.json", "tensors", "holds"});
  std::filesystem::remove_all(dir);
}

TEST(CorruptCheckpoint, PickleOnlyFolderNamesTheFormatAndTheConversion) {
  std::string dir = testing::make_test_checkpoint("pickle", *preset_config("tiny"));
  std::filesystem::rename(dir + "/model.safetensors", dir + "/pytorch_model.bin");
  expect_load_error(dir, {"pytorch_model.bin", "safetensors", pickle_conversion_command(dir)});
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace perfmem::sida
