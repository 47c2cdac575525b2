// Data generators follow the workload definitions; the tree reader handles SST-style input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "perfmem/acrobat/data.h"

namespace perfmem::acrobat {
namespace {

TEST(AcrobatData, SplitMixMatchesTheReferenceSequence) {
  SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFull);  // the published first output for seed 0
  EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ull);
  SplitMix64 r2(5);
  for (int i = 0; i < 1000; ++i) {
    int64_t v = r2.uniform_int(3, 7);
    ASSERT_GE(v, 3);
    ASSERT_LE(v, 7);
  }
}

TEST(AcrobatData, HashedParametersAreDeterministicAndInRange) {
  float a = hashed_parameter(2, 17, 0.5), b = hashed_parameter(2, 17, 0.5);
  EXPECT_EQ(a, b);
  EXPECT_NE(hashed_parameter(2, 18, 0.5), a);
  double mean = 0;
  for (int k = 0; k < 10000; ++k) {
    float v = hashed_parameter(7, k, 0.1);
    ASSERT_LE(std::fabs(v), 0.1f);
    mean += v;
  }
  EXPECT_NEAR(mean / 10000, 0.0, 0.003);
}

TEST(AcrobatData, BirnnSentenceLengthsMatchTheWorkloadStatistics) {
  // The workload file states mean length 26.8 over instances 0..255 and 26.7 over 0..767.
  auto s = birnn_sentences(768);
  double sum256 = 0, sum768 = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    ASSERT_GE(s[i].words.size(), 5u);
    ASSERT_LE(s[i].words.size(), 50u);
    (i < 256 ? sum256 : sum768) += static_cast<double>(s[i].words.size());
  }
  sum768 += sum256;
  EXPECT_NEAR(sum256 / 256, 26.8, 0.05);
  EXPECT_NEAR(sum768 / 768, 26.7, 0.05);
}

TEST(AcrobatData, TreesAreWellFormed) {
  for (const auto& t : complete_trees(3, 6, 404)) {
    ASSERT_EQ(t.nodes.size(), 63u);
    for (size_t i = 0; i < t.nodes.size(); ++i) {
      if (t.nodes[i].left >= 0) {
        EXPECT_LT(t.nodes[i].left, static_cast<int32_t>(i));
        EXPECT_LT(t.nodes[i].right, static_cast<int32_t>(i));
      }
    }
  }
  auto mv = mvrnn_trees(2);
  int leaves = 0;
  for (const auto& n : mv[0].nodes) leaves += n.left < 0;
  EXPECT_EQ(leaves, 32);
  auto nested = nested_sentences(200);
  double s = 0;
  for (const auto& n : nested) {
    ASSERT_GE(n.sentences.size(), 2u);
    ASSERT_LE(n.sentences.size(), 10u);
    s += static_cast<double>(n.sentences.size());
  }
  EXPECT_NEAR(s / 200, 6.0, 0.5);
  for (const auto& t : random_trees(50, 9)) {
    int l = 0;
    for (const auto& n : t.nodes) l += n.left < 0;
    EXPECT_EQ(t.nodes.size(), static_cast<size_t>(2 * l - 1));
  }
}

TEST(AcrobatData, PtbReaderBinarisesAndReportsErrors) {
  auto trees =
      parse_ptb_trees("sst.txt", "(3 (2 It) (4 (2 's) (3 fine)))\n\n(1 (2 a) (2 b) (2 c))\n(2 (2 (2 alone)))\n");
  ASSERT_TRUE(trees.ok()) << trees.status().to_string();
  ASSERT_EQ(trees->size(), 3u);
  EXPECT_EQ((*trees)[0].nodes.size(), 5u);
  EXPECT_EQ((*trees)[1].nodes.size(), 5u);  // three children binarised to the right
  EXPECT_EQ((*trees)[2].nodes.size(), 1u);  // unary chain collapsed to its leaf
  const auto& root = (*trees)[0].nodes.back();
  EXPECT_GE(root.left, 0);
  EXPECT_GT((*trees)[0].nodes[0].word, 0);  // words are 1..vocab-1

  auto bad = parse_ptb_trees("sst.txt", "(3 (2 It) (4 good)\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("sst.txt:1:19"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("expected ')'"), std::string::npos) << bad.status().message();
  auto empty = parse_ptb_trees("sst.txt", "(3 )\n");
  ASSERT_FALSE(empty.ok());
}

TEST(AcrobatData, SequenceFilesReadFlatAndNestedInstances) {
  std::string path = ::testing::TempDir() + "acrobat_sequences.txt";
  std::ofstream(path) << "1 2 3\n\n4 5 | 6 | 7 8 9\n";
  auto seqs = read_sequences(path);
  ASSERT_TRUE(seqs.ok()) << seqs.status().to_string();
  ASSERT_EQ(seqs->size(), 2u);
  EXPECT_EQ((*seqs)[0].kind, Instance::kSequence);
  EXPECT_EQ((*seqs)[0].words, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ((*seqs)[1].kind, Instance::kNested);
  ASSERT_EQ((*seqs)[1].sentences.size(), 3u);
  EXPECT_EQ((*seqs)[1].sentences[2], (std::vector<int32_t>{7, 8, 9}));
  std::ofstream(path) << "1 2\n3 x\n";
  auto bad = read_sequences(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(":2"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("'x'"), std::string::npos) << bad.status().message();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace perfmem::acrobat
