// collect-routes: the dataset holds, per token, the top-T router logits of every encoder MoE
// layer exactly as the engine computes them, with a deterministic train/validation split; files
// round-trip, and corrupted ones are refused by name.
#include <gtest/gtest.h>

#include <filesystem>

#include "perfmem/core/io.h"
#include "perfmem/core/safetensors.h"
#include "perfmem/sida/routes_dataset.h"
#include "perfmem/sida/serve.h"
#include "perfmem/testing/subprocess.h"
#include "test_util.h"

namespace perfmem::sida {
namespace {

class RoutesDatasetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SwitchConfig c = *preset_config("tiny");
    c.num_experts = 6;
    c.expert_capacity = 3;  // some tokens are dropped: their logits are still the teacher's
    dir_ = new std::string(testing::make_test_checkpoint("routes-dataset", c));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
};
std::string* RoutesDatasetTest::dir_ = nullptr;

TEST_F(RoutesDatasetTest, HoldsTheEnginesTopLogitsPerTokenAndLayer) {
  testing::LoadedModel m = testing::load_model(*dir_);
  ASSERT_TRUE(m.store);
  const SwitchConfig& c = m.model->config();
  const auto corpus = synthetic_requests(7, 3, 20, c.vocab_size, 5);
  CollectOptions opt;
  opt.top = 4;  // fewer than the 6 experts: truncated
  opt.validation_every = 3;
  opt.show_progress = false;
  opt.window = 3;  // windows of 3, 3 and 1 requests
  auto data = collect_routes(*m.model, corpus, opt);
  ASSERT_TRUE(data.ok()) << data.status().to_string();
  // One window for all, and one request per window: the same bits.
  for (int64_t window : {int64_t(1), int64_t(64)}) {
    opt.window = window;
    auto other = collect_routes(*m.model, corpus, opt);
    ASSERT_TRUE(other.ok()) << other.status().to_string();
    EXPECT_EQ(other->tokens, data->tokens);
    EXPECT_EQ(other->offsets, data->offsets);
    EXPECT_EQ(other->validation, data->validation);
    EXPECT_EQ(other->top_logits, data->top_logits) << "window " << window;
    EXPECT_EQ(other->top_experts, data->top_experts) << "window " << window;
  }
  EXPECT_EQ(data->num_moe_layers, c.num_encoder_moe_layers());
  EXPECT_EQ(data->top, 4);
  EXPECT_EQ(data->validation, (std::vector<uint8_t>{0, 0, 1, 0, 0, 1, 0}));
  ASSERT_EQ(data->offsets.size(), corpus.size() + 1);

  // The teacher: every router row of the engine, encoding each request alone.
  Engine engine(*m.model, *m.store);
  const int64_t M = data->num_moe_layers, T = data->top, E = c.num_experts;
  int64_t checked = 0;
  for (size_t r = 0; r < corpus.size(); ++r) {
    const int64_t first = data->offsets[r];
    ASSERT_EQ(data->offsets[r + 1] - first, int64_t(corpus[r].size()));
    EXPECT_EQ(std::vector<int32_t>(data->tokens.begin() + first, data->tokens.begin() + data->offsets[r + 1]),
              corpus[r]);
    engine.set_observer([&](const MoeLayerVisit& v) {
      for (size_t t = 0; t < v.positions.size(); ++t) {
        const float* row = &v.router_logits[t * size_t(E)];
        const size_t at = size_t((first + v.positions[t]) * M * T + v.moe_layer * T);
        EXPECT_EQ(data->top_experts[at], v.choice[t]);
        std::vector<float> sorted(row, row + E);
        std::sort(sorted.rbegin(), sorted.rend());
        for (int64_t k = 0; k < T; ++k) {
          EXPECT_EQ(data->top_logits[at + size_t(k)], sorted[size_t(k)]);
          EXPECT_EQ(data->top_logits[at + size_t(k)], row[data->top_experts[at + size_t(k)]]);
        }
        ++checked;
      }
    });
    ASSERT_TRUE(engine.encode({corpus[r]}).ok());
  }
  EXPECT_EQ(checked, data->num_tokens() * M);
}

TEST_F(RoutesDatasetTest, FilesRoundTripAndCorruptionIsNamed) {
  testing::LoadedModel m = testing::load_model(*dir_);
  ASSERT_TRUE(m.store);
  CollectOptions opt;
  opt.show_progress = false;
  auto data = collect_routes(*m.model, synthetic_requests(4, 3, 9, m.model->config().vocab_size, 1), opt);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->top, 6);  // 30 asked, 6 experts
  const std::string path = *dir_ + "/routes.safetensors";
  ASSERT_TRUE(write_routes_dataset(path, *data).ok());
  auto back = read_routes_dataset(path);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->tokens, data->tokens);
  EXPECT_EQ(back->offsets, data->offsets);
  EXPECT_EQ(back->validation, data->validation);
  EXPECT_EQ(back->top_logits, data->top_logits);
  EXPECT_EQ(back->top_experts, data->top_experts);

  auto expect_refused = [&](RoutesDataset bad, const std::string& word) {
    ASSERT_TRUE(write_routes_dataset(path, bad).ok());
    auto r = read_routes_dataset(path);
    ASSERT_FALSE(r.ok()) << word;
    EXPECT_NE(r.status().to_string().find(word), std::string::npos) << r.status().to_string();
    EXPECT_NE(r.status().to_string().find(path), std::string::npos) << r.status().to_string();
  };
  RoutesDataset bad = *data;
  bad.tokens[2] = int32_t(bad.vocab_size);
  expect_refused(bad, "tokens");
  bad = *data;
  bad.top_experts[5] = -1;
  expect_refused(bad, "top_experts");
  bad = *data;
  bad.offsets[1] = bad.offsets[2];
  expect_refused(bad, "offsets");
  bad = *data;
  bad.num_experts = bad.top - 1;  // fewer experts than logits kept: the metadata lies
  expect_refused(bad, "top");
  bad = *data;
  bad.top = 7;  // arrays sized for 6: refused before writing
  EXPECT_FALSE(write_routes_dataset(path, bad).ok());
  SafetensorsWriter other;
  other.set_metadata("format", "something-else");
  const int32_t x = 0;
  other.add("tokens", DType::kI32, {1}, &x);
  ASSERT_TRUE(other.write(path).ok());
  auto r = read_routes_dataset(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().to_string().find("sida-routes-1"), std::string::npos) << r.status().to_string();
}

TEST_F(RoutesDatasetTest, CliCollectsACorpusFile) {
  const std::string corpus = *dir_ + "/corpus.txt", out = *dir_ + "/cli-routes.safetensors";
  ASSERT_TRUE(write_text_file(corpus, "5 6 7 1\n\n8 9 1\n10 11 12 13 1\n").ok());
  auto run = perfmem::testing::run_command(std::string(CLI_PATH) + " collect-routes " + *dir_ + " --corpus " + corpus +
                                           " --validation-every 2 -o " + out + " 2>&1");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("12 tokens of 3 requests (2 training, 1 validation)"), std::string::npos) << run.output;
  auto data = read_routes_dataset(out);
  ASSERT_TRUE(data.ok()) << data.status().to_string();
  EXPECT_EQ(data->offsets, (std::vector<int64_t>{0, 4, 7, 12}));
  ASSERT_TRUE(write_text_file(corpus, "5 6 1\n5 x 1\n").ok());
  run = perfmem::testing::run_command(std::string(CLI_PATH) + " collect-routes " + *dir_ + " --corpus " + corpus +
                                      " -o " + out + " 2>&1");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("corpus.txt:2"), std::string::npos) << run.output;
  run = perfmem::testing::run_command(std::string(CLI_PATH) + " collect-routes " + *dir_ + " --text-corpus " + corpus +
                                      " -o " + out + " 2>&1");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("spiece.model"), std::string::npos) << run.output;
  // An id outside the vocabulary in the third request: named by its request, though the three
  // are encoded as one window.
  ASSERT_TRUE(write_text_file(corpus, "5 6 1\n7 8 1\n9 99999 1\n").ok());
  run = perfmem::testing::run_command(std::string(CLI_PATH) + " collect-routes " + *dir_ + " --corpus " + corpus +
                                      " -o " + out + " 2>&1");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("corpus request 2"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("99999"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace perfmem::sida
