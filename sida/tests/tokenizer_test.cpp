// Text through SentencePiece: a small model trained here (T5's special ids: pad 0, eos 1,
// unk 2), round trips, and `sida run --text` / `sida collect-routes --text-corpus` on a checkpoint
// folder holding spiece.model.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>

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

}  // namespace
}  // namespace perfmem::sida
