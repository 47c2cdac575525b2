// Sampled generation: the filtered distribution against a plain reference, the sampler's draws
// against that distribution, bad options refused, and determinism under a seed across policies,
// budgets, executions and windows for every family.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "perfmem/sida/sampling.h"
#include "perfmem/sida/serve.h"
#include "test_util.h"

namespace perfmem::sida {
namespace {

// The definition, token by token, with no sorting: the logits / temperature; a token survives
// top-k when fewer than k tokens have a strictly larger logit; softmax over the survivors; a
// survivor survives top-p when the mass of the survivors ranked before it (more probable, or as
// probable with a lower id) is below top_p; the survivors' probabilities renormalised.
std::map<int32_t, double> reference_distribution(const std::vector<float>& logits, const SamplingOptions& o) {
  const int64_t V = int64_t(logits.size());
  std::vector<uint8_t> kept(size_t(V), 1);
  if (o.top_k > 0)
    for (int64_t i = 0; i < V; ++i) {
      int64_t larger = 0;
      for (int64_t j = 0; j < V; ++j) larger += logits[size_t(j)] > logits[size_t(i)];
      kept[size_t(i)] = larger < o.top_k;
    }
  double max_scaled = -INFINITY;
  for (int64_t i = 0; i < V; ++i)
    if (kept[size_t(i)]) max_scaled = std::max(max_scaled, double(logits[size_t(i)]) / o.temperature);
  std::vector<double> p(size_t(V), 0.0);
  double total = 0;
  for (int64_t i = 0; i < V; ++i)
    if (kept[size_t(i)]) total += p[size_t(i)] = std::exp(double(logits[size_t(i)]) / o.temperature - max_scaled);
  for (double& v : p) v /= total;
  std::map<int32_t, double> out;
  double out_total = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (!kept[size_t(i)]) continue;
    double before = 0;
    for (int64_t j = 0; j < V; ++j)
      if (kept[size_t(j)] &&
          (logits[size_t(j)] > logits[size_t(i)] || (logits[size_t(j)] == logits[size_t(i)] && j < i)))
        before += p[size_t(j)];
    if (o.top_p >= 1 || before < o.top_p) {
      out[int32_t(i)] = p[size_t(i)];
      out_total += p[size_t(i)];
    }
  }
  for (auto& [token, prob] : out) prob /= out_total;
  return out;
}

std::vector<float> random_logits(int64_t V, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> logits(static_cast<size_t>(V));
  for (float& v : logits) v = normal(rng);
  // Ties, including at the top and at the k-th place of some filters.
  logits[3] = logits[7] = logits[11];
  const size_t top = size_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  logits[(top + 5) % size_t(V)] = logits[top];
  return logits;
}

TEST(Sampling, CandidatesMatchThePlainReference) {
  const SamplingOptions cases[] = {
      {.temperature = 1.0},
      {.temperature = 0.5},
      {.temperature = 3.0},
      {.temperature = 1.0, .top_k = 1},
      {.temperature = 1.0, .top_k = 2},
      {.temperature = 0.7, .top_k = 10},
      {.temperature = 1.0, .top_k = 1000},
      {.temperature = 1.0, .top_p = 0.5},
      {.temperature = 1.0, .top_p = 0.9},
      {.temperature = 1e-3, .top_p = 0.9},
      {.temperature = 2.0, .top_k = 20, .top_p = 0.6},
      {.temperature = 1.0, .top_p = 1e-9},
  };
  for (uint64_t seed = 0; seed < 6; ++seed) {
    const std::vector<float> logits = random_logits(64, seed);
    for (const SamplingOptions& o : cases) {
      SCOPED_TRACE("seed " + std::to_string(seed) + " temperature " + std::to_string(o.temperature) + " top_k " +
                   std::to_string(o.top_k) + " top_p " + std::to_string(o.top_p));
      const auto expected = reference_distribution(logits, o);
      const auto got = sampling_candidates(logits.data(), int64_t(logits.size()), o);
      ASSERT_EQ(got.size(), expected.size());
      double sum = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(expected.count(got[i].token)) << "token " << got[i].token;
        EXPECT_NEAR(got[i].probability, expected.at(got[i].token), 1e-12) << "token " << got[i].token;
        if (i > 0) { EXPECT_GE(got[i - 1].probability, got[i].probability); }
        sum += got[i].probability;
      }
      EXPECT_NEAR(sum, 1.0, 1e-12);
    }
  }
  // Top-k keeps every token tied with the k-th: two tied maxima with k = 1.
  const std::vector<float> tied = {0.f, 2.f, 1.f, 2.f};
  const auto both = sampling_candidates(tied.data(), 4, {.temperature = 1.0, .top_k = 1});
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0].token, 1);
  EXPECT_EQ(both[1].token, 3);
  EXPECT_DOUBLE_EQ(both[0].probability, 0.5);
  // Temperature: p ∝ exp(logit / T), checked in closed form.
  const std::vector<float> two = {0.f, 1.f};
  const auto hot = sampling_candidates(two.data(), 2, {.temperature = 2.0});
  EXPECT_NEAR(hot[0].probability, 1.0 / (1.0 + std::exp(-0.5)), 1e-12);
  EXPECT_EQ(hot[0].token, 1);
}

TEST(Sampling, DrawsFollowTheDistributionAndRepeatUnderASeed) {
  const std::vector<float> logits = random_logits(16, 42);
  const SamplingOptions o{.temperature = 1.5, .top_k = 8, .top_p = 0.95, .seed = 123};
  const auto expected = reference_distribution(logits, o);
  TokenSampler sampler(o), again(o), other(SamplingOptions{.temperature = 1.5, .top_k = 8, .top_p = 0.95, .seed = 124});
  const int draws = 40000;
  std::map<int32_t, int> counts;
  int differ = 0;
  for (int i = 0; i < draws; ++i) {
    const int32_t t = sampler.next(logits.data(), 16);
    EXPECT_EQ(t, again.next(logits.data(), 16)) << "draw " << i;
    differ += t != other.next(logits.data(), 16);
    ++counts[t];
  }
  EXPECT_GT(differ, draws / 10);  // another seed, another sequence
  for (const auto& [token, count] : counts) EXPECT_TRUE(expected.count(token)) << "filtered token " << token;
  // 40000 draws: a frequency's standard deviation is at most 0.0025; the bound is 4 of them.
  for (const auto& [token, p] : expected) EXPECT_NEAR(double(counts[token]) / draws, p, 0.01) << "token " << token;
}

TEST(Sampling, TemperatureZeroIsGreedyAndDrawsNothing) {
  const std::vector<float> logits = random_logits(32, 5);
  TokenSampler greedy(SamplingOptions{.temperature = 0, .top_k = 3, .top_p = 0.1, .seed = 9});
  const int32_t best = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(greedy.next(logits.data(), 32), best);
}

TEST(Sampling, BadOptionsAreRefusedNamingTheField) {
  struct Case {
    SamplingOptions options;
    const char* field;
  };
  const Case bad[] = {
      {{.temperature = -0.1}, "temperature"},     {{.temperature = NAN}, "temperature"},
      {{.temperature = INFINITY}, "temperature"}, {{.temperature = 1, .top_k = -1}, "top_k"},
      {{.temperature = 1, .top_p = 0}, "top_p"},  {{.temperature = 1, .top_p = 1.5}, "top_p"},
      {{.temperature = 1, .top_p = -1}, "top_p"}, {{.temperature = 1, .top_p = NAN}, "top_p"},
  };
  for (const Case& c : bad) {
    const Status s = check_sampling(c.options, "request");
    ASSERT_FALSE(s.ok()) << c.field;
    EXPECT_NE(s.to_string().find(c.field), std::string::npos) << s.to_string();
  }
  EXPECT_TRUE(check_sampling({.temperature = 0.8, .top_k = 5, .top_p = 1}, "request").ok());
  // The engine refuses them too, before generating.
  const std::string dir = testing::make_test_checkpoint("sampling-bad", *preset_config("mixtral-tiny"));
  testing::LoadedModel m = testing::load_model(dir);
  ASSERT_TRUE(m.store);
  Engine engine(*m.model, *m.store);
  GenerateOptions g;
  g.sampling.top_p = 0;
  auto gen = engine.generate({{1, 5, 6}}, g);
  ASSERT_FALSE(gen.ok());
  EXPECT_NE(gen.status().to_string().find("top_p"), std::string::npos) << gen.status().to_string();
}

// For each family: a seed gives the same ids under every policy, budget, execution and window;
// request r of a run samples as generate({r}) alone with seed + r; greedy is unchanged by the
// sampling fields' defaults; a sampled run differs from greedy.
void expect_sampling_is_deterministic(const std::string& preset) {
  SCOPED_TRACE(preset);
  const std::string dir = testing::make_test_checkpoint("sampling-" + preset, *preset_config(preset));
  auto model = ModelWeights::load(dir);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  const SwitchConfig& c = (*model)->config();
  const bool decoder_only = c.is_decoder_only();
  auto requests = synthetic_requests(5, 3, 10, c.vocab_size, 17);
  if (decoder_only)
    for (Request& r : requests) r.back() = 5;  // synthetic requests end with eos (1), a prompt need not
  ServeOptions opt;
  opt.max_new_tokens = 6;
  opt.engine.apply_capacity = false;
  const uint64_t all = uint64_t(c.num_moe_layers() * c.num_experts);
  const ServeReport greedy =
      testing::serve_with(**model, requests, opt, Policy::kAllResident, all, Execution::kRequest, nullptr, false);
  opt.sampling = {.temperature = 1.3, .top_k = 40, .top_p = 0.95, .seed = 2024};
  opt.window = 2;
  const ServeReport reference =
      testing::serve_with(**model, requests, opt, Policy::kAllResident, all, Execution::kRequest, nullptr, false);
  ASSERT_EQ(reference.results.size(), requests.size());
  size_t differ = 0;
  for (size_t r = 0; r < requests.size(); ++r) differ += reference.results[r].generated != greedy.results[r].generated;
  EXPECT_GT(differ, 0u) << "sampling at temperature 1.3 changed no request";
  // Alone, with its own seed.
  {
    testing::LoadedModel m = testing::load_model(dir);
    ASSERT_TRUE(m.store);
    Engine engine(*m.model, *m.store, opt.engine);
    for (size_t r = 0; r < requests.size(); ++r) {
      auto gen = engine.generate({requests[r]}, request_generate_options(opt, r));
      ASSERT_TRUE(gen.ok()) << gen.status().to_string();
      EXPECT_EQ(gen->tokens[0], reference.results[r].generated) << "request " << r;
    }
    // A batch of the same request: every row samples as if alone, so every row is alike.
    auto batch = engine.generate({requests[0], requests[0], requests[0]}, request_generate_options(opt, 0));
    ASSERT_TRUE(batch.ok()) << batch.status().to_string();
    for (const auto& row : batch->tokens) EXPECT_EQ(row, reference.results[0].generated);
  }
  auto routes = record_routes(**model, requests, opt, true);
  ASSERT_TRUE(routes.ok()) << routes.status().to_string();
  EXPECT_EQ(routes->sampling.seed, opt.sampling.seed);
  for (Policy policy : {Policy::kLru, Policy::kFifo, Policy::kPrefetch})
    for (uint64_t slots : {uint64_t(1), uint64_t(c.num_experts), all})
      for (Execution execution : {Execution::kRequest, Execution::kWindow})
        for (size_t window : {size_t(1), size_t(3), size_t(64)}) {
          SCOPED_TRACE(std::string(policy_name(policy)) + ", " + std::to_string(slots) + " slots, " +
                       execution_name(execution) + ", window " + std::to_string(window));
          opt.window = window;
          const ServeReport got = testing::serve_with(**model, requests, opt, policy, slots, execution,
                                                      policy == Policy::kPrefetch ? &*routes : nullptr, false);
          ASSERT_EQ(got.results.size(), requests.size());
          for (size_t r = 0; r < requests.size(); ++r)
            EXPECT_EQ(got.results[r].generated, reference.results[r].generated) << "request " << r;
          // With the oracle table recorded under the same sampling, prefetch predicts every access.
          if (policy == Policy::kPrefetch && execution == Execution::kRequest) {
            EXPECT_EQ(got.planned_accesses, got.store.accesses);
          }
        }
  // A route table recorded greedily does not describe a sampled run.
  ServeOptions greedy_opt = opt;
  greedy_opt.sampling = {};
  auto greedy_routes = record_routes(**model, requests, greedy_opt, true);
  ASSERT_TRUE(greedy_routes.ok());
  StoreOptions so;
  so.policy = Policy::kPrefetch;
  auto store = ExpertStore::create(**model, so);
  ASSERT_TRUE(store.ok());
  opt.routes = &*greedy_routes;
  auto refused = serve(**model, **store, requests, opt);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().to_string().find("sampled"), std::string::npos) << refused.status().to_string();
}

TEST(SampledGeneration, MixtralIsDeterministicUnderASeed) { expect_sampling_is_deterministic("mixtral-tiny"); }
TEST(SampledGeneration, Qwen2MoeIsDeterministicUnderASeed) { expect_sampling_is_deterministic("qwen2-moe-tiny"); }
TEST(SampledGeneration, SwitchDecoderIsDeterministicUnderASeed) { expect_sampling_is_deterministic("tiny"); }

// A route table written with sampling reads back with it.
TEST(SampledGeneration, RouteTablesKeepTheirSampling) {
  RouteTable t;
  t.max_new_tokens = 3;
  t.num_moe_layers = 1;
  t.num_experts = 2;
  t.sampling = {.temperature = 0.5, .top_k = 7, .top_p = 0.25, .seed = 99};
  t.requests = {{1, 2}};
  t.accesses = {{0, 1}};
  const std::string path = testing::temp_dir("sampling-table") + "/routes.json";
  ASSERT_TRUE(write_route_table(path, t).ok());
  auto back = read_route_table(path);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->sampling.temperature, 0.5);
  EXPECT_EQ(back->sampling.top_k, 7);
  EXPECT_EQ(back->sampling.top_p, 0.25);
  EXPECT_EQ(back->sampling.seed, 99u);
}

}  // namespace
}  // namespace perfmem::sida
