// Text through SentencePiece: a small model trained here (T5's special ids: pad 0, eos 1,
// unk 2), round trips, and `sida run --text` / `sida collect-routes --text-corpus` on a checkpoint
// folder holding spiece.model; Mixtral's tokenizer.model (Llama's ids: unk 0, bos 1, eos 2) with
// bos prepended and tokenizer_config.json's settings; Qwen2-MoE's BPE tokenizer.json refused.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>

#include "perfmem/core/io.h"
#include "perfmem/sida/tokenizer.h"
#include "perfmem/testing/subprocess.h"
#include "test_util.h"

namespace perfmem::sida {
namespace {

std::string train_model(const std::string& dir) {
  std::ofstream corpus(dir + "/corpus.txt");
  for (int i = 0; i < 50; ++i)
    corpus << "a very good movie with a great story\nthe film was bad and the acting was worse\n"
           << "an enjoyable and moving film " << i % 7 << "\n";
  corpus.close();
  auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + dir + "/corpus.txt --model_prefix=" + dir +
      "/spiece --vocab_size=60 --model_type=bpe --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 "
      "--minloglevel=2");
  EXPECT_TRUE(status.ok()) << status.ToString();
  return dir + "/spiece.model";
}

TEST(Tokenizer, EncodesWithEosAndDecodesBack) {
  std::string dir = testing::temp_dir("spm");
  auto tok = Tokenizer::open(train_model(dir));
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  auto ids = (*tok)->encode("a very good movie");
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 2u);
  EXPECT_EQ(ids->back(), 1);
  for (int32_t id : *ids) EXPECT_LT(id, 60);
  EXPECT_EQ((*tok)->decode(*ids), "a very good movie");
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, MissingOrBrokenModelIsAClearError) {
  std::string dir = testing::temp_dir("spm-bad");
  auto missing = Tokenizer::open(dir + "/spiece.model");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().to_string().find("spiece.model"), std::string::npos);
  std::ofstream(dir + "/spiece.model") << "not a model";
  auto broken = Tokenizer::open(dir + "/spiece.model");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().to_string().find("SentencePiece"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, RunTakesTextWhenTheCheckpointHasSpiece) {
  std::string dir = testing::make_test_checkpoint("spm-run", *preset_config("tiny"));
  train_model(dir);
  auto r = perfmem::testing::run_command(std::string(CLI_PATH) + " run " + dir +
                                         " --text \"a good film\" --max-new-tokens 3 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("text: "), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, CollectRoutesTakesATextCorpus) {
  std::string dir = testing::make_test_checkpoint("spm-collect", *preset_config("tiny"));
  train_model(dir);  // also leaves corpus.txt: 150 lines of text
  auto r = perfmem::testing::run_command(std::string(CLI_PATH) + " collect-routes " + dir + " --text-corpus " + dir +
                                         "/corpus.txt -o " + dir + "/routes.safetensors 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("of 150 requests (135 training, 15 validation)"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

// A Llama-style SentencePiece model (unk 0, bos 1, eos 2, no pad) as `dir`/tokenizer.model.
void train_llama_model(const std::string& dir) {
  std::ofstream corpus(dir + "/corpus.txt");
  for (int i = 0; i < 50; ++i)
    corpus << "a very good movie with a great story\nthe film was bad and the acting worse\n";
  corpus.close();
  auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + dir + "/corpus.txt --model_prefix=" + dir +
      "/tokenizer --vocab_size=60 --model_type=bpe --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --minloglevel=2");
  ASSERT_TRUE(status.ok()) << status.ToString();
}

// The prompt ids `sida run --text` ran (from --dump-routes) and its output.
std::vector<int32_t> run_text(const std::string& dir, const std::string& text, std::string* output) {
  auto r = perfmem::testing::run_command(std::string(CLI_PATH) + " run " + dir + " --text '" + text +
                                         "' --max-new-tokens 3 --dump-routes " + dir + "/routes.json 2>&1");
  *output = r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code != 0) return {};
  auto routes = read_json_file(dir + "/routes.json");
  EXPECT_TRUE(routes.ok());
  return routes.ok() ? (*routes)["requests"][0]["tokens"].get<std::vector<int32_t>>() : std::vector<int32_t>{};
}

TEST(Tokenizer, MixtralTokenizerModelPrependsBosAndFollowsTokenizerConfig) {
  const std::string dir = testing::make_test_checkpoint("spm-mixtral", *preset_config("mixtral-tiny"));
  train_llama_model(dir);
  auto tok = open_checkpoint_tokenizer(dir, (*ModelWeights::load(dir))->config());
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  auto pieces = Tokenizer::open(dir + "/tokenizer.model", TokenizerOptions{});
  ASSERT_TRUE(pieces.ok());
  const std::vector<int32_t> bare = *(*pieces)->encode("a good film");
  std::vector<int32_t> with_bos = {1};
  with_bos.insert(with_bos.end(), bare.begin(), bare.end());
  EXPECT_EQ(*(*tok)->encode("a good film"), with_bos);
  // Decoding drops bos, eos and unknown pieces.
  std::vector<int32_t> noisy = {1, 0};
  noisy.insert(noisy.end(), bare.begin(), bare.end());
  noisy.push_back(2);
  EXPECT_EQ((*tok)->decode(noisy), "a good film");
  std::string output;
  EXPECT_EQ(run_text(dir, "a good film", &output), with_bos);
  EXPECT_NE(output.find("\ntext: "), std::string::npos) << output;
  // tokenizer_config.json's add_bos_token / add_eos_token change it.
  ASSERT_TRUE(
      write_text_file(dir + "/tokenizer_config.json", R"({"add_bos_token": false, "add_eos_token": true})").ok());
  std::vector<int32_t> with_eos = bare;
  with_eos.push_back(2);
  EXPECT_EQ(run_text(dir, "a good film", &output), with_eos);
  ASSERT_TRUE(write_text_file(dir + "/tokenizer_config.json", R"({"add_bos_token": "yes"})").ok());
  auto bad = perfmem::testing::run_command(std::string(CLI_PATH) + " run " + dir + " --text 'a film' 2>&1");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("add_bos_token"), std::string::npos) << bad.output;
  // A Switch checkpoint's spiece.model is not Mixtral's file, nor the other way round.
  std::filesystem::remove(dir + "/tokenizer.model");
  auto missing = perfmem::testing::run_command(std::string(CLI_PATH) + " run " + dir + " --text 'a film' 2>&1");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("tokenizer.model"), std::string::npos) << missing.output;
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, Qwen2MoeBpeTokenizerIsRefusedAskingForIds) {
  const std::string dir = testing::make_test_checkpoint("spm-qwen", *preset_config("qwen2-moe-tiny"));
  ASSERT_TRUE(write_text_file(dir + "/tokenizer.json", R"({"model": {"type": "BPE"}})").ok());
  auto r = perfmem::testing::run_command(std::string(CLI_PATH) + " run " + dir + " --text 'a film' 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("tokenizer.json"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("give token ids"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace perfmem::sida
