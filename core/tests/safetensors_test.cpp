#include "perfmem/core/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "perfmem/core/io.h"

namespace perfmem {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("perfmem_st_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Raw file: 8-byte length + header text + data bytes.
  std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes,
                        uint64_t declared_len = UINT64_MAX) {
    std::string bytes(8, '\0');
    uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(len >> (8 * i));
    bytes += header;
    bytes.append(data_bytes, '\x11');
    std::string p = path(name);
    EXPECT_TRUE(write_binary_file(p, bytes.data(), bytes.size()).ok());
    return p;
  }

  std::string expect_error(const std::string& file, const std::string& fragment) {
    auto f = SafetensorsFile::open(file);
    EXPECT_FALSE(f.ok()) << "expected an error for " << file;
    if (f.ok()) return {};
    EXPECT_NE(f.status().message().find(fragment), std::string::npos) << f.status().message();
    EXPECT_NE(f.status().message().find(file), std::string::npos)
        << "error must name the file: " << f.status().message();
    return f.status().message();
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, WriteThenReadRoundTrip) {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 4.0f, 5.0f, 6.0f};
  std::vector<uint16_t> b = {f32_to_bf16(0.5f), f32_to_bf16(-1.0f), f32_to_bf16(2.0f)};
  std::vector<int8_t> c = {-128, 0, 127};
  SafetensorsWriter w;
  w.add("layer.a", DType::kF32, {2, 3}, a.data());
  w.add("layer.b", DType::kBF16, {3}, b.data());
  w.add("c", DType::kI8, {1, 3}, c.data());
  w.add("empty", DType::kF32, {0, 4}, nullptr);
  w.set_metadata("format", "pt");
  EXPECT_EQ(w.data_bytes(), 24u + 6u + 3u);
  ASSERT_TRUE(w.write(path("m.safetensors")).ok());
  EXPECT_FALSE(fs::exists(path("m.safetensors.tmp")));

  auto f = SafetensorsFile::open(path("m.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const TensorInfo* ia = f->find("layer.a");
  ASSERT_NE(ia, nullptr);
  EXPECT_EQ(ia->shape, (Shape{2, 3}));
  EXPECT_EQ(ia->dtype, DType::kF32);
  EXPECT_EQ(ia->nbytes(), 24u);
  TensorView va = f->view(*ia);
  EXPECT_EQ(va.value_at_offset(2), 3.25);
  EXPECT_EQ(f->find("missing"), nullptr);

  std::vector<uint16_t> got(3);
  ASSERT_TRUE(f->read(*f->find("layer.b"), got.data(), 6).ok());
  EXPECT_EQ(got, b);
  int8_t tail[2];
  ASSERT_TRUE(f->read(*f->find("c"), tail, 2, 1).ok());
  EXPECT_EQ(tail[0], 0);
  EXPECT_EQ(tail[1], 127);
  // A range outside the tensor is refused with a message naming the tensor.
  Status s = f->read(*f->find("c"), tail, 2, 2);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("\"c\""), std::string::npos);
}

TEST_F(SafetensorsTest, DirectIoReadLandsAtTheSpanLead) {
  std::vector<float> big(5000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i);
  std::vector<float> small = {42.f};
  SafetensorsWriter w;
  w.add("small", DType::kF32, {1}, small.data());
  w.add("big", DType::kF32, {5000}, big.data());
  ASSERT_TRUE(w.write(path("d.safetensors")).ok());
  auto f = SafetensorsFile::open(path("d.safetensors"));
  ASSERT_TRUE(f.ok());
  const TensorInfo* info = f->find("big");
  auto span = SafetensorsFile::direct_read_span(info->file_offset, info->size);
  EXPECT_EQ(span.aligned_offset % 4096, 0u);
  EXPECT_EQ(span.aligned_size % 4096, 0u);
  EXPECT_LE(span.aligned_offset + span.lead, info->file_offset);
  AlignedBuffer slot(span.aligned_size, 4096);
  ASSERT_TRUE(f->read(*info, slot.data(), info->size, 0, /*direct_io=*/true).ok());
  const float* values = reinterpret_cast<const float*>(slot.data_as<uint8_t>() + span.lead);
  EXPECT_EQ(std::memcmp(values, big.data(), info->size), 0);
}

TEST_F(SafetensorsTest, ShardedCheckpointThroughIndex) {
  std::vector<float> x = {1, 2}, y = {3, 4, 5};
  SafetensorsWriter s1, s2;
  s1.add("x", DType::kF32, {2}, x.data());
  s2.add("y", DType::kF32, {3}, y.data());
  ASSERT_TRUE(s1.write(path("model-00001-of-00002.safetensors")).ok());
  ASSERT_TRUE(s2.write(path("model-00002-of-00002.safetensors")).ok());
  ASSERT_TRUE(write_safetensors_index(
                  path("model.safetensors.index.json"),
                  {{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"}}, 20)
                  .ok());
  auto ckpt = SafetensorsCheckpoint::open(dir_.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().to_string();
  EXPECT_EQ(ckpt->files().size(), 2u);
  EXPECT_EQ(ckpt->tensor_names(), (std::vector<std::string>{"x", "y"}));
  auto y_entry = ckpt->get("y");
  ASSERT_TRUE(y_entry.ok());
  EXPECT_EQ(y_entry->file->view(*y_entry->info).value_at_offset(2), 5.0);
  auto missing = ckpt->get("z");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("\"z\""), std::string::npos);
}

TEST_F(SafetensorsTest, SingleFileFolderAndMissingFolderContents) {
  std::vector<float> x = {1};
  SafetensorsWriter w;
  w.add("x", DType::kF32, {1}, x.data());
  ASSERT_TRUE(w.write(path("model.safetensors")).ok());
  auto ckpt = SafetensorsCheckpoint::open(dir_.string());
  ASSERT_TRUE(ckpt.ok());
  EXPECT_NE(ckpt->find("x").file, nullptr);
  fs::create_directories(dir_ / "empty");
  auto none = SafetensorsCheckpoint::open(path("empty"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("model.safetensors"), std::string::npos);
}

TEST_F(SafetensorsTest, IndexErrorsNameShardAndTensor) {
  std::vector<float> x = {1};
  SafetensorsWriter w;
  w.add("x", DType::kF32, {1}, x.data());
  ASSERT_TRUE(w.write(path("a.safetensors")).ok());
  // Missing shard.
  ASSERT_TRUE(write_safetensors_index(path("i1.json"), {{"x", "gone.safetensors"}}, 4).ok());
  auto r1 = SafetensorsCheckpoint::open(path("i1.json"));
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.status().message().find("gone.safetensors"), std::string::npos);
  // Tensor the index promises but the shard lacks.
  ASSERT_TRUE(write_safetensors_index(path("i2.json"), {{"w", "a.safetensors"}}, 4).ok());
  auto r2 = SafetensorsCheckpoint::open(path("i2.json"));
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("\"w\""), std::string::npos);
  // Shard paths may not leave the checkpoint folder.
  ASSERT_TRUE(write_safetensors_index(path("i3.json"), {{"x", "../a.safetensors"}}, 4).ok());
  auto r3 = SafetensorsCheckpoint::open(path("i3.json"));
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.status().message().find("inside the checkpoint folder"), std::string::npos);
  // Malformed index JSON.
  ASSERT_TRUE(write_text_file(path("i4.json"), "{\"weight_map\": [1,2]}").ok());
  EXPECT_FALSE(SafetensorsCheckpoint::open(path("i4.json")).ok());
}

// The corrupt corpus: each file must give an error naming the problem, never a crash.
TEST_F(SafetensorsTest, CorruptCorpusGivesClearErrors) {
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  expect_error(write_raw("empty_header", "", 0, 0), "well-formed JSON");  // length 0, no JSON
  {
    std::string p = path("short");
    ASSERT_TRUE(write_binary_file(p, "abc", 3).ok());
    expect_error(p, "8-byte header length");
  }
  expect_error(write_raw("huge_len", "{" + ok_entry + "}", 8, 1ull << 62), "header length");
  expect_error(write_raw("len_past_end", "{" + ok_entry + "}", 8, 5000), "fits in the file");
  expect_error(write_raw("bad_json", "{\"t\": {", 8), "well-formed JSON");
  expect_error(write_raw("not_object", "[1,2,3]", 8), "a JSON object");
  expect_error(write_raw("unknown_dtype", R"({"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8),
               "dtype one of");
  expect_error(write_raw("shape_mismatch", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
               "expected data_offsets spanning 12 bytes (shape [3] of F32), found 8 bytes");
  expect_error(write_raw("negative_dim", R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
               "non-negative integer dimensions");
  expect_error(write_raw("out_of_file", "{" + ok_entry + "}", 4), "within the data section");
  expect_error(write_raw("reversed", R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), "begin <= end");
  expect_error(write_raw("overlap",
                         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         12),
               "overlap");
  expect_error(write_raw("bad_offsets", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), "data_offsets");
  expect_error(write_raw("bad_metadata", R"({"__metadata__":{"k":1}})", 0), "a string value");
  expect_error(write_raw("overflow_shape",
                         R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],)"
                         R"("data_offsets":[0,8]}})",
                         8),
               "fits in 64 bits");
  // Truncated copy of a valid file: data cut short.
  std::vector<float> v(64, 1.0f);
  SafetensorsWriter w;
  w.add("v", DType::kF32, {64}, v.data());
  ASSERT_TRUE(w.write(path("full.safetensors")).ok());
  auto bytes = read_binary_file(path("full.safetensors"));
  ASSERT_TRUE(bytes.ok());
  ASSERT_TRUE(write_binary_file(path("cut.safetensors"), bytes->data(), bytes->size() - 10).ok());
  expect_error(path("cut.safetensors"), "within the data section");
  expect_error(path("does_not_exist.safetensors"), "cannot open");
}

// Random mutations of a valid header never crash the parser and never yield tensors outside
// the file.
TEST_F(SafetensorsTest, MutatedHeadersNeverCrash) {
  std::vector<float> a(10, 2.f), b(6, 3.f);
  SafetensorsWriter w;
  w.add("alpha", DType::kF32, {2, 5}, a.data());
  w.add("beta", DType::kF32, {6}, b.data());
  ASSERT_TRUE(w.write(path("base.safetensors")).ok());
  auto base = read_binary_file(path("base.safetensors"));
  ASSERT_TRUE(base.ok());
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bytes = *base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t pos = rng() % bytes.size();
      switch (rng() % 3) {
        case 0: bytes[pos] = static_cast<uint8_t>(rng()); break;
        case 1: bytes[pos] = static_cast<uint8_t>("0123456789[]{},:\"-"[rng() % 18]); break;
        case 2: bytes.resize(pos); break;
      }
      if (bytes.empty()) break;
    }
    auto header = parse_safetensors_header("mutated", bytes.data(), bytes.size(), bytes.size());
    if (header.ok()) {
      ++accepted;
      for (const TensorInfo& t : header->tensors) { EXPECT_LE(t.file_offset + t.size, bytes.size()); }
    } else {
      EXPECT_FALSE(header.status().message().empty());
    }
  }
  EXPECT_LT(accepted, 3000);  // most mutations must be caught
}

}  // namespace
}  // namespace perfmem
