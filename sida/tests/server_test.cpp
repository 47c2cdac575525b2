// `sida serve` on loopback (ephemeral ports): every endpoint, streaming, every refusal, exact mode
// against the engine and `sida run`, cancellation, overload, draining, the OpenAI Python client,
// and a load test of concurrent clients.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sentencepiece_trainer.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <optional>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "perfmem/core/json.h"
#include "perfmem/sida/batcher.h"
#include "perfmem/sida/http_server.h"
#include "perfmem/sida/predictor.h"
#include "perfmem/sida/serve.h"
#include "perfmem/testing/required.h"
#include "perfmem/testing/subprocess.h"
#include "test_util.h"

namespace perfmem::sida {
namespace {

// A slow tier whose reads wait while the gate is closed: it holds the inference thread inside a
// window, so that queueing, overload, cancellation and draining happen in a known order.
class GatedTier : public SlowTier {
 public:
  explicit GatedTier(std::unique_ptr<SlowTier> inner) : inner_(std::move(inner)) {}
  Result<uint64_t> read_expert(int32_t id, float* wi, float* wo) override {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++blocked_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return open_; });
      --blocked_;
    }
    return inner_->read_expert(id, wi, wo);
  }
  void set_open(bool open) {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = open;
    changed_.notify_all();
  }
  void wait_until_blocked() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return blocked_ > 0; });
  }

 private:
  std::unique_ptr<SlowTier> inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = true;
  int blocked_ = 0;
};

struct ServerSetup {
  size_t window = 8, max_queue = 64, budget_slots = 4;
  bool gated = false;
  bool tokenizer = false;
  bool predictor = false;       // the prefetch policy with a (random) predictor's plans
  bool replace_router = false;  // SiDA's mode, driven by that predictor (needs `predictor`)
  int64_t replace_top_k = 1;
  HttpServerOptions http;
};

// The tiny checkpoint (made once per process), optionally with a SentencePiece model.
const std::string& tiny_checkpoint() {
  static const std::string dir = [] {
    auto config = preset_config("tiny");
    EXPECT_TRUE(config.ok());
    return testing::make_test_checkpoint("server", *config);
  }();
  return dir;
}

const std::string& tiny_checkpoint_with_tokenizer() {
  static const std::string dir = [] {
    auto config = preset_config("tiny");
    EXPECT_TRUE(config.ok());
    std::string d = testing::make_test_checkpoint("server-spm", *config);
    std::ofstream corpus(d + "/corpus.txt");
    for (int i = 0; i < 50; ++i)
      corpus << "a very good movie with a great story\nthe film was bad and the acting was worse\n";
    corpus.close();
    auto status = sentencepiece::SentencePieceTrainer::Train(
        "--input=" + d + "/corpus.txt --model_prefix=" + d +
        "/spiece --vocab_size=60 --model_type=bpe --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 --minloglevel=2");
    EXPECT_TRUE(status.ok()) << status.ToString();
    return d;
  }();
  return dir;
}

// A server on its own thread, on an ephemeral loopback port.
class TestServer {
 public:
  explicit TestServer(const ServerSetup& setup) {
    const std::string& dir = setup.tokenizer ? tiny_checkpoint_with_tokenizer() : tiny_checkpoint();
    auto model = ModelWeights::load(dir);
    EXPECT_TRUE(model.ok()) << model.status().to_string();
    model_ = std::move(*model);
    StoreOptions so;
    so.policy = setup.predictor ? Policy::kPrefetch : Policy::kLru;
    if (setup.predictor) {
      testing::write_random_predictor(dir + "/predictor", testing::predictor_config_for(*model_));
      auto p = Predictor::load(dir + "/predictor", *model_);
      EXPECT_TRUE(p.ok()) << p.status().to_string();
      predictor_ = std::move(*p);
    }
    so.direct_io = false;
    so.budget_bytes = setup.budget_slots * model_->config().expert_f32_bytes();
    std::unique_ptr<SlowTier> tier = make_disk_tier(*model_, false);
    if (setup.gated) {
      auto gated = std::make_unique<GatedTier>(std::move(tier));
      gate_ = gated.get();
      tier = std::move(gated);
    }
    auto store = ExpertStore::create(*model_, so, std::move(tier));
    EXPECT_TRUE(store.ok()) << store.status().to_string();
    store_ = std::move(*store);
    BatcherOptions bo;
    bo.window = setup.window;
    bo.max_queue = setup.max_queue;
    bo.replace_router = setup.replace_router;
    bo.replace_top_k = setup.replace_top_k;
    auto batcher = Batcher::create(*model_, *store_, predictor_.get(), bo);
    EXPECT_TRUE(batcher.ok()) << batcher.status().to_string();
    batcher_ = std::move(*batcher);
    if (setup.tokenizer) tokenizer_ = std::move(*Tokenizer::open(dir + "/spiece.model"));
    HttpServerOptions ho = setup.http;
    ho.port = 0;
    ho.model_name = "tiny";
    http_ = std::make_unique<HttpServer>(*model_, *batcher_, tokenizer_.get(), ho);
    auto port = http_->bind();
    EXPECT_TRUE(port.ok()) << port.status().to_string();
    port_ = port.ok() ? *port : 0;
    thread_ = std::thread([this] { run_status_ = http_->run(); });
  }
  ~TestServer() { stop(); }
  void stop() {
    if (gate_) gate_->set_open(true);
    http_->shutdown();
    if (thread_.joinable()) thread_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_.to_string();
  }
  int port() const { return port_; }
  GatedTier& gate() { return *gate_; }
  HttpServer& http() { return *http_; }
  const ModelWeights& model() const { return *model_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  BatcherStats stats() const { return batcher_->stats(); }
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(60);
    return c;
  }

 private:
  std::unique_ptr<ModelWeights> model_;
  std::unique_ptr<Predictor> predictor_;
  std::unique_ptr<ExpertStore> store_;
  std::unique_ptr<Batcher> batcher_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<HttpServer> http_;
  GatedTier* gate_ = nullptr;
  int port_ = 0;
  Status run_status_;
  std::thread thread_;
};

// What a request gives with every expert resident, one request at a time (the reference).
struct Reference {
  std::vector<int32_t> generated;
  std::vector<float> encoder;  // [len, d]
};
Reference reference(const std::string& dir, const std::vector<int32_t>& tokens, int64_t max_new_tokens) {
  testing::LoadedModel m = testing::load_model(dir);
  Engine engine(*m.model, *m.store);
  Reference out;
  auto gen = engine.generate({tokens}, {.max_new_tokens = max_new_tokens});
  EXPECT_TRUE(gen.ok()) << gen.status().to_string();
  if (gen.ok()) out.generated = gen->tokens[0];
  auto enc = engine.encode({tokens});
  EXPECT_TRUE(enc.ok());
  if (enc.ok()) out.encoder = enc->hidden;
  return out;
}

Json post_json(httplib::Client& client, const std::string& path, const Json& body, int expected_status) {
  auto res = client.Post(path.c_str(), body.dump(), "application/json");
  EXPECT_TRUE(res) << "no response from " << path << ": " << httplib::to_string(res.error());
  if (!res) return Json();
  EXPECT_EQ(res->status, expected_status) << res->body;
  Json j = Json::parse(res->body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << res->body;
  return j;
}

// The `data:` payloads of a server-sent event stream.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) end = body.size();
    const std::string event = body.substr(at, end - at);
    at = end + 2;
    if (event.rfind(":", 0) == 0) continue;  // a comment (the server's heartbeat)
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    out.push_back(event.substr(6));
  }
  return out;
}

std::vector<int32_t> ids_of(const Json& j) {
  EXPECT_TRUE(j.is_array()) << j.dump();
  return j.is_array() ? j.get<std::vector<int32_t>>() : std::vector<int32_t>{};
}

// An /v1/encode answer's encoder states ([tokens][d_model]), flattened row after row.
std::vector<float> encoder_states_of(const Json& answer) {
  std::vector<float> out;
  for (const Json& row : answer["encoder_states"])
    for (const Json& v : row) out.push_back(v.get<float>());
  return out;
}

std::string join_ids(const std::vector<int32_t>& ids, const char* sep) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? sep : "") + std::to_string(ids[i]);
  return s;
}

const std::vector<std::vector<int32_t>>& prompts() {
  static const auto p = synthetic_requests(12, 3, 20, 96, 11);
  return p;
}

// Polls the batcher until `done` (bounded: the test fails after 30 s instead of hanging).
template <typename Done>
void wait_for_stats(const TestServer& server, Done done) {
  for (int i = 0; i < 3000 && !done(server.stats()); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(done(server.stats()));
}

// Polls the metrics until they hold `line` (bounded like wait_for_stats): a response's own
// counters are updated as its connection is released, just after the client has its last byte.
void wait_for_metrics(TestServer& server, const std::string& line) {
  for (int i = 0; i < 3000 && server.http().metrics_text().find(line) == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_NE(server.http().metrics_text().find(line), std::string::npos) << line << " missing from\n"
                                                                        << server.http().metrics_text();
}

TEST(SidaServer, HealthAndMetricsInPrometheusFormat) {
  TestServer server({});
  auto client = server.client();
  auto health = client->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(Json::parse(health->body)["status"], "ok");
  const Reference ref = reference(tiny_checkpoint(), prompts()[0], 4);
  post_json(*client, "/v1/completions", {{"prompt", prompts()[0]}, {"max_tokens", 4}}, 200);
  // The response leaves as its last token is made; the window's counters follow as it ends.
  wait_for_stats(server, [](const BatcherStats& s) { return s.windows == 1 && s.running == 0; });
  wait_for_metrics(server, "sida_request_duration_seconds_count{endpoint=\"/v1/completions\"} 1");
  auto metrics = client->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  for (const char* line :
       {"sida_http_responses_total{endpoint=\"/v1/completions\",code=\"200\"} 1",
        "sida_http_responses_total{endpoint=\"/health\",code=\"200\"} 1",
        "sida_request_duration_seconds_count{endpoint=\"/v1/completions\"} 1",
        "sida_request_duration_seconds_bucket{endpoint=\"/v1/completions\",le=\"+Inf\"} 1",
        "sida_time_to_first_token_seconds_count 1", "sida_queue_wait_seconds_count 1",
        "sida_requests_completed_total 1", "sida_queue_depth 0", "# TYPE sida_fast_tier_hit_rate gauge",
        "# TYPE sida_disk_bytes_read_total counter", "# TYPE sida_predictor_seconds_total counter",
        "sida_windows_total 1", "sida_prompt_tokens_total "})
    EXPECT_NE(metrics->body.find(line), std::string::npos) << line << " missing from\n" << metrics->body;
  EXPECT_NE(metrics->body.find("sida_generated_tokens_total " + std::to_string(ref.generated.size()) + "\n"),
            std::string::npos);
  // Every sample line is "name{labels} value" or "name value" with a number.
  std::istringstream lines(metrics->body);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    char* end = nullptr;
    std::strtod(line.c_str() + space + 1, &end);
    EXPECT_EQ(*end, '\0') << line;
  }
  // Experts came from disk: the budget holds 4 of the 16.
  EXPECT_EQ(metrics->body.find("sida_disk_bytes_read_total 0\n"), std::string::npos);
}

TEST(SidaServer, CompletionsAreExactlyTheEnginesOneRequestAtATime) {
  TestServer server({});
  auto client = server.client();
  for (size_t i = 0; i < 6; ++i) {
    const int64_t max_tokens = 1 + int64_t(i);
    const Reference ref = reference(tiny_checkpoint(), prompts()[i], max_tokens);
    Json r = post_json(*client, "/v1/completions", {{"prompt", prompts()[i]}, {"max_tokens", max_tokens}}, 200);
    ASSERT_TRUE(r.contains("choices")) << r.dump();
    EXPECT_EQ(r["object"], "text_completion");
    EXPECT_EQ(r["model"], "tiny");
    const Json& choice = r["choices"][0];
    EXPECT_EQ(ids_of(choice["token_ids"]), ref.generated) << "prompt " << i;
    EXPECT_EQ(choice["text"], "");  // no tokenizer in this checkpoint
    EXPECT_EQ(choice["finish_reason"], int64_t(ref.generated.size()) == max_tokens ? "length" : "stop");
    EXPECT_EQ(r["usage"]["prompt_tokens"], prompts()[i].size());
    EXPECT_EQ(r["usage"]["completion_tokens"], ref.generated.size());
    EXPECT_EQ(r["usage"]["total_tokens"], prompts()[i].size() + ref.generated.size());
  }
  // max_tokens left out: the server's default (16).
  Json r = post_json(*client, "/v1/completions", {{"prompt", prompts()[0]}}, 200);
  EXPECT_EQ(ids_of(r["choices"][0]["token_ids"]), reference(tiny_checkpoint(), prompts()[0], 16).generated);
}

// Sampled completions (temperature, top_k, top_p, seed): a request's ids are the engine's for that
// seed alone, whatever window it shares with concurrent requests; temperature 0 or none is greedy.
TEST(SidaServer, SampledCompletionsDependOnlyOnTheirSeed) {
  TestServer server({});
  const SamplingOptions sampling{.temperature = 1.2, .top_k = 30, .top_p = 0.9, .seed = 0};
  auto expected = [&](size_t i) {
    testing::LoadedModel m = testing::load_model(tiny_checkpoint());
    Engine engine(*m.model, *m.store);
    GenerateOptions g{.max_new_tokens = 6};
    g.sampling = sampling;
    g.sampling.seed = 100 + i;
    auto gen = engine.generate({prompts()[i]}, g);
    EXPECT_TRUE(gen.ok()) << gen.status().to_string();
    return gen.ok() ? gen->tokens[0] : std::vector<int32_t>{};
  };
  std::vector<std::vector<int32_t>> got(6);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < got.size(); ++i)
    clients.emplace_back([&, i] {
      auto client = server.client();
      Json r = post_json(*client, "/v1/completions",
                         {{"prompt", prompts()[i]},
                          {"max_tokens", 6},
                          {"temperature", sampling.temperature},
                          {"top_k", sampling.top_k},
                          {"top_p", sampling.top_p},
                          {"seed", 100 + i}},
                         200);
      if (r.contains("choices")) got[i] = ids_of(r["choices"][0]["token_ids"]);
    });
  for (auto& t : clients) t.join();
  size_t differ_from_greedy = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], expected(i)) << "prompt " << i;
    differ_from_greedy += got[i] != reference(tiny_checkpoint(), prompts()[i], 6).generated;
  }
  EXPECT_GT(differ_from_greedy, 0u);
  auto client = server.client();
  Json zero =
      post_json(*client, "/v1/completions", {{"prompt", prompts()[1]}, {"max_tokens", 6}, {"temperature", 0}}, 200);
  EXPECT_EQ(ids_of(zero["choices"][0]["token_ids"]), reference(tiny_checkpoint(), prompts()[1], 6).generated);
}

// With the predictor's plans (prefetch policy), concurrent requests still get exact answers; the
// run-ahead thread's predictor time and the prefetches show in the metrics.
TEST(SidaServer, PredictedPrefetchStaysExactUnderConcurrentRequests) {
  ServerSetup setup;
  setup.predictor = true;
  TestServer server(setup);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts().size(); ++i)
    clients.emplace_back([&, i] {
      auto client = server.client();
      const Reference ref = reference(tiny_checkpoint(), prompts()[i], 5);
      if (i % 3 == 2) {
        const std::vector<float> got =
            encoder_states_of(post_json(*client, "/v1/encode", {{"input", prompts()[i]}}, 200));
        EXPECT_EQ(got, ref.encoder) << "prompt " << i;
      } else {
        Json r = post_json(*client, "/v1/completions", {{"prompt", prompts()[i]}, {"max_tokens", 5}}, 200);
        EXPECT_EQ(ids_of(r["choices"][0]["token_ids"]), ref.generated) << "prompt " << i;
      }
    });
  for (auto& t : clients) t.join();
  wait_for_stats(server, [](const BatcherStats& s) { return s.running == 0; });
  EXPECT_GT(server.stats().predictor_s, 0.0);
  const std::string metrics = server.http().metrics_text();
  EXPECT_EQ(metrics.find("sida_predictor_seconds_total 0\n"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("sida_expert_prefetch_loads_total 0\n"), std::string::npos) << metrics;
}

// SiDA's router replacement in the server: concurrent requests, windows mixing completions and
// encodings, get what serve() with the same predictor and replacement gives them one at a time,
// with the top-1 and the top-3 replacement; the outputs are not exact mode's (a random predictor).
TEST(SidaServer, RouterReplacementAnswersAsServeDoesOneRequestAtATime) {
  for (int64_t k : {1, 3}) {
    SCOPED_TRACE("top-" + std::to_string(k));
    ServerSetup setup;
    setup.predictor = true;
    setup.replace_router = true;
    setup.replace_top_k = k;
    setup.window = 4;
    TestServer server(setup);
    // The reference: serve() with every expert resident, request by request.
    testing::LoadedModel m = testing::load_model(tiny_checkpoint());
    auto predictor = Predictor::load(tiny_checkpoint() + "/predictor", *m.model);
    ASSERT_TRUE(predictor.ok()) << predictor.status().to_string();
    ServeOptions so;
    so.predictor = predictor->get();
    so.replace_router = true;
    so.replace_top_k = k;
    so.keep_outputs = true;
    so.max_new_tokens = 5;
    auto generated = serve(*m.model, *m.store, prompts(), so);
    ASSERT_TRUE(generated.ok()) << generated.status().to_string();
    so.generate = false;
    auto encoded = serve(*m.model, *m.store, prompts(), so);
    ASSERT_TRUE(encoded.ok()) << encoded.status().to_string();
    std::atomic<int> differ_from_exact{0};
    std::vector<std::thread> clients;
    for (size_t i = 0; i < prompts().size(); ++i)
      clients.emplace_back([&, i] {
        auto client = server.client();
        const Reference exact = reference(tiny_checkpoint(), prompts()[i], 5);
        if (i % 3 == 2) {
          const std::vector<float> got =
              encoder_states_of(post_json(*client, "/v1/encode", {{"input", prompts()[i]}}, 200));
          EXPECT_EQ(got, encoded->results[i].encoder_hidden) << "prompt " << i;
          differ_from_exact += got != exact.encoder;
        } else {
          Json r = post_json(*client, "/v1/completions", {{"prompt", prompts()[i]}, {"max_tokens", 5}}, 200);
          const std::vector<int32_t> ids = ids_of(r["choices"][0]["token_ids"]);
          EXPECT_EQ(ids, generated->results[i].generated) << "prompt " << i;
          differ_from_exact += ids != exact.generated;
        }
      });
    for (auto& t : clients) t.join();
    EXPECT_GT(differ_from_exact.load(), 0);
    EXPECT_NE(server.http().metrics_text().find("sida_router_replaced 1\n"), std::string::npos);
  }
}

TEST(SidaServer, RouterReplacementIsRefusedWithoutAPredictorOrWithAnUnknownTopK) {
  testing::LoadedModel m = testing::load_model(tiny_checkpoint());
  BatcherOptions bo;
  bo.replace_router = true;
  auto none = Batcher::create(*m.model, *m.store, nullptr, bo);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().to_string().find("predictor"), std::string::npos) << none.status().to_string();
  testing::write_random_predictor(tiny_checkpoint() + "/predictor-k", testing::predictor_config_for(*m.model));
  auto predictor = Predictor::load(tiny_checkpoint() + "/predictor-k", *m.model);
  ASSERT_TRUE(predictor.ok()) << predictor.status().to_string();
  bo.replace_top_k = 2;
  auto two = Batcher::create(*m.model, *m.store, predictor->get(), bo);
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().to_string().find("--replace-top-k"), std::string::npos) << two.status().to_string();
  bo.replace_top_k = 1;
  EXPECT_TRUE(Batcher::create(*m.model, *m.store, predictor->get(), bo).ok());
}

TEST(SidaServer, StreamingSendsOneEventPerTokenThenDone) {
  TestServer server({});
  auto client = server.client();
  const Reference ref = reference(tiny_checkpoint(), prompts()[1], 7);
  auto res = client->Post("/v1/completions", Json{{"prompt", prompts()[1]}, {"max_tokens", 7}, {"stream", true}}.dump(),
                          "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  const auto events = sse_events(res->body);
  ASSERT_EQ(events.size(), ref.generated.size() + 1) << res->body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::vector<int32_t> streamed;
  std::set<std::string> ids;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    Json chunk = Json::parse(events[i]);
    ids.insert(chunk["id"].get<std::string>());
    EXPECT_EQ(chunk["object"], "text_completion");
    const Json& choice = chunk["choices"][0];
    ASSERT_EQ(choice["token_ids"].size(), 1u);
    streamed.push_back(choice["token_ids"][0].get<int32_t>());
    const bool last = i + 2 == events.size();
    EXPECT_EQ(choice["finish_reason"].is_null(), !last) << events[i];
    EXPECT_EQ(chunk.contains("usage"), last);
    if (last) { EXPECT_EQ(chunk["usage"]["completion_tokens"], ref.generated.size()); }
  }
  EXPECT_EQ(streamed, ref.generated);
  EXPECT_EQ(ids.size(), 1u);  // one completion id for the whole stream
}

TEST(SidaServer, TextPromptsGoThroughTheCheckpointsTokenizer) {
  ServerSetup setup;
  setup.tokenizer = true;
  TestServer server(setup);
  auto client = server.client();
  const std::string text = "a very good movie";
  auto ids = server.tokenizer()->encode(text);
  ASSERT_TRUE(ids.ok());
  const Reference ref = reference(tiny_checkpoint_with_tokenizer(), *ids, 6);
  Json r = post_json(*client, "/v1/completions", {{"prompt", text}, {"max_tokens", 6}}, 200);
  EXPECT_EQ(ids_of(r["choices"][0]["token_ids"]), ref.generated);
  EXPECT_EQ(r["choices"][0]["text"], server.tokenizer()->decode(ref.generated));
  EXPECT_EQ(r["usage"]["prompt_tokens"], ids->size());
  // Streamed, the text deltas add up to the whole text.
  auto res = client->Post("/v1/completions", Json{{"prompt", text}, {"max_tokens", 6}, {"stream", true}}.dump(),
                          "application/json");
  ASSERT_TRUE(res);
  std::string streamed;
  for (const std::string& e : sse_events(res->body))
    if (e != "[DONE]") streamed += Json::parse(e)["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(streamed, server.tokenizer()->decode(ref.generated));
  Json enc = post_json(*client, "/v1/encode", {{"input", text}}, 200);
  EXPECT_EQ(ids_of(enc["tokens"]), *ids);
}

TEST(SidaServer, EncodeGivesTheEncoderStatesOrTheirMean) {
  TestServer server({});
  auto client = server.client();
  const auto& tokens = prompts()[2];
  const Reference ref = reference(tiny_checkpoint(), tokens, 1);
  const size_t d = size_t(server.model().config().d_model);
  Json states = post_json(*client, "/v1/encode", {{"input", tokens}}, 200);
  EXPECT_EQ(states["object"], "encoding");
  EXPECT_EQ(states["dimensions"], d);
  EXPECT_EQ(states["pooling"], "none");
  ASSERT_EQ(states["encoder_states"].size(), tokens.size());
  std::vector<float> got;
  for (const Json& row : states["encoder_states"]) {
    ASSERT_EQ(row.size(), d);
    for (const Json& v : row) got.push_back(v.get<float>());
  }
  EXPECT_EQ(got, ref.encoder);  // bit-identical through JSON (floats printed to round-trip)
  Json mean = post_json(*client, "/v1/encode", {{"input", tokens}, {"pooling", "mean"}}, 200);
  ASSERT_EQ(mean["embedding"].size(), d);
  for (size_t k = 0; k < d; ++k) {
    double sum = 0;
    for (size_t t = 0; t < tokens.size(); ++t) sum += ref.encoder[t * d + k];
    EXPECT_EQ(mean["embedding"][k].get<float>(), float(sum / double(tokens.size()))) << k;
  }
  EXPECT_EQ(mean["usage"]["prompt_tokens"], tokens.size());
}

TEST(SidaServer, BadRequestsGetJsonErrorsNamingTheField) {
  ServerSetup setup;
  setup.http.max_body_bytes = 4096;
  setup.http.max_prompt_tokens = 40;
  setup.http.max_tokens_limit = 32;
  TestServer server(setup);
  auto client = server.client();
  struct Case {
    std::string path, body;
    int status;
    std::string param, words;
  };
  const std::string completions = "/v1/completions", encode = "/v1/encode";
  const std::vector<Case> cases = {
      {completions, "{\"prompt\": [1, 2", 400, "body", "not valid JSON"},
      {completions, "[1, 2]", 400, "body", "JSON object"},
      {completions, "{}", 400, "prompt", "required"},
      {completions, "{\"prompt\": 17}", 400, "prompt", "a string or an array"},
      {completions, "{\"prompt\": [5, 2.5]}", 400, "prompt", "integer token id"},
      {completions, "{\"prompt\": [5, \"x\"]}", 400, "prompt", "integer token id"},
      {completions, "{\"prompt\": [[5, 6]]}", 400, "prompt", "one prompt per request"},
      {completions, "{\"prompt\": [5, 96]}", 400, "prompt", "96 is outside the vocabulary [0, 96)"},
      {completions, "{\"prompt\": [-1]}", 400, "prompt", "outside the vocabulary"},
      {completions, "{\"prompt\": []}", 400, "prompt", "empty"},
      {completions, "{\"prompt\": [0, 0]}", 400, "prompt", "only the pad id"},
      {completions, "{\"prompt\": \"some text\"}", 400, "prompt", "no spiece.model"},
      {completions, "{\"prompt\": [" + join_ids(std::vector<int32_t>(41, 5), ",") + "]}", 400, "prompt",
       "41 tokens; the limit is 40"},
      {completions, "{\"prompt\": [5], \"max_tokens\": \"8\"}", 400, "max_tokens", "must be an integer"},
      {completions, "{\"prompt\": [5], \"max_tokens\": 0}", 400, "max_tokens", "between 1 and 32"},
      {completions, "{\"prompt\": [5], \"max_tokens\": 33}", 400, "max_tokens", "between 1 and 32"},
      {completions, "{\"prompt\": [5], \"stream\": \"yes\"}", 400, "stream", "true or false"},
      {completions, "{\"prompt\": [5], \"temperature\": -0.5}", 400, "temperature", "a finite number >= 0"},
      {completions, "{\"prompt\": [5], \"temperature\": \"hot\"}", 400, "temperature", "must be a number"},
      {completions, "{\"prompt\": [5], \"temperature\": 1, \"top_p\": 0}", 400, "top_p", "(0, 1]"},
      {completions, "{\"prompt\": [5], \"top_p\": 1.5}", 400, "top_p", "(0, 1]"},
      {completions, "{\"prompt\": [5], \"top_k\": -1}", 400, "top_k", "an integer >= 0"},
      {completions, "{\"prompt\": [5], \"top_k\": 2.5}", 400, "top_k", "must be an integer"},
      {completions, "{\"prompt\": [5], \"seed\": \"7\"}", 400, "seed", "must be an integer"},
      {encode, "{\"input\": [5, 100]}", 400, "input", "outside the vocabulary"},
      {encode, "{\"prompt\": [5]}", 400, "input", "required"},
      {encode, "{\"input\": [5], \"pooling\": \"max\"}", 400, "pooling", "\"none\" or \"mean\""},
      {completions, "{\"prompt\": [" + join_ids(std::vector<int32_t>(3000, 5), ",") + "]}", 413, "body",
       "larger than the limit of 4096 bytes"},
      {"/v1/chat/completions", "{}", 404, "", "no endpoint POST /v1/chat/completions"},
  };
  for (const Case& c : cases) {
    auto res = client->Post(c.path.c_str(), c.body, "application/json");
    ASSERT_TRUE(res) << c.body.substr(0, 80);
    EXPECT_EQ(res->status, c.status) << c.body.substr(0, 80) << " -> " << res->body;
    Json j = Json::parse(res->body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << res->body;
    const Json& e = j["error"];
    EXPECT_EQ(e["code"], c.status);
    EXPECT_EQ(e["param"].is_null() ? "" : e["param"].get<std::string>(), c.param) << res->body;
    EXPECT_NE(e["message"].get<std::string>().find(c.words), std::string::npos) << c.words << " not in " << res->body;
  }
  // The server is still healthy and answers exactly afterwards.
  Json r = post_json(*client, "/v1/completions", {{"prompt", prompts()[3]}, {"max_tokens", 3}}, 200);
  EXPECT_EQ(ids_of(r["choices"][0]["token_ids"]), reference(tiny_checkpoint(), prompts()[3], 3).generated);
}

// Sends a request on a raw socket, reads until `enough(received)` (never, for the empty
// function), then closes it: a client that goes away. Returns what it received. httplib's own
// client is not used for hanging up: its 0.11 release may close the socket twice after a
// receiver cancels, which can close another thread's connection.
std::string send_and_hang_up(int port, const std::string& body,
                             const std::function<bool(const std::string&)>& enough = nullptr) {
  std::string received;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  if (fd < 0) return received;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), ssize_t(request.size()));
  char buf[4096];
  while (enough && !enough(received)) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    received.append(buf, size_t(n));
  }
  ::close(fd);
  return received;
}

TEST(SidaServer, OverloadIs503WithRetryAfterAndTheQueueStaysBounded) {
  ServerSetup setup;
  setup.gated = true;
  setup.window = 1;
  setup.max_queue = 2;
  TestServer server(setup);
  server.gate().set_open(false);
  // Request 1 runs (blocked on its first expert read), request 2 is the planned window, 3 and 4
  // fill the queue; the fifth finds it full.
  std::vector<std::thread> clients;
  std::vector<int> statuses(4, 0);
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      auto client = server.client();
      auto res = client->Post("/v1/completions", Json{{"prompt", prompts()[size_t(i)]}, {"max_tokens", 2}}.dump(),
                              "application/json");
      statuses[size_t(i)] = res ? res->status : -1;
    });
    if (i == 0) server.gate().wait_until_blocked();
    wait_for_stats(server, [&](const BatcherStats& s) { return s.running + s.queue_depth == size_t(i) + 1; });
  }
  auto client = server.client();
  auto res = client->Post("/v1/completions", Json{{"prompt", prompts()[5]}}.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  EXPECT_NE(res->body.find("queue is full"), std::string::npos) << res->body;
  EXPECT_NE(server.http().metrics_text().find("sida_requests_rejected_total{reason=\"queue_full\"} 1"),
            std::string::npos);
  server.gate().set_open(true);
  for (auto& t : clients) t.join();
  for (int s : statuses) EXPECT_EQ(s, 200);
  // Once drained, requests are admitted again.
  post_json(*client, "/v1/completions", {{"prompt", prompts()[5]}, {"max_tokens", 2}}, 200);
}

TEST(SidaServer, AClientThatDisconnectsCancelsItsRequestAndFreesItsPlace) {
  ServerSetup setup;
  setup.gated = true;
  setup.window = 1;
  setup.max_queue = 1;
  TestServer server(setup);
  server.gate().set_open(false);
  // A long generation, streamed, whose client goes away while it runs...
  send_and_hang_up(server.port(), Json{{"prompt", prompts()[0]}, {"max_tokens", 200}, {"stream", true}}.dump());
  server.gate().wait_until_blocked();
  // ...and one waiting in the queue, not streamed, whose client goes away too.
  wait_for_stats(server, [](const BatcherStats& s) { return s.running == 1; });
  send_and_hang_up(server.port(), Json{{"prompt", prompts()[1]}, {"max_tokens", 200}}.dump());
  wait_for_stats(server, [](const BatcherStats& s) { return s.queue_depth + s.running == 2; });
  // The server notices both disconnects (its heartbeat writes fail) while the window is stuck.
  wait_for_metrics(server, "sida_http_responses_total{endpoint=\"/v1/completions\",code=\"499\"} 2");
  server.gate().set_open(true);
  wait_for_stats(server, [](const BatcherStats& s) { return s.jobs_cancelled == 2 && s.running == 0; });
  // The running one left its window early: far fewer than its 200 tokens were generated.
  EXPECT_LT(server.stats().generated_tokens, 200u);
  EXPECT_EQ(server.stats().jobs_done, 0u);
  // Their places are free: a new request is served.
  auto client = server.client();
  post_json(*client, "/v1/completions", {{"prompt", prompts()[2]}, {"max_tokens", 2}}, 200);
}

TEST(SidaServer, ShutdownFinishesTheRequestsInFlightThenRefusesNewOnes) {
  ServerSetup setup;
  setup.gated = true;
  TestServer server(setup);
  server.gate().set_open(false);
  const Reference ref = reference(tiny_checkpoint(), prompts()[4], 5);
  Json in_flight;
  std::thread client_thread([&] {
    auto client = server.client();
    in_flight = post_json(*client, "/v1/completions", {{"prompt", prompts()[4]}, {"max_tokens", 5}}, 200);
  });
  server.gate().wait_until_blocked();
  std::thread stopper([&] { server.http().shutdown(); });
  // Draining: health says so, and a new request is refused.
  auto client = server.client();
  for (int i = 0; i < 3000; ++i) {
    auto h = client->Get("/health");
    if (h && h->status == 503) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto health = client->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(Json::parse(health->body)["status"], "draining");
  auto refused = client->Post("/v1/completions", Json{{"prompt", prompts()[0]}}.dump(), "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_NE(refused->body.find("shutting down"), std::string::npos);
  server.gate().set_open(true);
  client_thread.join();
  stopper.join();
  ASSERT_TRUE(in_flight.contains("choices")) << in_flight.dump();
  EXPECT_EQ(ids_of(in_flight["choices"][0]["token_ids"]), ref.generated);
}

// `sida serve` as a program: the port it prints, an answer identical to `sida run`'s, and exit 0
// after SIGTERM.
TEST(SidaServer, TheProgramAnswersLikeSidaRunAndExitsZeroOnSigterm) {
  const std::string dir = tiny_checkpoint();
  const std::vector<int32_t>& tokens = prompts()[6];
  auto run = perfmem::testing::run_command("{ " + std::string(CLI_PATH) + " run " + dir + " --tokens \"" +
                                           join_ids(tokens, " ") +
                                           "\" --max-new-tokens 6 --budget 48KiB --json 2>/dev/null; }");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const Json run_json = Json::parse(run.output, nullptr, false);
  ASSERT_FALSE(run_json.is_discarded()) << run.output;
  const std::vector<int32_t> expected = ids_of(run_json["generated"][0]);
  const std::string encoder_file = dir + "/encoder.f32";
  auto run_encoder = perfmem::testing::run_command("{ " + std::string(CLI_PATH) + " run " + dir + " --tokens \"" +
                                                   join_ids(tokens, " ") + "\" --encoder-only --dump-encoder " +
                                                   encoder_file + " >/dev/null 2>&1; }");
  ASSERT_EQ(run_encoder.exit_code, 0) << run_encoder.output;
  std::vector<float> expected_encoder(std::filesystem::file_size(encoder_file) / sizeof(float));
  std::ifstream(encoder_file, std::ios::binary)
      .read(reinterpret_cast<char*>(expected_encoder.data()), std::streamsize(expected_encoder.size() * 4));

  int out_pipe[2];
  ASSERT_EQ(::pipe(out_pipe), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::close(out_pipe[0]);
    ::execl(CLI_PATH, CLI_PATH, "serve", dir.c_str(), "--budget", "25%", "--port", "0", "--window", "4",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  std::string banner;
  char ch = 0;
  while (::read(out_pipe[0], &ch, 1) == 1 && ch != '\n') banner += ch;
  const size_t colon = banner.find("127.0.0.1:");
  ASSERT_NE(colon, std::string::npos) << banner;
  const int port = std::atoi(banner.c_str() + colon + 10);
  ASSERT_GT(port, 0) << banner;
  {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(60);
    Json r = post_json(client, "/v1/completions", {{"prompt", tokens}, {"max_tokens", 6}}, 200);
    EXPECT_EQ(ids_of(r["choices"][0]["token_ids"]), expected);
    const std::vector<float> got = encoder_states_of(post_json(client, "/v1/encode", {{"input", tokens}}, 200));
    EXPECT_EQ(got, expected_encoder);
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::close(out_pipe[0]);
  EXPECT_TRUE(WIFEXITED(status)) << "ended by a signal: " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  if (WIFEXITED(status)) { EXPECT_EQ(WEXITSTATUS(status), 0); }
}

// The OpenAI Python client (the venv's `openai`) against the server: completions plain and streamed.
TEST(SidaServer, TheOpenAIPythonClientGetsCompletionsPlainAndStreamed) {
  const std::string python = std::string(PERFMEM_VENV) + "/bin/python";
  if (!std::filesystem::exists(python))
    PERFMEM_SKIP_UNLESS_REQUIRED("no Python venv at " << PERFMEM_VENV << " (run scripts/install-deps.sh)");
  TestServer server({});
  const std::vector<int32_t>& tokens = prompts()[7];
  const Reference ref = reference(tiny_checkpoint(), tokens, 5);
  const std::string out = testing::temp_dir("openai") + "/result.json";
  // The sanitizer runtime of this process must not leak into the Python child; nor may a proxy
  // from the environment stand between the client and the loopback server.
  auto result = perfmem::testing::run_command(
      "env -u LD_PRELOAD -u ASAN_OPTIONS -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u all_proxy "
      "-u ALL_PROXY " +
      python + " " + PERFMEM_SOURCE_DIR + "/sida/tests/openai_client.py http://127.0.0.1:" +
      std::to_string(server.port()) + "/v1 " + out + " " + join_ids(tokens, ",") + " 5");
  if (result.exit_code == 3) PERFMEM_SKIP_UNLESS_REQUIRED("openai not installed in the venv: " << result.output);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = read_json_file(out);
  ASSERT_TRUE(j.ok()) << j.status().to_string();
  EXPECT_EQ(ids_of((*j)["plain"]["token_ids"]), ref.generated);
  EXPECT_EQ((*j)["plain"]["usage"]["completion_tokens"], ref.generated.size());
  EXPECT_EQ((*j)["plain"]["finish_reason"], "length");
  EXPECT_EQ(ids_of((*j)["stream"]["token_ids"]), ref.generated);
  EXPECT_EQ((*j)["stream"]["chunks"], ref.generated.size());
  EXPECT_EQ((*j)["stream"]["finish_reason"], "length");
}

// 32 concurrent clients, a few hundred mixed requests (plain, streamed, streams cancelled after
// their first event, encoder states), against answers computed one by one beforehand.
TEST(SidaServer, LoadOf32ConcurrentClientsGivesTheSerialAnswers) {
  constexpr int kClients = 32, kRequestsPerClient = 10;
  const auto requests = synthetic_requests(40, 3, 30, 96, 23);
  std::vector<Reference> refs;
  for (size_t i = 0; i < requests.size(); ++i) refs.push_back(reference(tiny_checkpoint(), requests[i], 12));
  ServerSetup setup;
  TestServer server(setup);
  std::mutex mutex;
  std::multiset<std::string> completion_ids;
  int answered = 0, cancelled = 0;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto client = server.client();
      for (int k = 0; k < kRequestsPerClient; ++k) {
        const int n = c * kRequestsPerClient + k;
        const size_t which = size_t(n * 7) % requests.size();
        const Reference& ref = refs[which];
        const int kind = n % 4;
        if (kind == 3) {
          const std::vector<float> got =
              encoder_states_of(post_json(*client, "/v1/encode", {{"input", requests[which]}}, 200));
          EXPECT_EQ(got, ref.encoder) << "request " << n;
          std::lock_guard<std::mutex> lock(mutex);
          ++answered;
          continue;
        }
        if (kind == 0) {
          Json r = post_json(*client, "/v1/completions", {{"prompt", requests[which]}, {"max_tokens", 12}}, 200);
          EXPECT_EQ(ids_of(r["choices"][0]["token_ids"]), ref.generated) << "request " << n;
          std::lock_guard<std::mutex> lock(mutex);
          completion_ids.insert(r["id"].get<std::string>());
          ++answered;
          continue;
        }
        const std::string body_json = Json{{"prompt", requests[which]}, {"max_tokens", 12}, {"stream", true}}.dump();
        // The first data event, complete, in what a client received.
        auto first_event = [](const std::string& received) -> std::optional<Json> {
          const size_t data = received.find("data: ");
          const size_t end = data == std::string::npos ? data : received.find("\n\n", data);
          if (end == std::string::npos) return std::nullopt;
          // A chunk boundary may split the event: the chunk-size lines ("\r\n1f\r\n") are not JSON.
          Json j = Json::parse(received.substr(data + 6, end - data - 6), nullptr, false);
          if (j.is_discarded()) return std::nullopt;
          return j;
        };
        if (kind == 2) {  // hangs up after its first event
          const std::string received = send_and_hang_up(
              server.port(), body_json, [&](const std::string& r) { return first_event(r).has_value(); });
          auto first = first_event(received);
          ASSERT_TRUE(first.has_value()) << "request " << n << ": " << received;
          EXPECT_EQ((*first)["choices"][0]["token_ids"][0].get<int32_t>(), ref.generated[0]) << "request " << n;
          std::lock_guard<std::mutex> lock(mutex);
          ++cancelled;
          continue;
        }
        auto res = client->Post("/v1/completions", body_json, "application/json");
        const std::string body = res ? res->body : "";
        ASSERT_TRUE(res) << "request " << n;
        EXPECT_EQ(res->status, 200);
        const auto events = sse_events(body);
        ASSERT_FALSE(events.empty());
        EXPECT_EQ(events.back(), "[DONE]") << "request " << n;
        std::vector<int32_t> streamed;
        std::set<std::string> ids;
        for (size_t i = 0; i + 1 < events.size(); ++i) {
          Json chunk = Json::parse(events[i]);
          ids.insert(chunk["id"].get<std::string>());
          streamed.push_back(chunk["choices"][0]["token_ids"][0].get<int32_t>());
        }
        EXPECT_EQ(streamed, ref.generated) << "request " << n;
        ASSERT_EQ(ids.size(), 1u);
        std::lock_guard<std::mutex> lock(mutex);
        completion_ids.insert(*ids.begin());
        ++answered;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(answered + cancelled, kClients * kRequestsPerClient);
  EXPECT_EQ(cancelled, kClients * kRequestsPerClient / 4);
  // No completion answered twice or lost: every id distinct.
  EXPECT_EQ(std::set<std::string>(completion_ids.begin(), completion_ids.end()).size(), completion_ids.size());
  EXPECT_EQ(completion_ids.size(), size_t(kClients * kRequestsPerClient / 2));
  wait_for_stats(server, [](const BatcherStats& s) { return s.running == 0 && s.queue_depth == 0; });
  const BatcherStats s = server.stats();
  EXPECT_EQ(s.jobs_done + s.jobs_cancelled, uint64_t(kClients * kRequestsPerClient));
  EXPECT_EQ(s.jobs_failed, 0u);
  EXPECT_GT(s.windows, 0u);
  wait_for_metrics(server, "sida_http_responses_total{endpoint=\"/v1/encode\",code=\"200\"} 80");
}

}  // namespace
}  // namespace perfmem::sida
