// The expert predictor: LibTorch training (deterministic under a seed, it learns the routes), the
// serving forward in the project's kernels against the LibTorch forward and against its plain
// twin, sparsemax, the hit-rate evaluation and its baselines, bad files, the CLI, and the
// decoder-only families (collect, train, predicted prefetch in exact mode).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <tuple>

#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/safetensors.h"
#include "perfmem/sida/kernels.h"
#include "perfmem/sida/predictor.h"
#include "perfmem/sida/predictor_train.h"
#include "perfmem/sida/serve.h"
#include "perfmem/testing/required.h"
#include "perfmem/testing/subprocess.h"
#include "test_util.h"

namespace perfmem::sida {
namespace {

std::string read_all(const std::string& path) {
  auto text = read_text_file(path);
  EXPECT_TRUE(text.ok()) << text.status().to_string();
  return text.ok() ? *text : std::string();
}

TEST(Sparsemax, ProjectsOntoTheSimplex) {
  // sorted 1, 0.5, -1: the support is {1, 0.5} (2 * 0.5 > 1.5 - 1, 3 * -1 < -0.5 - 1), tau 0.25.
  const float z[3] = {0.5f, -1.0f, 1.0f};
  float p[3];
  sparsemax(z, 3, p);
  EXPECT_FLOAT_EQ(p[0], 0.25f);
  EXPECT_FLOAT_EQ(p[1], 0.0f);
  EXPECT_FLOAT_EQ(p[2], 0.75f);
  // A far larger score takes everything; equal scores share.
  const float big[3] = {10.0f, 0.0f, 0.0f}, flat[4] = {2.0f, 2.0f, 2.0f, 2.0f};
  sparsemax(big, 3, p);
  EXPECT_EQ(p[0], 1.0f);
  EXPECT_EQ(p[1] + p[2], 0.0f);
  float q[4];
  sparsemax(flat, 4, q);
  for (float v : q) EXPECT_FLOAT_EQ(v, 0.25f);
}

TEST(TopK, BestFirstTiesToTheLowerIndex) {
  const float s[5] = {0.1f, 0.7f, 0.7f, -2.0f, 0.3f};
  int32_t out[3];
  top_k_indices(s, 5, 3, out);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[1], 2);
  EXPECT_EQ(out[2], 4);
}

// Baselines on a hand-made dataset, where every rate is known.
TEST(EvaluatePredictor, BaselinesCountTheTrainingSplit) {
  RoutesDataset d;
  d.num_moe_layers = 1;
  d.num_experts = 3;
  d.top = 1;
  d.vocab_size = 10;
  // Training: token 5 -> expert 2 twice, token 6 -> expert 0 once. Validation: 5, 6, 7.
  d.tokens = {5, 5, 6, 5, 6, 7};
  d.offsets = {0, 3, 6};
  d.validation = {0, 1};
  d.top_logits = {1, 1, 1, 1, 1, 1};
  d.top_experts = {2, 2, 0, /*validation*/ 2, 1, 0};
  auto eval = evaluate_predictor(nullptr, d, 2);
  ASSERT_TRUE(eval.ok()) << eval.status().to_string();
  EXPECT_FALSE(eval->has_predictor);
  EXPECT_EQ(eval->validation_tokens, 3);
  const LayerHits& h = eval->layers[0];
  // Most frequent: 2, then 0. Validation wants 2, 1, 0: top-1 hits 1 of 3, top-2 hits 2 of 3.
  EXPECT_DOUBLE_EQ(h.frequent_top1, 1.0 / 3);
  EXPECT_DOUBLE_EQ(h.frequent_topk, 2.0 / 3);
  // Token table: 5 -> {2, then 0}, 6 -> {0, then 2}, 7 unseen -> {2, 0}: wants 2 (hit), 1 (miss),
  // 0 (top-1 miss, top-2 hit).
  EXPECT_DOUBLE_EQ(h.token_top1, 1.0 / 3);
  EXPECT_DOUBLE_EQ(h.token_topk, 2.0 / 3);
  d.validation = {0, 0};
  EXPECT_FALSE(evaluate_predictor(nullptr, d, 2).ok());
}

class PredictorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SwitchConfig c = *preset_config("tiny");
    c.num_experts = 6;
    dir_ = new std::string(testing::make_test_checkpoint("predictor", c));
    auto model = ModelWeights::load(*dir_);
    ASSERT_TRUE(model.ok()) << model.status().to_string();
    CollectOptions opt;
    opt.top = 4;
    opt.validation_every = 5;
    opt.show_progress = false;
    auto data = collect_routes(**model, synthetic_requests(60, 4, 16, c.vocab_size, 3), opt);
    ASSERT_TRUE(data.ok()) << data.status().to_string();
    data_ = new RoutesDataset(std::move(*data));
    model_ = model->release();
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete data_;
    delete model_;
  }
  static TrainOptions small_options() {
    TrainOptions o;
    o.hidden = 16;
    o.batch = 8;
    o.epochs = 2;
    o.lr = 1e-2;
    o.show_progress = false;
    return o;
  }
  // A predictor's sizes for the fixture's model (random weights: testing::write_random_predictor).
  static PredictorConfig model_sized_config() { return testing::predictor_config_for(*model_); }
  static std::string* dir_;
  static RoutesDataset* data_;
  static ModelWeights* model_;
};
std::string* PredictorTest::dir_ = nullptr;
RoutesDataset* PredictorTest::data_ = nullptr;
ModelWeights* PredictorTest::model_ = nullptr;

// Two serve() reports give every request the same ids, logits, encoder states and routed experts.
void expect_same_results(const ServeReport& got, const ServeReport& want) {
  ASSERT_EQ(got.results.size(), want.results.size());
  for (size_t r = 0; r < want.results.size(); ++r) {
    SCOPED_TRACE("request " + std::to_string(r));
    EXPECT_EQ(got.results[r].generated, want.results[r].generated);
    EXPECT_EQ(got.results[r].logits, want.results[r].logits);
    EXPECT_EQ(got.results[r].encoder_hidden, want.results[r].encoder_hidden);
    ASSERT_EQ(got.results[r].routes.size(), want.results[r].routes.size());
    for (size_t v = 0; v < want.results[r].routes.size(); ++v)
      EXPECT_EQ(got.results[r].routes[v].expert, want.results[r].routes[v].expert);
  }
}

// max |a - b| over max |b|: the serving forward against its plain twin (infinite when the sizes
// differ or b is all zeros).
float largest_difference_per_scale(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<float>::infinity();
  float scale = 0, worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::fabs(b[i]));
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  return scale > 0 ? worst / scale : std::numeric_limits<float>::infinity();
}

#ifdef SIDA_HAVE_TORCH

TEST_F(PredictorTest, TrainingIsDeterministicUnderASeed) {
  const std::string a = *dir_ + "/pa", b = *dir_ + "/pb", c = *dir_ + "/pc";
  TrainOptions o = small_options();
  auto ra = train_predictor(*model_, *data_, o, a);
  ASSERT_TRUE(ra.ok()) << ra.status().to_string();
  EXPECT_EQ(ra->steps, 2 * 6);  // 48 training requests in batches of 8, two epochs
  ASSERT_TRUE(train_predictor(*model_, *data_, o, b).ok());
  o.seed = 2;
  ASSERT_TRUE(train_predictor(*model_, *data_, o, c).ok());
  const std::string wa = read_all(a + "/predictor.safetensors");
  EXPECT_FALSE(wa.empty());
  EXPECT_EQ(wa, read_all(b + "/predictor.safetensors"));
  EXPECT_NE(wa, read_all(c + "/predictor.safetensors"));
  auto config = read_predictor_config(a);
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config->hidden, 16);
  EXPECT_EQ(config->num_experts, 6);
  EXPECT_EQ(config->num_moe_layers, model_->config().num_encoder_moe_layers());
}

// The serving forward (packed_gemm) and its plain twin (packed_gemm_reference) give the same
// bits; both match LibTorch's forward of the same file, run on the requests as one padded batch
// (as training runs them: the padding after a short request must not reach its logits, which the
// right-to-left direction of a bidirectional predictor would read first). Tolerance: fp32 with
// different summation orders (LibTorch's GEMM blocks its sums, ours is one fma chain), different
// exp/tanh, through two recurrent layers: differences of a few ulps per operation, growing with
// the sum lengths (d_model 32, hidden 16, 12 steps); 1e-5 of the largest logit is ~100 ulps of
// slack, while a wrong gate order, a missing bias, a wrong direction or a wrong attention weight
// moves logits by more than 1e-2.
class PredictorForwardTest : public PredictorTest, public ::testing::WithParamInterface<bool> {};

TEST_P(PredictorForwardTest, ServingForwardMatchesLibTorch) {
  const bool bidirectional = GetParam();
  const std::string p = *dir_ + (bidirectional ? "/pf-bidirectional" : "/pf");
  TrainOptions o = small_options();
  o.epochs = 1;
  o.bidirectional = bidirectional;
  ASSERT_TRUE(train_predictor(*model_, *data_, o, p).ok());
  auto predictor = Predictor::load(p, *model_);
  ASSERT_TRUE(predictor.ok()) << predictor.status().to_string();
  EXPECT_EQ((*predictor)->config().bidirectional, bidirectional);
  const int64_t M = (*predictor)->config().num_moe_layers, E = (*predictor)->config().num_experts;
  const std::vector<Request> requests = synthetic_requests(4, 1, 12, model_->config().vocab_size, 11);
  auto theirs = torch_predictor_forward(p, *model_, requests);
  ASSERT_TRUE(theirs.ok()) << theirs.status().to_string();
  ASSERT_EQ(theirs->size(), requests.size());
  size_t longest = 0, shorter = 0;
  for (const Request& r : requests) longest = std::max(longest, r.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    shorter += r.size() < longest;
    const std::vector<float> ours = (*predictor)->forward(r);
    // The plain twin (packed_gemm_reference, libm's exp and tanh in the gates): the products give
    // the same bits, the gates a few ulps (LstmCellStepMatchesItsPlainTwin), carried through.
    EXPECT_LE(largest_difference_per_scale(ours, (*predictor)->forward(r, /*reference=*/true)), 1e-6f)
        << "request of " << r.size() << " tokens";
    ASSERT_EQ(ours.size(), r.size() * size_t(M * E));
    ASSERT_EQ((*theirs)[i].size(), ours.size());
    float scale = 0, worst = 0;
    for (size_t j = 0; j < ours.size(); ++j) {
      scale = std::max(scale, std::fabs((*theirs)[i][j]));
      worst = std::max(worst, std::fabs(ours[j] - (*theirs)[i][j]));
    }
    EXPECT_GT(scale, 0.0f);
    EXPECT_LE(worst, 1e-5f * scale) << "request of " << r.size() << " tokens";
    // predict() is the forward's top-k.
    const auto top = (*predictor)->predict(r, 2);
    for (size_t t = 0; t < r.size() * size_t(M); ++t) {
      const float* row = &ours[t * size_t(E)];
      EXPECT_EQ(top[t * 2], int32_t(std::max_element(row, row + E) - row));
    }
  }
  EXPECT_GT(shorter, 0u) << "no request was padded in the batch";
}

INSTANTIATE_TEST_SUITE_P(Directions, PredictorForwardTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Bidirectional" : "LeftToRight";
                         });

// The vectorised LSTM step against its plain twin (std::exp, std::tanh): every gate value class
// (zero, small, moderate, saturating, infinite, NaN, subnormal) in every gate, over H = 37 (a
// vector body and a scalar tail), cell states included; within 4e-7 of max(1, |value|), NaN where
// the twin gives NaN.
TEST(PredictorKernels, LstmCellStepMatchesItsPlainTwin) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> classes = {0.0f,  -0.0f,  1e-3f,  -0.37f, 0.5f, 2.0f, -3.5f, 9.0f,   -17.0f,
                                      40.0f, -88.5f, 100.0f, -1e30f, inf,  -inf, nan,   1e-40f, -1e-40f};
  constexpr int64_t H = 37;
  std::mt19937 rng(5);
  std::uniform_int_distribution<size_t> pick(0, classes.size() - 1);
  std::uniform_real_distribution<float> uniform(-6.0f, 6.0f);
  int64_t compared = 0, nans = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<float> gates(4 * H), cell_fast(H), cell_plain(H), h_fast(H), h_plain(H);
    for (float& g : gates) g = round % 2 ? classes[pick(rng)] : uniform(rng);
    for (int64_t j = 0; j < H; ++j) cell_fast[size_t(j)] = cell_plain[size_t(j)] = uniform(rng);
    lstm_cell_step(gates.data(), cell_fast.data(), h_fast.data(), H);
    lstm_cell_step_reference(gates.data(), cell_plain.data(), h_plain.data(), H);
    for (int64_t j = 0; j < H; ++j)
      for (auto [fast, plain] :
           {std::pair{cell_fast[size_t(j)], cell_plain[size_t(j)]}, std::pair{h_fast[size_t(j)], h_plain[size_t(j)]}}) {
        if (std::isnan(plain)) {
          EXPECT_TRUE(std::isnan(fast)) << "round " << round << ", unit " << j;
          ++nans;
          continue;
        }
        EXPECT_LE(std::fabs(fast - plain), 4e-7f * std::max(1.0f, std::fabs(plain)))
            << "round " << round << ", unit " << j << ": " << fast << " against " << plain;
        ++compared;
      }
  }
  EXPECT_GT(nans, 0);
  EXPECT_GT(compared, 10000);
}

// Trained long enough, the predictor learns the routes of its training split far beyond the
// most-frequent-expert guess (here with a tiny random model whose routes depend on the tokens).
TEST_F(PredictorTest, TrainingLearnsTheRoutes) {
  const std::string p = *dir_ + "/pl";
  TrainOptions o = small_options();
  o.hidden = 32;
  o.epochs = 8;
  auto r = train_predictor(*model_, *data_, o, p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto base = evaluate_predictor(nullptr, *data_, 1);
  ASSERT_TRUE(base.ok());
  EXPECT_GT(r->train_hit_top1, base->mean.frequent_top1 + 0.2) << "loss " << r->final_loss;
  auto predictor = Predictor::load(p, *model_);
  ASSERT_TRUE(predictor.ok());
  auto eval = evaluate_predictor(predictor->get(), *data_, 3);
  ASSERT_TRUE(eval.ok());
  EXPECT_TRUE(eval->has_predictor);
  // The evaluation's top-1 rate on the validation split is the one training reported.
  EXPECT_NEAR(eval->mean.predictor_top1, r->validation_hit_top1, 1e-9);
  EXPECT_NEAR(eval->mean.predictor_topk, r->validation_hit_top3, 1e-9);
}

#endif  // SIDA_HAVE_TORCH

using testing::write_random_predictor;

TEST_F(PredictorTest, BadFilesAreNamed) {
  PredictorConfig c = model_sized_config();
  const std::string p = *dir_ + "/bad";
  write_random_predictor(p, c);
  auto good = Predictor::load(p, *model_);
  ASSERT_TRUE(good.ok()) << good.status().to_string();
  EXPECT_LE(largest_difference_per_scale((*good)->forward({5, 9, 1}), (*good)->forward({5, 9, 1}, true)), 1e-6f);

  auto expect_error = [&](const std::string& word) {
    auto r = Predictor::load(p, *model_);
    ASSERT_FALSE(r.ok()) << word;
    EXPECT_NE(r.status().to_string().find(word), std::string::npos) << r.status().to_string();
  };
  // A float where an integer belongs, a missing key, another model's sizes.
  auto config_text = read_all(p + "/config.json");
  auto j = *parse_json(config_text, "config.json");
  j["num_experts"] = 4.5;
  ASSERT_TRUE(write_text_file(p + "/config.json", j.dump()).ok());
  expect_error("\"num_experts\"");
  j.erase("num_experts");
  ASSERT_TRUE(write_text_file(p + "/config.json", j.dump()).ok());
  expect_error("\"num_experts\"");
  j["num_experts"] = c.num_experts + 1;
  ASSERT_TRUE(write_text_file(p + "/config.json", j.dump()).ok());
  expect_error("num_experts");
  j["num_experts"] = c.num_experts;
  // "bidirectional": not a boolean; with an odd width; over a left-to-right predictor's tensors.
  j["bidirectional"] = "yes";
  ASSERT_TRUE(write_text_file(p + "/config.json", j.dump()).ok());
  expect_error("\"bidirectional\"");
  j["bidirectional"] = true;
  j["hidden"] = 7;
  ASSERT_TRUE(write_text_file(p + "/config.json", j.dump()).ok());
  expect_error("an even width");
  j["hidden"] = c.hidden;
  ASSERT_TRUE(write_text_file(p + "/config.json", j.dump()).ok());
  expect_error("lstm.weight_ih_l0");
  // Files written before the key existed hold no "bidirectional": left to right.
  j.erase("bidirectional");
  ASSERT_TRUE(write_text_file(p + "/config.json", j.dump()).ok());
  auto without_key = Predictor::load(p, *model_);
  ASSERT_TRUE(without_key.ok()) << without_key.status().to_string();
  EXPECT_FALSE((*without_key)->config().bidirectional);
  // A tensor of the wrong shape: the file and tensor are named.
  c.hidden = 9;
  write_random_predictor(p, c);
  c.hidden = 8;
  ASSERT_TRUE(write_predictor_config(p, c, Json()).ok());
  expect_error("input.weight");
  std::filesystem::remove(p + "/predictor.safetensors");
  expect_error("predictor.safetensors");
}

// Serving with the predictor's plans: exact mode stays bit-identical to all experts resident, the
// plans are the predictor's top-1 experts in the engine's order, and the report says where plans
// came from and how long the predictor ran.
TEST_F(PredictorTest, PredictorPlansDrivePrefetchInExactMode) {
  const PredictorConfig c = model_sized_config();
  const std::string p = *dir_ + "/serve-predictor";
  write_random_predictor(p, c);
  auto predictor = Predictor::load(p, *model_);
  ASSERT_TRUE(predictor.ok()) << predictor.status().to_string();
  const auto requests = synthetic_requests(10, 3, 14, c.vocab_size, 9);

  // The plans: per request, per layer, the distinct top-1 experts ascending; or the window's union.
  std::vector<int32_t> per_request, expected_union;
  for (const Request& r : requests) {
    const auto top = (*predictor)->predict(r, 1);
    std::vector<int32_t> ids;
    for (size_t i = 0; i < top.size(); ++i)
      ids.push_back(int32_t(int64_t(i % size_t(c.num_moe_layers)) * c.num_experts + top[i]));
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    per_request.insert(per_request.end(), ids.begin(), ids.end());
    expected_union.insert(expected_union.end(), ids.begin(), ids.end());
  }
  std::sort(expected_union.begin(), expected_union.end());
  expected_union.erase(std::unique(expected_union.begin(), expected_union.end()), expected_union.end());
  EXPECT_EQ(predicted_accesses(**predictor, requests, false), per_request);
  EXPECT_EQ(predicted_accesses(**predictor, requests, true), expected_union);
  // Plans of each token's 3 best experts: the distinct ids of predict(r, 3), per request.
  std::vector<int32_t> per_request_top3;
  for (const Request& r : requests) {
    const auto top = (*predictor)->predict(r, 3);
    std::vector<int32_t> ids;
    for (size_t i = 0; i < top.size(); ++i)
      ids.push_back(int32_t(int64_t(i / 3 % size_t(c.num_moe_layers)) * c.num_experts + top[i]));
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    per_request_top3.insert(per_request_top3.end(), ids.begin(), ids.end());
  }
  EXPECT_GT(per_request_top3.size(), per_request.size());
  EXPECT_EQ(predicted_accesses(**predictor, requests, false, 3), per_request_top3);
  for (const Request& r : requests) {  // the routes' top-1 is the plan's first
    const auto routes = (*predictor)->predict_routes(r, 3);
    ASSERT_EQ(routes.plan.size(), routes.expert.size() * 3);
    for (size_t i = 0; i < routes.expert.size(); ++i) EXPECT_EQ(routes.plan[i * 3], routes.expert[i]);
  }

  ServeOptions opt;
  opt.max_new_tokens = 3;
  opt.keep_outputs = true;
  opt.window = 4;
  auto all = ExpertStore::create(*model_, StoreOptions{});
  ASSERT_TRUE(all.ok());
  auto reference = serve(*model_, **all, requests, opt);
  ASSERT_TRUE(reference.ok()) << reference.status().to_string();
  EXPECT_EQ(reference->plans, "none");
  for (Execution execution : {Execution::kRequest, Execution::kWindow}) {
    StoreOptions so;
    so.policy = Policy::kPrefetch;
    so.budget_bytes = 3 * model_->config().expert_f32_bytes();  // 3 of 24 experts
    auto store = ExpertStore::create(*model_, so);
    ASSERT_TRUE(store.ok());
    opt.execution = execution;
    opt.predictor = predictor->get();
    auto report = serve(*model_, **store, requests, opt);
    ASSERT_TRUE(report.ok()) << report.status().to_string();
    EXPECT_EQ(report->plans, "predictor");
    EXPECT_GT(report->predictor_s, 0.0);
    EXPECT_EQ(
        report->planned_accesses, execution == Execution::kRequest ? per_request.size() : [&] {
          size_t n = 0;  // the union of each window of 4
          for (size_t first = 0; first < requests.size(); first += 4)
            n += predicted_accesses(**predictor,
                                    std::vector<Request>(requests.begin() + long(first),
                                                         requests.begin() + long(std::min(first + 4, requests.size()))),
                                    true)
                     .size();
          return n;
        }());
    for (size_t r = 0; r < requests.size(); ++r) {
      EXPECT_EQ(report->results[r].generated, reference->results[r].generated);
      EXPECT_EQ(report->results[r].logits, reference->results[r].logits);
      EXPECT_EQ(report->results[r].encoder_hidden, reference->results[r].encoder_hidden);
    }
    // Plans from the predictor and from a route table at once are refused.
    RouteTable table;
    opt.routes = &table;
    EXPECT_FALSE(serve(*model_, **store, requests, opt).ok());
    opt.routes = nullptr;
  }
}

// Router replacement sends each encoder token where the replacement says, scaled as it says: a
// replacement that repeats the router's own decisions (expert and probability, capacity never
// reached here) reproduces exact mode bit for bit.
TEST_F(PredictorTest, ReplacementThatRepeatsTheRouterIsExact) {
  testing::LoadedModel m = testing::load_model(*dir_);
  ASSERT_TRUE(m.store);
  const Request request = {7, 12, 5, 33, 41, 9, 1};
  Engine exact(*m.model, *m.store);
  std::vector<std::vector<int32_t>> choice(size_t(m.model->config().num_encoder_moe_layers()));
  std::vector<std::vector<float>> prob(choice.size());
  exact.set_observer([&](const MoeLayerVisit& v) {
    if (v.decode_step >= 0) return;
    const int64_t E = m.model->config().num_experts;
    for (size_t t = 0; t < v.positions.size(); ++t) {
      std::vector<float> p(v.router_logits.begin() + long(t * size_t(E)),
                           v.router_logits.begin() + long((t + 1) * size_t(E)));
      const float top = *std::max_element(p.begin(), p.end());
      float sum = 0;
      for (float x : p) sum += std::exp(x - top);
      choice[size_t(v.moe_layer)].push_back(v.choice[t]);
      prob[size_t(v.moe_layer)].push_back(1.0f / sum);
    }
  });
  auto want = exact.generate({request}, {.max_new_tokens = 4, .keep_logits = true});
  ASSERT_TRUE(want.ok());
  Engine replaced(*m.model, *m.store);
  int64_t calls = 0;
  replaced.set_router_replacement([&](int32_t, int64_t layer, int32_t position, int32_t* expert, float* scale) {
    *expert = choice[size_t(layer)][size_t(position)];
    *scale = prob[size_t(layer)][size_t(position)];
    ++calls;
  });
  auto got = replaced.generate({request}, {.max_new_tokens = 4, .keep_logits = true});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(calls, int64_t(request.size()) * m.model->config().num_encoder_moe_layers());
  EXPECT_EQ(got->tokens, want->tokens);
  EXPECT_EQ(got->logits, want->logits);
  // Another expert changes the result.
  replaced.set_router_replacement([&](int32_t, int64_t layer, int32_t position, int32_t* expert, float* scale) {
    *expert = (choice[size_t(layer)][size_t(position)] + 1) % int32_t(m.model->config().num_experts);
    *scale = prob[size_t(layer)][size_t(position)];
  });
  auto moved = replaced.generate({request}, {.max_new_tokens = 4, .keep_logits = true});
  ASSERT_TRUE(moved.ok());
  EXPECT_NE(moved->logits, want->logits);
  // Three experts per token: the router's own first, two others scaled by 0, give exact mode's
  // results, and the observer sees three choices per encoder token (the decoder's routers one).
  const int32_t E = int32_t(m.model->config().num_experts);
  replaced.set_router_replacement(
      [&](int32_t, int64_t layer, int32_t position, int32_t* experts, float* scales) {
        const int32_t own = choice[size_t(layer)][size_t(position)];
        experts[0] = own;
        experts[1] = (own + 1) % E;
        experts[2] = (own + 2) % E;
        scales[0] = prob[size_t(layer)][size_t(position)];
        scales[1] = scales[2] = 0.0f;
      },
      3);
  std::vector<int64_t> seen_k;
  replaced.set_observer([&](const MoeLayerVisit& v) {
    seen_k.push_back(v.experts_per_token);
    if (v.decode_step < 0) { EXPECT_EQ(v.choice.size(), v.positions.size() * 3); }
  });
  auto three = replaced.generate({request}, {.max_new_tokens = 4, .keep_logits = true});
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(three->tokens, want->tokens);
  EXPECT_EQ(three->logits, want->logits);
  EXPECT_NE(std::find(seen_k.begin(), seen_k.end(), 3), seen_k.end());
  EXPECT_NE(std::find(seen_k.begin(), seen_k.end(), 1), seen_k.end());
  // Given weight, the other two move the result.
  replaced.set_router_replacement(
      [&](int32_t, int64_t layer, int32_t position, int32_t* experts, float* scales) {
        const int32_t own = choice[size_t(layer)][size_t(position)];
        for (int j = 0; j < 3; ++j) experts[j] = (own + j) % E;
        scales[0] = 0.5f * prob[size_t(layer)][size_t(position)];
        scales[1] = scales[2] = 0.25f;
      },
      3);
  auto mixed = replaced.generate({request}, {.max_new_tokens = 4, .keep_logits = true});
  ASSERT_TRUE(mixed.ok());
  EXPECT_NE(mixed->logits, want->logits);
}

// Top-3 replacement on a model of two experts is refused by name (not a failed check later).
TEST(PredictorReplacement, TopThreeNeedsThreeExperts) {
  SwitchConfig c = *preset_config("tiny");
  c.num_experts = 2;
  const std::string dir = testing::make_test_checkpoint("two-experts", c);
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  testing::write_random_predictor(dir + "/predictor", testing::predictor_config_for(**model));
  auto predictor = Predictor::load(dir + "/predictor", **model);
  ASSERT_TRUE(predictor.ok()) << predictor.status().to_string();
  auto store = ExpertStore::create(**model, StoreOptions{});
  ASSERT_TRUE(store.ok());
  ServeOptions opt;
  opt.max_new_tokens = 2;
  opt.predictor = predictor->get();
  opt.replace_router = true;
  opt.replace_top_k = 3;
  auto refused = serve(**model, **store, synthetic_requests(2, 3, 6, c.vocab_size, 5), opt);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().to_string().find("--replace-top-k"), std::string::npos) << refused.status().to_string();
  opt.replace_top_k = 1;
  EXPECT_TRUE(serve(**model, **store, synthetic_requests(2, 3, 6, c.vocab_size, 5), opt).ok());
  std::filesystem::remove_all(dir);
}

// SiDA's replacement from predicted routes: top-1 is the predicted expert scaled by its
// probability; top-3 the three best scaled by their probabilities times 0.5, 0.25, 0.25.
// A cell past the routes it reads stops at the check instead of reading past the tables.
TEST(PredictorReplacement, ACellPastThePredictedRoutesIsCaught) {
  Predictor::Routes routes;
  routes.plan_k = 3;
  routes.expert = {1, 2};
  routes.prob = {0.5f, 0.5f};
  routes.plan = {1, 0, 2, 2, 1, 0};
  routes.plan_prob = {0.5f, 0.3f, 0.2f, 0.6f, 0.3f, 0.1f};
  int32_t experts[3];
  float scales[3];
  replacement_choice(routes, 1, 3, experts, scales);
  EXPECT_EQ(experts[0], 2);
  EXPECT_FLOAT_EQ(scales[0], 0.5f * 0.6f);
  EXPECT_DEATH(replacement_choice(routes, 2, 3, experts, scales), "past the predicted routes");
  EXPECT_DEATH(predicted_top_k_choice(routes, 2, 2, true, experts, scales), "past the predicted routes");
}

TEST_F(PredictorTest, ReplacementTopKScalesByDegradingFactors) {
  const PredictorConfig c = model_sized_config();
  const std::string p = *dir_ + "/topk-predictor";
  write_random_predictor(p, c);
  auto predictor = Predictor::load(p, *model_);
  ASSERT_TRUE(predictor.ok());
  const Request request = {7, 12, 5, 33, 41, 9, 1};
  const auto logits = (*predictor)->forward(request);
  const auto routes = (*predictor)->predict_routes(request, 3);
  const int64_t E = c.num_experts;
  EXPECT_TRUE(valid_replace_top_k(1));
  EXPECT_TRUE(valid_replace_top_k(3));
  EXPECT_FALSE(valid_replace_top_k(2));
  for (size_t cell = 0; cell < routes.expert.size(); ++cell) {
    // Softmax of the cell's logits, in double, as the oracle.
    const float* row = &logits[cell * size_t(E)];
    const double top = *std::max_element(row, row + E);
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += std::exp(double(row[e]) - top);
    int32_t experts[3];
    float scales[3];
    replacement_choice(routes, cell, 1, experts, scales);
    EXPECT_EQ(experts[0], routes.expert[cell]);
    EXPECT_EQ(scales[0], routes.prob[cell]);
    replacement_choice(routes, cell, 3, experts, scales);
    const double factors[] = {0.5, 0.25, 0.25};
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(experts[j], routes.plan[cell * 3 + size_t(j)]);
      EXPECT_NEAR(scales[j], factors[j] * std::exp(double(row[experts[j]]) - top) / sum, 1e-6) << "cell " << cell;
    }
    EXPECT_EQ(experts[0], routes.expert[cell]);
    EXPECT_GE(row[experts[0]], row[experts[1]]);
    EXPECT_GE(row[experts[1]], row[experts[2]]);
  }
}

// serve() in replacement mode: encoder tokens go to the predictor's top-1 experts (no capacity),
// the decoder's routers still decide, and the comparison with exact mode is reported.
TEST_F(PredictorTest, ServeReplacesTheRouterWithThePredictor) {
  const PredictorConfig c = model_sized_config();
  const std::string p = *dir_ + "/replace-predictor";
  write_random_predictor(p, c);
  auto predictor = Predictor::load(p, *model_);
  ASSERT_TRUE(predictor.ok());
  const auto requests = synthetic_requests(6, 3, 14, c.vocab_size, 21);
  ServeOptions opt;
  opt.max_new_tokens = 3;
  opt.predictor = predictor->get();
  opt.replace_router = true;
  opt.keep_outputs = true;
  opt.keep_routes = true;
  StoreOptions so;
  so.policy = Policy::kPrefetch;
  so.budget_bytes = 4 * model_->config().expert_f32_bytes();
  auto store = ExpertStore::create(*model_, so);
  ASSERT_TRUE(store.ok());
  auto report = serve(*model_, **store, requests, opt);
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  EXPECT_TRUE(report->replace_router);
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto routes = (*predictor)->predict_routes(requests[r]);
    int64_t encoder_visits = 0;
    for (const RouterChoices& rc : report->results[r].routes) {
      if (rc.decode_step >= 0) continue;
      ++encoder_visits;
      for (size_t t = 0; t < rc.positions.size(); ++t) {
        EXPECT_EQ(rc.expert[t],
                  routes.expert[size_t(rc.positions[t]) * size_t(c.num_moe_layers) + size_t(rc.moe_layer)]);
        EXPECT_EQ(rc.dropped[t], 0);
      }
    }
    EXPECT_EQ(encoder_visits, c.num_moe_layers);
  }
  // Against exact mode: the outputs moved (random predictor), and against itself, nothing moved.
  opt.replace_router = false;
  opt.predictor = nullptr;
  auto all = ExpertStore::create(*model_, StoreOptions{});
  ASSERT_TRUE(all.ok());
  auto exact = serve(*model_, **all, requests, opt);
  ASSERT_TRUE(exact.ok());
  const Json moved = compare_to_exact(*exact, *report), same = compare_to_exact(*exact, *exact);
  EXPECT_GT(moved["encoder_relative_error"].get<double>(), 1e-3);
  EXPECT_GT(moved["logits_relative_error"].get<double>(), 1e-3);
  EXPECT_EQ(same["encoder_relative_error"].get<double>(), 0.0);
  EXPECT_EQ(same["logits_relative_error"].get<double>(), 0.0);
  EXPECT_EQ(same["generated_id_agreement"].get<double>(), 1.0);
  EXPECT_EQ(same["sequences_identical"].get<uint64_t>(), requests.size());
  // Replacement needs the predictor.
  opt.replace_router = true;
  EXPECT_FALSE(serve(*model_, **all, requests, opt).ok());
  // Window execution (several requests' tokens in one call; each takes its own request's routes)
  // gives request execution's bits, windows of 4 over 6 requests (a full and a partial one).
  opt.predictor = predictor->get();
  opt.execution = Execution::kWindow;
  opt.window = 4;
  auto store_w = ExpertStore::create(*model_, so);
  ASSERT_TRUE(store_w.ok());
  auto windowed = serve(*model_, **store_w, requests, opt);
  ASSERT_TRUE(windowed.ok()) << windowed.status().to_string();
  EXPECT_EQ(windowed->router, report->router);
  expect_same_results(*windowed, *report);
}

TEST_F(PredictorTest, CommandLineTrainsAndEvaluates) {
  const std::string routes = *dir_ + "/routes.safetensors", p = *dir_ + "/pcli";
  ASSERT_TRUE(write_routes_dataset(routes, *data_).ok());
  const std::string cli = std::string(CLI_PATH);
  auto run = perfmem::testing::run_command(cli + " eval-predictor " + *dir_ + " --routes " + routes +
                                           " --baselines-only --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto j = parse_json(run.output, "eval-predictor output");
  ASSERT_TRUE(j.ok()) << run.output;
  EXPECT_EQ((*j)["validation_requests"], 12);
  EXPECT_FALSE((*j)["mean"].contains("predictor_top1"));
  run = perfmem::testing::run_command(cli + " eval-predictor " + *dir_ + " --routes " + routes);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("--baselines-only"), std::string::npos) << run.output;
#ifdef SIDA_HAVE_TORCH
  run = perfmem::testing::run_command(cli + " train-predictor " + *dir_ + " --routes " + routes + " -o " + p +
                                      " --hidden 8 --epochs 1 --batch 16 --seed 3");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("trained 3 steps"), std::string::npos) << run.output;
  run = perfmem::testing::run_command(cli + " eval-predictor " + *dir_ + " --predictor " + p + " --routes " + routes +
                                      " -k 2 --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  j = parse_json(run.output, "eval-predictor output");
  ASSERT_TRUE(j.ok()) << run.output;
  EXPECT_EQ((*j)["k"], 2);
  EXPECT_EQ((*j)["layers"].size(), size_t(model_->config().num_encoder_moe_layers()));
  EXPECT_TRUE((*j)["mean"].contains("predictor_top1"));
  EXPECT_GT((*j)["predictor_us_per_token"].get<double>(), 0.0);
  // Serving with it: prefetch plans from the predictor, then SiDA's mode with its comparison.
  const std::string reqs = *dir_ + "/cli-requests.txt";
  ASSERT_TRUE(write_text_file(reqs, "5 9 12 1\n33 41 7 8 1\n").ok());
  run = perfmem::testing::run_command(cli + " run " + *dir_ + " --requests " + reqs +
                                      " --policy prefetch --budget 1 --predictor " + p + " --json");
  EXPECT_NE(run.exit_code, 0);  // 1 byte holds no expert
  run = perfmem::testing::run_command(cli + " run " + *dir_ + " --requests " + reqs + " --policy prefetch --budget " +
                                      std::to_string(2 * model_->config().expert_f32_bytes()) + " --predictor " + p +
                                      " --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  j = parse_json(run.output, "run output");
  ASSERT_TRUE(j.ok()) << run.output;
  EXPECT_EQ((*j)["plans"], "predictor");
  run = perfmem::testing::run_command(cli + " run " + *dir_ + " --requests " + reqs + " --predictor " + p +
                                      " --replace-router --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  j = parse_json(run.output, "run output");
  ASSERT_TRUE(j.ok()) << run.output;
  EXPECT_EQ((*j)["replace_router_vs_exact"]["requests"], 2);
  EXPECT_TRUE((*j)["replace_router_vs_exact"].contains("logits_relative_error"));
  EXPECT_EQ((*j)["router"], "replaced by the predictor (encoder, top-1)");
  // SiDA's top-3 replacement: the dumped encoder choices hold three experts per token.
  run = perfmem::testing::run_command(cli + " run " + *dir_ + " --requests " + reqs + " --predictor " + p +
                                      " --replace-router --replace-top-k 3 --json --dump-routes " + *dir_ +
                                      "/top3-routes.json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  j = parse_json(run.output, "run output");
  ASSERT_TRUE(j.ok()) << run.output;
  EXPECT_EQ((*j)["router"], "replaced by the predictor (encoder, top-3, degrading factors 0.5, 0.25, 0.25)");
  auto dumped = read_json_file(*dir_ + "/top3-routes.json");
  ASSERT_TRUE(dumped.ok()) << dumped.status().to_string();
  int64_t encoder_layers = 0;
  for (const Json& layer : (*dumped)["requests"][0]["layers"]) {
    const int64_t k = layer["decoder"].get<bool>() ? 1 : 3;
    encoder_layers += k == 3;
    EXPECT_EQ(layer["experts_per_token"], k);
    EXPECT_EQ(layer["expert"].size(), layer["positions"].size() * size_t(k));
  }
  EXPECT_EQ(encoder_layers, model_->config().num_encoder_moe_layers());
  run = perfmem::testing::run_command(cli + " run " + *dir_ + " --requests " + reqs + " --predictor " + p +
                                      " --replace-router --replace-top-k 2");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("--replace-top-k"), std::string::npos) << run.output;
  run = perfmem::testing::run_command(cli + " run " + *dir_ + " --requests " + reqs + " --replace-router");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("--predictor"), std::string::npos) << run.output;
  // --bidirectional: trained, then read back; an odd width is refused naming the option.
  run = perfmem::testing::run_command(cli + " train-predictor " + *dir_ + " --routes " + routes + " -o " + p +
                                      "-bidirectional --hidden 8 --epochs 1 --batch 16 --bidirectional");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto bidirectional = read_predictor_config(p + "-bidirectional");
  ASSERT_TRUE(bidirectional.ok()) << bidirectional.status().to_string();
  EXPECT_TRUE(bidirectional->bidirectional);
  run = perfmem::testing::run_command(cli + " train-predictor " + *dir_ + " --routes " + routes + " -o " + p +
                                      "-odd --hidden 7 --bidirectional");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("--hidden"), std::string::npos) << run.output;
  EXPECT_FALSE(std::filesystem::exists(p + "-odd"));
  // A file that is not a routes dataset is refused by name.
  run =
      perfmem::testing::run_command(cli + " train-predictor " + *dir_ + " --routes " + *dir_ + "/config.json -o " + p);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("config.json"), std::string::npos) << run.output;
#endif
}

// sida/bench/route_context.py (how much of the routing a token table explains) on a routes file
// of this model: its in-sample token-table figures equal the counts made here.
TEST_F(PredictorTest, RouteContextScriptCountsWhatATokenTableExplains) {
  const std::string python = std::string(PERFMEM_VENV) + "/bin/python";
  if (!std::filesystem::exists(python))
    PERFMEM_SKIP_UNLESS_REQUIRED("no Python venv at " << PERFMEM_VENV << " (run scripts/install-deps.sh)");
  const std::string routes = *dir_ + "/context-routes.safetensors", out = *dir_ + "/context.json";
  ASSERT_TRUE(write_routes_dataset(routes, *data_).ok());
  const std::string script = python + " " + PERFMEM_SOURCE_DIR + "/sida/bench/route_context.py ";
  auto run = perfmem::testing::run_command("env -u LD_PRELOAD -u ASAN_OPTIONS " + script + routes + " --json " + out);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto j = read_json_file(out);
  ASSERT_TRUE(j.ok()) << j.status().to_string();
  const RoutesDataset& d = *data_;
  ASSERT_EQ((*j)["layers"].size(), size_t(d.num_moe_layers));
  for (int64_t layer = 0; layer < d.num_moe_layers; ++layer) {
    // The best expert per token id on the training split, and how often it is the router's choice.
    std::map<int32_t, std::map<int32_t, int64_t>> counts;
    int64_t training_tokens = 0;
    for (int64_t r = 0; r < d.num_requests(); ++r) {
      if (d.validation[size_t(r)]) continue;
      for (int64_t i = d.offsets[size_t(r)]; i < d.offsets[size_t(r) + 1]; ++i) {
        ++counts[d.tokens[size_t(i)]][d.top_experts[size_t((i * d.num_moe_layers + layer) * d.top)]];
        ++training_tokens;
      }
    }
    int64_t explained = 0;
    for (const auto& [token, experts] : counts) {
      int64_t most = 0;
      for (const auto& [expert, n] : experts) most = std::max(most, n);
      explained += most;
    }
    const Json& entry = (*j)["layers"][size_t(layer)];
    EXPECT_NEAR(entry["tables"]["token"]["in_sample"].get<double>(), double(explained) / double(training_tokens), 1e-9)
        << entry.dump();
    const double probability = entry["mean_choice_probability"].get<double>();
    EXPECT_GT(probability, 1.0 / double(d.num_experts) - 1e-9);
    EXPECT_LE(probability, 1.0);
    // Longer keys never explain less of the data they were fitted on.
    EXPECT_GE(entry["tables"]["previous, token, next"]["in_sample"].get<double>(),
              entry["tables"]["token"]["in_sample"].get<double>());
  }
  // A file that is not a routes file: its name and the reason, no traceback.
  const std::string bad = *dir_ + "/not-routes.safetensors";
  ASSERT_TRUE(write_text_file(bad, "not a safetensors file").ok());
  run = perfmem::testing::run_command("env -u LD_PRELOAD -u ASAN_OPTIONS " + script + bad);
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find(bad + ": not a routes file"), std::string::npos) << run.output;
  EXPECT_EQ(run.output.find("Traceback"), std::string::npos) << run.output;
  // A routes file whose offsets end short of the tokens (readable, but not collect-routes'
  // layout): the file and the tensor named, nothing computed from the rows it covers.
  RoutesDataset short_offsets = d;
  short_offsets.offsets.back() -= 1;
  ASSERT_GE(short_offsets.offsets.back(), short_offsets.offsets[short_offsets.offsets.size() - 2]);
  const std::string mutated = *dir_ + "/short-offsets.safetensors";
  ASSERT_TRUE(write_routes_dataset(mutated, short_offsets).ok());
  run = perfmem::testing::run_command("env -u LD_PRELOAD -u ASAN_OPTIONS " + script + mutated + " --json " + out +
                                      ".mutated");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find(mutated + ": offsets: expected"), std::string::npos) << run.output;
  EXPECT_EQ(run.output.find("Traceback"), std::string::npos) << run.output;
  EXPECT_FALSE(std::filesystem::exists(out + ".mutated"));
}

// sida/bench/train_switch.py's span corruption (its optional pre-training, T5's objective): for
// every length a quotation may have, the input keeps its tokens in order with each hidden span
// replaced by the next sentinel, the target lists each sentinel with the tokens it hides, both end
// with eos, and about 15% of the tokens are hidden (at least one, never all).
TEST(TrainSwitchScript, SpanCorruptionHidesSpansThatTheTargetRestores) {
  const std::string python = std::string(PERFMEM_VENV) + "/bin/python";
  if (!std::filesystem::exists(python))
    PERFMEM_SKIP_UNLESS_REQUIRED("no Python venv at " << PERFMEM_VENV << " (run scripts/install-deps.sh)");
  constexpr int kEos = 1, kSentinels = 16, kFirstSentinel = 1015;
  // One line per (length, seed): the quotation, the input and the target, separated by '|'.
  const std::string program =
      "import random, sys\n"
      "sys.path.insert(0, sys.argv[1])\n"
      "import train_switch as t\n"
      "sentinels = [1015 - k for k in range(t.SENTINELS)]\n"
      "for length in range(2, 48):\n"
      "    for seed in range(20):\n"
      "        ids = [3 + (7 * i + seed) % 900 for i in range(length)]\n"
      "        x, y = t.span_corruption(ids, sentinels, 1, random.Random(seed))\n"
      "        print(' '.join(map(str, ids)), '|', ' '.join(map(str, x)), '|', ' '.join(map(str, y)))\n";
  const std::string script = ::testing::TempDir() + "/span_corruption_cases.py";
  ASSERT_TRUE(write_text_file(script, program).ok());
  auto run = perfmem::testing::run_command("env -u LD_PRELOAD -u ASAN_OPTIONS " + python + " " + script + " " +
                                           PERFMEM_SOURCE_DIR + "/sida/bench");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto parse = [](const std::string& text) {
    std::vector<int> out;
    std::istringstream in(text);
    for (int v; in >> v;) out.push_back(v);
    return out;
  };
  std::istringstream lines(run.output);
  int cases = 0;
  for (std::string line; std::getline(lines, line);) {
    const size_t bar1 = line.find('|'), bar2 = line.find('|', bar1 + 1);
    ASSERT_NE(bar2, std::string::npos) << line;
    const std::vector<int> ids = parse(line.substr(0, bar1)), input = parse(line.substr(bar1 + 1, bar2 - bar1 - 1)),
                           target = parse(line.substr(bar2 + 1));
    SCOPED_TRACE(line);
    ASSERT_FALSE(input.empty());
    ASSERT_FALSE(target.empty());
    EXPECT_EQ(input.back(), kEos);
    EXPECT_EQ(target.back(), kEos);
    EXPECT_NE(input.front(), kFirstSentinel) << "kept tokens come first";
    // The hidden spans, keyed by sentinel, from the target; then the input with each sentinel
    // expanded must be the quotation.
    std::map<int, std::vector<int>> spans;
    std::vector<int> order;
    int current = -1;
    for (size_t i = 0; i + 1 < target.size(); ++i) {
      if (target[i] > kFirstSentinel - kSentinels && target[i] <= kFirstSentinel) {
        current = target[i];
        order.push_back(current);
        spans[current];
      } else {
        ASSERT_NE(current, -1) << "the target starts with a sentinel";
        spans[current].push_back(target[i]);
      }
    }
    std::vector<int> restored, input_sentinels;
    int64_t hidden = 0;
    for (size_t i = 0; i + 1 < input.size(); ++i) {
      auto it = spans.find(input[i]);
      if (it == spans.end()) {
        restored.push_back(input[i]);
        continue;
      }
      input_sentinels.push_back(input[i]);
      EXPECT_FALSE(it->second.empty()) << "a sentinel hides at least one token";
      restored.insert(restored.end(), it->second.begin(), it->second.end());
      hidden += int64_t(it->second.size());
    }
    EXPECT_EQ(restored, ids);
    EXPECT_EQ(input_sentinels, order) << "the input and the target name the same sentinels in the same order";
    for (size_t k = 0; k < order.size(); ++k) EXPECT_EQ(order[k], kFirstSentinel - int(k));
    const int64_t length = int64_t(ids.size());
    EXPECT_EQ(hidden, std::clamp<int64_t>(int64_t(std::floor(0.15 * double(length) + 0.5)), 1, length - 1));
    ++cases;
  }
  EXPECT_EQ(cases, 46 * 20);
}

// Decoder-only families: collect-routes records the prompt pass of every MoE layer (the router's
// own choices, the same bits for any window), the predictor trains on it (random weights without
// LibTorch), and its prefetch plans for the prompts leave every output bit-identical to all
// experts resident, in request and window execution, at several budgets. Router replacement is
// refused by name.
void expect_decoder_only_predictor_works(const std::string& preset) {
  SCOPED_TRACE(preset);
  const SwitchConfig config = *preset_config(preset);
  const std::string dir = testing::make_test_checkpoint("predictor-" + preset, config);
  auto loaded = ModelWeights::load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  const ModelWeights& model = **loaded;
  const SwitchConfig& c = model.config();
  const int64_t M = c.num_moe_layers(), E = c.num_experts;
  EXPECT_EQ(predicted_moe_layers(c), M);
  std::vector<Request> corpus = synthetic_requests(50, 4, 16, c.vocab_size, 5);
  for (Request& r : corpus) r.front() = 1;  // prompts start with bos (synthetic ones end with an id)
  CollectOptions opt;
  opt.top = 3;
  opt.validation_every = 5;
  opt.show_progress = false;
  auto data = collect_routes(model, corpus, opt);
  ASSERT_TRUE(data.ok()) << data.status().to_string();
  EXPECT_EQ(data->num_moe_layers, M);
  EXPECT_EQ(data->top, 3);
  opt.window = 1;
  auto alone = collect_routes(model, corpus, opt);
  ASSERT_TRUE(alone.ok());
  EXPECT_EQ(alone->top_logits, data->top_logits);
  EXPECT_EQ(alone->top_experts, data->top_experts);
  // The teacher is the router: each prompt token's first expert at each layer, as the engine
  // routes the prompt.
  {
    auto store = ExpertStore::create(model, StoreOptions{});
    ASSERT_TRUE(store.ok());
    Engine engine(model, **store);
    size_t checked = 0;
    engine.set_observer([&](const MoeLayerVisit& v) {
      if (v.decode_step != 0) return;
      for (size_t t = 0; t < v.positions.size(); ++t) {
        const size_t at = (size_t(v.positions[t]) * size_t(M) + size_t(v.moe_layer)) * 3;
        EXPECT_EQ(data->top_experts[at], v.choice[t * size_t(v.experts_per_token)]);
        EXPECT_EQ(data->top_experts[at + 1], v.choice[t * size_t(v.experts_per_token) + 1]);
        ++checked;
      }
    });
    ASSERT_TRUE(engine.generate({corpus[0]}, {.max_new_tokens = 1}).ok());
    EXPECT_EQ(checked, corpus[0].size() * size_t(M));
  }
  const std::string p = dir + "/predictor";
#ifdef SIDA_HAVE_TORCH
  TrainOptions to;
  to.hidden = 16;
  to.batch = 8;
  to.epochs = 3;
  to.lr = 1e-2;
  to.show_progress = false;
  auto trained = train_predictor(model, *data, to, p);
  ASSERT_TRUE(trained.ok()) << trained.status().to_string();
#else
  testing::write_random_predictor(
      p, PredictorConfig{
             .d_model = c.d_model, .hidden = 8, .num_moe_layers = M, .num_experts = E, .vocab_size = c.vocab_size});
#endif
  auto predictor = Predictor::load(p, model);
  ASSERT_TRUE(predictor.ok()) << predictor.status().to_string();
  auto eval = evaluate_predictor(predictor->get(), *data, 2);
  ASSERT_TRUE(eval.ok()) << eval.status().to_string();
  ASSERT_EQ(eval->layers.size(), size_t(M));
  EXPECT_GT(eval->validation_tokens, 0);
  std::cout << preset << ": predictor hit rate on the validation split, top-1 " << eval->mean.predictor_top1
            << ", top-2 " << eval->mean.predictor_topk << " (most frequent expert: " << eval->mean.frequent_top1
            << " / " << eval->mean.frequent_topk << ")\n";
  // A plan loads at least the router's k experts per token and layer.
  EXPECT_EQ((*predictor)->predict_routes(corpus[0], 1).plan_k, c.experts_per_token);

  const std::vector<Request> requests(corpus.begin(), corpus.begin() + 8);
  ServeOptions so;
  so.max_new_tokens = 4;
  so.keep_outputs = true;
  so.window = 3;
  const uint64_t all = uint64_t(M * E);
  const ServeReport reference =
      testing::serve_with(model, requests, so, Policy::kAllResident, all, Execution::kRequest, nullptr, false);
  ASSERT_EQ(reference.results.size(), requests.size());
  so.predictor = predictor->get();
  for (uint64_t slots : {uint64_t(c.experts_per_token), uint64_t(E), all / 2})
    for (Execution execution : {Execution::kRequest, Execution::kWindow}) {
      SCOPED_TRACE(std::to_string(slots) + " slots, " + execution_name(execution));
      const ServeReport got =
          testing::serve_with(model, requests, so, Policy::kPrefetch, slots, execution, nullptr, false);
      EXPECT_EQ(got.plans, "predictor");
      EXPECT_GT(got.planned_accesses, 0u);
      EXPECT_GT(got.predictor_s, 0.0);
      ASSERT_EQ(got.results.size(), requests.size());
      for (size_t r = 0; r < requests.size(); ++r) {
        EXPECT_EQ(got.results[r].generated, reference.results[r].generated) << "request " << r;
        EXPECT_EQ(got.results[r].logits, reference.results[r].logits) << "request " << r;
      }
    }
  // Router replacement: a replacement that repeats the router's own experts and weights at the
  // prompt step gives exact mode's bits (the weights recomputed from the observed router logits
  // as the router computes them: softmax, the k best, normalised when the family does).
  {
    auto store = ExpertStore::create(model, StoreOptions{});
    ASSERT_TRUE(store.ok());
    const int64_t k = c.experts_per_token;
    std::map<std::pair<int64_t, int32_t>, std::vector<std::pair<int32_t, float>>> own;  // (layer, position)
    Engine exact(model, **store);
    exact.set_observer([&](const MoeLayerVisit& v) {
      if (v.decode_step != 0) return;
      for (size_t t = 0; t < v.positions.size(); ++t) {
        std::vector<float> probs(v.router_logits.begin() + std::ptrdiff_t(t * size_t(E)),
                                 v.router_logits.begin() + std::ptrdiff_t((t + 1) * size_t(E)));
        softmax_inplace(probs.data(), E);
        float sum = 0;
        for (int64_t j = 0; j < k; ++j) sum += probs[size_t(v.choice[t * size_t(k) + size_t(j)])];
        if (!c.decoder_only.norm_topk_prob) sum = 1;
        auto& mine = own[{v.moe_layer, v.positions[t]}];
        for (int64_t j = 0; j < k; ++j) {
          const int32_t e = v.choice[t * size_t(k) + size_t(j)];
          mine.push_back({e, probs[size_t(e)] / sum});
        }
      }
    });
    auto want = exact.generate({requests[0]}, {.max_new_tokens = 4, .keep_logits = true});
    ASSERT_TRUE(want.ok());
    Engine replaced(model, **store);
    int64_t calls = 0;
    replaced.set_router_replacement(
        [&](int32_t, int64_t layer, int32_t position, int32_t* experts, float* scales) {
          const auto& mine = own.at({layer, position});
          for (int64_t j = 0; j < k; ++j) std::tie(experts[j], scales[j]) = mine[size_t(j)];
          ++calls;
        },
        k);
    auto got = replaced.generate({requests[0]}, {.max_new_tokens = 4, .keep_logits = true});
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(calls, int64_t(requests[0].size()) * M);  // the prompt's tokens only
    EXPECT_EQ(got->tokens, want->tokens);
    EXPECT_EQ(got->logits, want->logits);
  }
  // Through serve(): the prompt's tokens go to the predictor's k best experts at every MoE layer;
  // generated tokens are routed.
  so.replace_router = true;
  so.keep_routes = true;
  auto store = ExpertStore::create(model, StoreOptions{});
  ASSERT_TRUE(store.ok());
  auto replaced = serve(model, **store, requests, so);
  ASSERT_TRUE(replaced.ok()) << replaced.status().to_string();
  EXPECT_NE(replaced->router.find("prompt tokens"), std::string::npos) << replaced->router;
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto routes = (*predictor)->predict_routes(requests[r], c.experts_per_token);
    int64_t prompt_visits = 0;
    for (const RouterChoices& rc : replaced->results[r].routes) {
      if (rc.decode_step != 0) continue;
      ++prompt_visits;
      ASSERT_EQ(rc.experts_per_token, c.experts_per_token);
      for (size_t t = 0; t < rc.positions.size(); ++t)
        for (size_t j = 0; j < size_t(c.experts_per_token); ++j)
          EXPECT_EQ(
              rc.expert[t * size_t(c.experts_per_token) + j],
              routes.plan[(size_t(rc.positions[t]) * size_t(M) + size_t(rc.moe_layer)) * size_t(routes.plan_k) + j]);
    }
    EXPECT_EQ(prompt_visits, M);
  }
  // Window execution (a window's prompts in one call, each token taking its own request's
  // routes) gives request execution's bits.
  so.execution = Execution::kWindow;
  auto windowed = serve(model, **store, requests, so);
  ASSERT_TRUE(windowed.ok()) << windowed.status().to_string();
  expect_same_results(*windowed, *replaced);
  so.execution = Execution::kRequest;
  // SiDA's top-3 with degrading factors is Switch's: refused by name for a decoder-only model.
  so.replace_top_k = 3;
  auto refused = serve(model, **store, requests, so);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().to_string().find("--replace-top-k"), std::string::npos) << refused.status().to_string();
  // A predictor of another layer count is refused, naming the key.
  testing::write_random_predictor(
      dir + "/other",
      PredictorConfig{
          .d_model = c.d_model, .hidden = 8, .num_moe_layers = M + 1, .num_experts = E, .vocab_size = c.vocab_size});
  auto other = Predictor::load(dir + "/other", model);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().to_string().find("num_moe_layers"), std::string::npos) << other.status().to_string();
  std::filesystem::remove_all(dir);
}

TEST(DecoderOnlyPredictor, MixtralCollectsTrainsAndPrefetchesExactly) {
  expect_decoder_only_predictor_works("mixtral-tiny");
}
TEST(DecoderOnlyPredictor, Qwen2MoeCollectsTrainsAndPrefetchesExactly) {
  expect_decoder_only_predictor_works("qwen2-moe-tiny");
}

#ifdef SIDA_HAVE_TORCH
// The same through the command line on a Mixtral checkpoint: collect-routes, train-predictor,
// eval-predictor, `sida run --predictor` giving the all-resident ids, and --replace-router.
TEST(DecoderOnlyPredictor, CommandLineCollectsTrainsAndRuns) {
  const std::string cli = std::string(CLI_PATH);
  const std::string dir = testing::make_test_checkpoint("predictor-cli-mixtral", *preset_config("mixtral-tiny"));
  std::ostringstream corpus;  // prompts starting with bos (1)
  for (const Request& r : synthetic_requests(40, 4, 12, 96, 8)) {
    corpus << 1;
    for (size_t i = 1; i < r.size(); ++i) corpus << ' ' << r[i];
    corpus << '\n';
  }
  ASSERT_TRUE(write_text_file(dir + "/corpus.txt", corpus.str()).ok());
  auto run = perfmem::testing::run_command(cli + " collect-routes " + dir + " --corpus " + dir + "/corpus.txt -o " +
                                           dir + "/routes.safetensors 2>&1");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("in 3 MoE layers (the prompts)"), std::string::npos) << run.output;
  run = perfmem::testing::run_command(cli + " train-predictor " + dir + " --routes " + dir + "/routes.safetensors -o " +
                                      dir + "/p --hidden 8 --epochs 1 --batch 16 --seed 3 2>&1");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  run = perfmem::testing::run_command(cli + " eval-predictor " + dir + " --predictor " + dir + "/p --routes " + dir +
                                      "/routes.safetensors --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto eval = parse_json(run.output, "eval-predictor output");
  ASSERT_TRUE(eval.ok()) << run.output;
  EXPECT_EQ((*eval)["layers"].size(), 3u);
  const std::string requests = " --tokens '1 12 7 33 41 5' --max-new-tokens 5";
  auto all = perfmem::testing::run_command(cli + " run " + dir + requests + " --policy all-resident 2>/dev/null");
  auto predicted = perfmem::testing::run_command(cli + " run " + dir + requests + " --policy prefetch --budget 18KiB " +
                                                 "--predictor " + dir + "/p 2>/dev/null");
  ASSERT_EQ(all.exit_code, 0) << all.output;
  ASSERT_EQ(predicted.exit_code, 0) << predicted.output;
  const std::string ids = all.output.substr(0, all.output.find('\n'));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), ' '), 4) << all.output;  // five ids
  EXPECT_EQ(predicted.output.substr(0, predicted.output.find('\n')), ids);
  EXPECT_NE(predicted.output.find("prefetch plans from the predictor"), std::string::npos) << predicted.output;
  run = perfmem::testing::run_command(cli + " run " + dir + requests + " --predictor " + dir +
                                      "/p --replace-router 2>&1");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("router replaced by the predictor"), std::string::npos) << run.output;
  std::filesystem::remove_all(dir);
}
#endif  // SIDA_HAVE_TORCH

}  // namespace
}  // namespace perfmem::sida
