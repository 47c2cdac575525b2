// The expert store and the serving pipeline: exact mode (every policy and budget gives outputs
// bit-identical to all-resident), and an I/O thread that survives read errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "perfmem/core/io.h"
#include "perfmem/sida/serve.h"
#include "test_util.h"

namespace perfmem::sida {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::make_test_checkpoint("store", *preset_config("tiny")));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
};
std::string* StoreTest::dir_ = nullptr;

ServeReport run_policy(const ModelWeights& model, Policy policy, uint64_t budget, bool direct_io,
                       const std::vector<Request>& requests, const ServeOptions& base, const RouteTable* routes) {
  StoreOptions so;
  so.policy = policy;
  so.budget_bytes = budget;
  so.direct_io = direct_io;
  auto store = ExpertStore::create(model, so);
  EXPECT_TRUE(store.ok()) << store.status().to_string();
  if (policy == Policy::kAllResident) {
    EXPECT_TRUE((*store)->load_all().ok());
    (*store)->reset_stats();
  }
  ServeOptions opt = base;
  opt.routes = routes;
  opt.keep_outputs = true;
  opt.window = 4;  // several windows, so the run-ahead queue is exercised
  opt.queue_capacity = 2;
  auto report = serve(model, **store, requests, opt);
  EXPECT_TRUE(report.ok()) << report.status().to_string();
  return *report;
}

void expect_identical(const ServeReport& a, const ServeReport& b, const std::string& what) {
  ASSERT_EQ(a.results.size(), b.results.size());
  for (size_t r = 0; r < a.results.size(); ++r) {
    const RequestResult &x = a.results[r], &y = b.results[r];
    EXPECT_EQ(x.generated, y.generated) << what << " request " << r;
    ASSERT_EQ(x.logits.size(), y.logits.size()) << what;
    for (size_t s = 0; s < x.logits.size(); ++s)
      EXPECT_EQ(0, std::memcmp(x.logits[s].data(), y.logits[s].data(), x.logits[s].size() * 4))
          << what << " request " << r << " step " << s;
    ASSERT_EQ(x.encoder_hidden.size(), y.encoder_hidden.size()) << what;
    if (x.encoder_hidden.empty()) continue;
    EXPECT_EQ(0, std::memcmp(x.encoder_hidden.data(), y.encoder_hidden.data(), x.encoder_hidden.size() * 4))
        << what << " request " << r;
  }
}

// Exact mode: every policy, budget (one slot to all experts), read path and execution gives
// outputs bit-identical to all-resident run request by request, encoding and generating.
// Window execution (the window's requests advance layer by layer, and decoding step by step,
// together, sharing each acquired expert; attention and routing stay per request) also shares
// experts: an encoding window acquires each expert it uses exactly once.
TEST_F(StoreTest, EveryPolicyBudgetAndExecutionIsBitIdenticalToAllResident) {
  auto model = ModelWeights::load(*dir_);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const SwitchConfig& c = (*model)->config();
  const uint64_t per_expert = c.expert_f32_bytes();
  const uint64_t all = uint64_t(c.num_moe_layers() * c.num_experts);
  auto requests = synthetic_requests(10, 10, 30, c.vocab_size, 3);
  for (bool generate : {false, true}) {
    ServeOptions opt;
    opt.generate = generate;
    opt.max_new_tokens = 4;
    auto routes = record_routes(**model, requests, opt);
    ASSERT_TRUE(routes.ok()) << routes.status().to_string();
    ServeReport reference = run_policy(**model, Policy::kAllResident, 0, true, requests, opt, nullptr);
    EXPECT_EQ(reference.store.misses, 0u);
    // run_policy uses windows of 4 requests: the distinct experts of each window, summed.
    uint64_t distinct_per_window = 0, request_accesses = 0;
    for (size_t first = 0; first < requests.size(); first += 4) {
      std::set<int32_t> used;
      for (size_t r = first; r < std::min(requests.size(), first + 4); ++r) {
        used.insert(routes->accesses[r].begin(), routes->accesses[r].end());
        request_accesses += routes->accesses[r].size();
      }
      distinct_per_window += used.size();
    }
    ASSERT_LT(distinct_per_window, request_accesses) << "the requests share no expert: a weak test";
    for (Execution execution : {Execution::kRequest, Execution::kWindow})
      for (Policy p : {Policy::kAllResident, Policy::kLru, Policy::kFifo, Policy::kPrefetch})
        for (uint64_t slots : {uint64_t(1), uint64_t(c.num_moe_layers()), all / 2, all})
          for (bool direct : {true, false}) {
            if (p == Policy::kAllResident && (slots != all || execution == Execution::kRequest)) continue;
            opt.execution = execution;
            std::string what = policy_name(p) + " with " + std::to_string(slots) + " slots" +
                               (direct ? " (O_DIRECT)" : "") + (generate ? " generating" : " encoding") + ", " +
                               execution_name(execution) + " execution";
            ServeReport r = run_policy(**model, p, slots * per_expert, direct, requests, opt, &*routes);
            EXPECT_EQ(r.slots, slots) << what;
            EXPECT_EQ(r.execution, execution_name(execution)) << what;
            expect_identical(reference, r, what);
            EXPECT_EQ(r.generated_tokens, reference.generated_tokens) << what;
            EXPECT_EQ(r.store.read_errors, 0u) << what;
            EXPECT_LE(r.store.loads, r.store.accesses) << what;
            if (slots == 1 && p != Policy::kAllResident) { EXPECT_GT(r.store.bytes_read, 0u) << what; }
            if (execution == Execution::kRequest) {
              EXPECT_EQ(r.store.accesses, request_accesses) << what;
              continue;
            }
            if (!generate) { EXPECT_EQ(r.store.accesses, distinct_per_window) << what; }
            // Decoding steps of different requests share experts too, so fewer accesses in all.
            EXPECT_LT(r.store.accesses, request_accesses) << what;
          }
  }
  EXPECT_FALSE(parse_execution("layer").ok());
}

// A safetensors file may start its data section at any offset (safetensors' writer pads the
// header to 8 bytes, but the format does not require it): 16-bit experts one byte off alignment
// are widened as they are, with outputs bit-identical to the aligned file's, on either read path.
TEST(StoreUnalignedData, SixteenBitTensorsAtAnOddOffsetGiveTheAlignedFilesBits) {
  SwitchConfig c = *preset_config("tiny");
  const std::string aligned = testing::make_test_checkpoint("store-aligned", c, DType::kBF16);
  const std::string odd = testing::temp_dir("store-odd");
  size_t rewritten = 0;
  for (const auto& entry : std::filesystem::directory_iterator(aligned)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".safetensors") {
      std::filesystem::copy_file(entry.path(), odd + "/" + name);
      continue;
    }
    auto bytes = read_binary_file(entry.path().string());
    ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
    uint64_t header = 0;
    std::memcpy(&header, bytes->data(), 8);
    ASSERT_EQ(header % 2, 0u) << "the writer's header is padded: the test needs it even";
    // One more space of header padding: every tensor's data now starts one byte later.
    std::vector<uint8_t> shifted(bytes->begin(), bytes->begin() + std::ptrdiff_t(8 + header));
    shifted.push_back(' ');
    shifted.insert(shifted.end(), bytes->begin() + std::ptrdiff_t(8 + header), bytes->end());
    const uint64_t longer = header + 1;
    std::memcpy(shifted.data(), &longer, 8);
    ASSERT_TRUE(write_binary_file(odd + "/" + name, shifted.data(), shifted.size()).ok());
    ++rewritten;
  }
  ASSERT_GT(rewritten, 0u);
  auto model_aligned = ModelWeights::load(aligned), model_odd = ModelWeights::load(odd);
  ASSERT_TRUE(model_aligned.ok()) << model_aligned.status().to_string();
  ASSERT_TRUE(model_odd.ok()) << model_odd.status().to_string();
  auto requests = synthetic_requests(4, 10, 20, c.vocab_size, 9);
  ServeOptions opt;
  opt.generate = true;
  opt.max_new_tokens = 3;
  const uint64_t one_slot = c.expert_f32_bytes();
  for (bool direct : {true, false}) {
    ServeReport a = run_policy(**model_aligned, Policy::kLru, one_slot, direct, requests, opt, nullptr);
    ServeReport b = run_policy(**model_odd, Policy::kLru, one_slot, direct, requests, opt, nullptr);
    EXPECT_GT(b.store.bytes_read, 0u);
    expect_identical(a, b, direct ? "O_DIRECT" : "page cache");
  }
  std::filesystem::remove_all(aligned);
  std::filesystem::remove_all(odd);
}

TEST_F(StoreTest, PrefetchWithOracleRoutesHitsMoreThanLru) {
  auto model = ModelWeights::load(*dir_);
  ASSERT_TRUE(model.ok());
  const SwitchConfig& c = (*model)->config();
  auto requests = synthetic_requests(16, 10, 40, c.vocab_size, 5);
  ServeOptions opt;
  opt.generate = false;
  auto routes = record_routes(**model, requests, opt);
  ASSERT_TRUE(routes.ok());
  const uint64_t budget = uint64_t(c.num_moe_layers() * c.num_experts / 2) * c.expert_f32_bytes();
  ServeReport lru = run_policy(**model, Policy::kLru, budget, true, requests, opt, nullptr);
  ServeReport pre = run_policy(**model, Policy::kPrefetch, budget, true, requests, opt, &*routes);
  // With the future known, demand misses (loads the engine had to ask for) drop.
  EXPECT_LT(pre.store.misses, lru.store.misses);
  EXPECT_GT(pre.store.prefetch_loads, 0u);
}

// A plan's mispredictions must not outlive the layers they were made for. The plan expects three
// encoder experts that the "engine" never uses; it then works on two decoder experts in turn,
// layers the plan does not cover. Once it reached them, the plan's leftovers are dropped: the
// two decoder experts load once each and stay (before, the leftovers stayed expected for ever,
// and the prefetcher evicted a decoder expert after each use to bring one of them back).
TEST_F(StoreTest, PrefetchDropsAPlansLeftoversOnceTheEngineLeftTheirLayers) {
  auto model = ModelWeights::load(*dir_);
  ASSERT_TRUE(model.ok());
  const SwitchConfig& c = (*model)->config();
  const int32_t E = int32_t(c.num_experts), encoder_ids = int32_t(c.num_encoder_moe_layers()) * E;
  ASSERT_GE(c.num_moe_layers() * E, encoder_ids + 2);
  StoreOptions so;
  so.policy = Policy::kPrefetch;
  so.budget_bytes = 3 * c.expert_f32_bytes();
  auto store = ExpertStore::create(**model, so);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  ASSERT_EQ((*store)->num_slots(), 3u);
  (*store)->set_upcoming({1, E + 2, E + 3});  // never used
  auto use = [&](int32_t id) {
    auto view = (*store)->acquire(id);
    ASSERT_TRUE(view.ok()) << view.status().to_string();
    (*store)->release(*view);
  };
  use(0);  // layer 0, not planned
  const int32_t first = encoder_ids, second = encoder_ids + 1;
  for (int step = 0; step < 20; ++step) {
    use(first);
    use(second);
  }
  const StoreStats stats = (*store)->stats();
  EXPECT_EQ(stats.accesses, 41u);
  EXPECT_EQ(stats.misses, 3u);  // 0, then each decoder expert once
  EXPECT_EQ(stats.hits, 38u);
}

TEST_F(StoreTest, PrefetchRefusesAMissingOrMismatchedRouteTable) {
  auto model = ModelWeights::load(*dir_);
  ASSERT_TRUE(model.ok());
  StoreOptions so;
  so.policy = Policy::kPrefetch;
  auto store = ExpertStore::create(**model, so);
  ASSERT_TRUE(store.ok());
  auto requests = synthetic_requests(3, 10, 12, (*model)->config().vocab_size, 1);
  ServeOptions opt;
  auto r = serve(**model, **store, requests, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("route table"), std::string::npos) << r.status().to_string();
  auto routes = record_routes(**model, requests, opt);
  ASSERT_TRUE(routes.ok());
  requests[1][0] += 1;
  opt.routes = &*routes;
  r = serve(**model, **store, requests, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("request 1"), std::string::npos) << r.status().to_string();
}

TEST_F(StoreTest, BudgetBelowOneExpertOrAllResidentTooSmallIsAnError) {
  auto model = ModelWeights::load(*dir_);
  ASSERT_TRUE(model.ok());
  StoreOptions so;
  so.budget_bytes = (*model)->config().expert_f32_bytes() - 1;
  auto s = ExpertStore::create(**model, so);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("budget"), std::string::npos);
  so.budget_bytes = (*model)->config().expert_f32_bytes() * 2;
  so.policy = Policy::kAllResident;
  EXPECT_FALSE(ExpertStore::create(**model, so).ok());
}

TEST(EngineCapacity, DisablingCapacityRoutesEveryTokenToItsExpert) {
  SwitchConfig c = *preset_config("tiny");
  c.expert_capacity = 2;
  std::string dir = testing::make_test_checkpoint("capacity", c);
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok());
  StoreOptions so;
  auto store = ExpertStore::create(**model, so);
  ASSERT_TRUE(store.ok());
  const std::vector<int32_t> request = {5, 17, 33, 9, 41, 60, 2, 77, 12, 8, 91, 30, 4, 1};
  std::vector<float> hidden[2];
  for (bool capacity : {true, false}) {
    EngineOptions eo;
    eo.apply_capacity = capacity;
    Engine engine(**model, **store, eo);
    int64_t dropped = 0;
    engine.set_observer([&](const MoeLayerVisit& v) {
      for (uint8_t d : v.dropped) dropped += d;
    });
    auto enc = engine.encode({request});
    ASSERT_TRUE(enc.ok());
    hidden[capacity] = enc->hidden;
    if (capacity) {
      EXPECT_GT(dropped, 0) << "14 tokens over 4 experts of capacity 2 must overflow";
    } else {
      EXPECT_EQ(dropped, 0);
    }
  }
  EXPECT_NE(hidden[0], hidden[1]);
  std::filesystem::remove_all(dir);
}

TEST(StoreReadErrors, IoThreadSurvivesAReadErrorAndReportsIt) {
  std::string dir = testing::make_test_checkpoint("store-truncate", *preset_config("tiny"));
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const SwitchConfig& c = (*model)->config();
  const int32_t last = int32_t(c.num_moe_layers() * c.num_experts - 1);
  const ExpertTensors& t = (*model)->expert(c.num_moe_layers() - 1, c.num_experts - 1);
  for (bool direct : {true, false}) {
    StoreOptions so;
    so.budget_bytes = 2 * c.expert_f32_bytes();
    so.direct_io = direct;
    auto store = ExpertStore::create(**model, so);
    ASSERT_TRUE(store.ok());
    // Cut the file inside the last expert's wi after the header was validated.
    ASSERT_EQ(0, ::truncate(t.wi_file->path().c_str(), off_t(t.wi->file_offset + 16)));
    auto bad = (*store)->acquire(last);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("expert_" + std::to_string(c.num_experts - 1)), std::string::npos)
        << bad.status().to_string();
    // The I/O thread is still serving.
    auto good = (*store)->acquire(0);
    ASSERT_TRUE(good.ok()) << good.status().to_string();
    (*store)->release(*good);
    EXPECT_EQ((*store)->stats().read_errors, 1u);
    EXPECT_FALSE((*store)->acquire(last).ok());  // asked again: read again, fails again
  }
  std::filesystem::remove_all(dir);
}

// With max_new_tokens of 2^63-1 the KV cache used to be sized for every step up front
// (length_error / bad_alloc); it now grows per step. The config's eos is set to the first token
// greedy decoding produces, so generation stops after one step.
TEST(EngineGeneration, HugeMaxNewTokensAllocatesOnlyWhatIsGenerated) {
  std::string dir = testing::make_test_checkpoint("huge-steps", *preset_config("tiny"));
  const std::vector<int32_t> request = {12, 7, 33, 1};
  int32_t first = -1;
  {
    testing::LoadedModel m = testing::load_model(dir);
    ASSERT_TRUE(m.store);
    Engine engine(*m.model, *m.store);
    auto gen = engine.generate({request}, {.max_new_tokens = 1});
    ASSERT_TRUE(gen.ok());
    first = gen->tokens[0][0];
  }
  auto config = *read_json_file(dir + "/config.json");
  config["eos_token_id"] = first;
  ASSERT_TRUE(write_text_file(dir + "/config.json", config.dump()).ok());
  testing::LoadedModel m = testing::load_model(dir);
  ASSERT_TRUE(m.store);
  Engine engine(*m.model, *m.store);
  for (int64_t steps : {INT64_MAX, int64_t(3000000)}) {
    auto gen = engine.generate({request}, {.max_new_tokens = steps});
    ASSERT_TRUE(gen.ok()) << gen.status().to_string();
    EXPECT_EQ(gen->tokens[0], std::vector<int32_t>{first});
    auto window = engine.generate_window({request, request}, {.max_new_tokens = steps});
    ASSERT_TRUE(window.ok()) << window.status().to_string();
    EXPECT_EQ((*window)[1].tokens[0], std::vector<int32_t>{first});
  }
  std::filesystem::remove_all(dir);
}

TEST(EngineGeneration, MissingDecoderStartTokenRefusesGenerationOnly) {
  std::string dir = testing::make_test_checkpoint("no-start", *preset_config("tiny"));
  auto config = *read_json_file(dir + "/config.json");
  config.erase("decoder_start_token_id");
  ASSERT_TRUE(write_text_file(dir + "/config.json", config.dump()).ok());
  testing::expect_generation_needs_decoder_start(dir);
  std::filesystem::remove_all(dir);
}

// A pad id inside a request is masked as a key but still routed; a request of pad ids only is
// an error (nothing to attend to). Hugging Face conformance is checked in hf_conformance_test.
// Masked keys cannot reach any other position: with pad_token_id 2 and then 3, the requests
// {5, 2, 6, 1} and {5, 3, 6, 1} give the other positions identical bits.
TEST(EngineGeneration, PadIdsInsideARequestAreMaskedAndStillRouted) {
  std::string dir = testing::make_test_checkpoint("pad-mask", *preset_config("tiny"));
  const Json original = *read_json_file(dir + "/config.json");
  std::vector<float> others[2];
  for (int32_t pad : {2, 3}) {
    Json config = original;
    config["pad_token_id"] = pad;
    ASSERT_TRUE(write_text_file(dir + "/config.json", config.dump()).ok());
    testing::LoadedModel m = testing::load_model(dir);
    ASSERT_TRUE(m.store);
    const auto& model = m.model;
    Engine engine(*m.model, *m.store);
    int64_t routed = 0;
    engine.set_observer([&](const MoeLayerVisit& v) { routed += int64_t(v.choice.size()); });
    auto enc = engine.encode({{5, pad, 6, 1}});
    ASSERT_TRUE(enc.ok());
    EXPECT_EQ(enc->key_mask, (std::vector<uint8_t>{1, 0, 1, 1}));
    EXPECT_EQ(routed, 4 * model->config().num_encoder_moe_layers());  // the pad is routed
    const int64_t d = model->config().d_model;
    for (int64_t t : {0, 2, 3})
      others[pad - 2].insert(others[pad - 2].end(), enc->hidden.begin() + t * d, enc->hidden.begin() + (t + 1) * d);
    auto only_pads = engine.encode({{pad, pad}});
    ASSERT_FALSE(only_pads.ok());
    EXPECT_NE(only_pads.status().to_string().find("pad"), std::string::npos);
  }
  EXPECT_EQ(others[0], others[1]);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace perfmem::sida
