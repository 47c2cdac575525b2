#include "perfmem/sida/serve.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "perfmem/core/io.h"
#include "perfmem/core/progress.h"
#include "perfmem/sida/predictor.h"
#include "guarded.h"

namespace perfmem::sida {
namespace {

// A bounded multi-producer queue; pop() returns nullopt once closed and drained.
template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity) {}
  bool push(T value) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
    if (closed_) return false;
    items_.push_back(std::move(value));
    not_empty_.notify_one();
    return true;
  }
  std::optional<T> pop() {
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    T value = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return value;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }

 private:
  size_t capacity_;
  std::deque<T> items_;
  bool closed_ = false;
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
};

std::string sampling_description(const SamplingOptions& s) {
  if (s.greedy()) return "greedy";
  return "sampled (temperature " + std::to_string(s.temperature) + ", top_k " + std::to_string(s.top_k) + ", top_p " +
         std::to_string(s.top_p) + ", seed " + std::to_string(s.seed) + ")";
}

struct WindowPlan {
  size_t first = 0, count = 0;
  std::vector<int32_t> accesses;
  std::vector<Predictor::Routes> routes;  // per request, when the predictor ran
};

Status check_routes(const RouteTable& table, const std::vector<Request>& requests, const ServeOptions& options,
                    const SwitchConfig& config) {
  const char* name = "route table";
  if (table.num_moe_layers != config.num_moe_layers() || table.num_experts != config.num_experts)
    return input_error(
        name, "model",
        std::to_string(config.num_moe_layers()) + " MoE layers of " + std::to_string(config.num_experts) + " experts",
        std::to_string(table.num_moe_layers) + " of " + std::to_string(table.num_experts));
  if (table.generate != options.generate || (options.generate && table.max_new_tokens != options.max_new_tokens))
    return input_error(
        name, "mode",
        options.generate ? "generation of " + std::to_string(options.max_new_tokens) + " tokens" : "encoder only",
        table.generate ? "generation of " + std::to_string(table.max_new_tokens) + " tokens" : "encoder only");
  if (options.generate && sampling_description(table.sampling) != sampling_description(options.sampling))
    return input_error(name, "decoding", sampling_description(options.sampling), sampling_description(table.sampling));
  if (table.requests.size() != requests.size())
    return input_error(name, "requests", std::to_string(requests.size()) + " requests",
                       std::to_string(table.requests.size()));
  for (size_t r = 0; r < requests.size(); ++r)
    if (table.requests[r] != requests[r])
      return input_error(name, "request " + std::to_string(r), "the same token ids as the run's", "different ones");
  return Status::Ok();
}

// The store's access sequence for a window: each request's accesses in turn, or, when the window
// runs layer by layer, the distinct experts of each encoder layer in ascending id order (ids are
// moe_layer * E + e, so that is plain ascending order), then for every decoding step the distinct
// experts of each decoder layer among the requests still generating. A request's decoder accesses
// split into steps where the layer index stops increasing (each step visits the decoder's MoE
// layers in order). The plan only moves data: a mismatch would cost time, never change a result.
std::vector<int32_t> window_accesses(const RouteTable& table, size_t first, size_t count, Execution execution,
                                     int64_t encoder_moe_layers) {
  std::vector<int32_t> out;
  if (execution == Execution::kRequest) {
    for (size_t r = first; r < first + count; ++r)
      out.insert(out.end(), table.accesses[r].begin(), table.accesses[r].end());
    return out;
  }
  const int32_t encoder_ids = int32_t(encoder_moe_layers * table.num_experts);
  std::vector<std::vector<int32_t>> phases(1);  // [0]: the encoder; [1 + s]: decoding step s
  for (size_t r = first; r < first + count; ++r) {
    size_t step = 0;
    int32_t last = -1;
    for (int32_t id : table.accesses[r]) {
      if (id < encoder_ids) {
        phases[0].push_back(id);
        continue;
      }
      if (last >= 0 && id <= last) ++step;
      last = id;
      if (phases.size() < step + 2) phases.resize(step + 2);
      phases[step + 1].push_back(id);
    }
  }
  for (std::vector<int32_t>& phase : phases) {
    std::sort(phase.begin(), phase.end());
    phase.erase(std::unique(phase.begin(), phase.end()), phase.end());
    out.insert(out.end(), phase.begin(), phase.end());
  }
  return out;
}

}  // namespace

Result<Execution> parse_execution(const std::string& name) {
  if (name == "request") return Execution::kRequest;
  if (name == "window") return Execution::kWindow;
  return Status(StatusCode::kInvalidInput, "unknown execution \"" + name + "\" (known: request, window)");
}

const char* execution_name(Execution execution) { return execution == Execution::kWindow ? "window" : "request"; }

std::vector<Request> synthetic_requests(size_t count, int64_t min_len, int64_t max_len, int64_t vocab, uint64_t seed) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::vector<Request> out;
  for (size_t i = 0; i < count; ++i) {
    const int64_t len = min_len + int64_t(next() % uint64_t(max_len - min_len + 1));
    Request r;
    for (int64_t t = 0; t + 1 < len; ++t) r.push_back(int32_t(3 + next() % uint64_t(vocab - 3)));
    r.push_back(1);
    out.push_back(std::move(r));
  }
  return out;
}

Result<Request> parse_tokens(const std::string& text, const std::string& what) {
  Request r;
  std::string cleaned = text;
  for (char& ch : cleaned)
    if (ch == ',') ch = ' ';
  std::istringstream in(cleaned);
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    long v = std::strtol(word.c_str(), &end, 10);
    if (*end != '\0' || v < 0 || v > INT32_MAX)
      return input_error(what, "token " + std::to_string(r.size()), "a non-negative integer id", word);
    r.push_back(int32_t(v));
  }
  if (r.empty())
    return input_error(what, "tokens", "at least one token id",
                       text.find_first_not_of(" \t\r\n") == std::string::npos ? "an empty value" : "none");
  return r;
}

Result<std::vector<Request>> read_requests(const std::string& path) {
  PERFMEM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  std::vector<Request> out;
  std::istringstream in(text);
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    PERFMEM_ASSIGN_OR_RETURN(Request r, parse_tokens(line, path + ":" + std::to_string(number)));
    out.push_back(std::move(r));
  }
  if (out.empty()) return input_error(path, "contents", "one request per line", "no requests");
  return out;
}

Result<std::unique_ptr<ExpertStore>> make_recording_store(const ModelWeights& model, bool direct_io) {
  StoreOptions so;
  so.policy = Policy::kLru;
  so.direct_io = direct_io;
  so.budget_bytes = std::min<uint64_t>(
      uint64_t(model.config().num_moe_layers() * model.config().num_experts) * model.config().expert_f32_bytes(),
      uint64_t(4) << 30);  // cap the recording pass's memory
  return ExpertStore::create(model, so);
}

Result<RouteTable> record_routes(const ModelWeights& model, const std::vector<Request>& requests,
                                 const ServeOptions& options, bool direct_io) {
  PERFMEM_ASSIGN_OR_RETURN(auto store, make_recording_store(model, direct_io));
  Engine engine(model, *store, options.engine);
  RouteTable table;
  table.generate = options.generate;
  table.max_new_tokens = options.generate ? options.max_new_tokens : 0;
  if (options.generate) table.sampling = options.sampling;
  table.num_moe_layers = model.config().num_moe_layers();
  table.num_experts = model.config().num_experts;
  table.requests = requests;
  std::vector<int32_t>* current = nullptr;
  engine.set_observer([&](const MoeLayerVisit& visit) {
    for (int32_t e : visit.experts_used) current->push_back(int32_t(visit.moe_layer * table.num_experts + e));
  });
  ProgressBar bar("recording routes", int64_t(requests.size()));
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    table.accesses.emplace_back();
    current = &table.accesses.back();
    if (options.generate) {
      PERFMEM_ASSIGN_OR_RETURN(auto gen, engine.generate({r}, request_generate_options(options, i)));
    } else {
      PERFMEM_ASSIGN_OR_RETURN(auto enc, engine.encode({r}));
    }
    bar.advance();
  }
  bar.finish();
  return table;
}

Status write_route_table(const std::string& path, const RouteTable& table) {
  Json j;
  j["format"] = "sida-route-table-1";
  j["mode"] = table.generate ? "generate" : "encode";
  j["max_new_tokens"] = table.max_new_tokens;
  if (!table.sampling.greedy())
    j["sampling"] = {{"temperature", table.sampling.temperature},
                     {"top_k", table.sampling.top_k},
                     {"top_p", table.sampling.top_p},
                     {"seed", table.sampling.seed}};
  j["num_moe_layers"] = table.num_moe_layers;
  j["num_experts"] = table.num_experts;
  Json reqs = Json::array();
  for (size_t r = 0; r < table.requests.size(); ++r)
    reqs.push_back({{"tokens", table.requests[r]}, {"accesses", table.accesses[r]}});
  j["requests"] = std::move(reqs);
  return write_text_file(path, j.dump() + "\n");
}

Result<RouteTable> read_route_table(const std::string& path) {
  PERFMEM_ASSIGN_OR_RETURN(Json j, read_json_file(path));
  std::string format, mode;
  PERFMEM_RETURN_IF_ERROR(json_get(j, path, "format", &format));
  if (format != "sida-route-table-1") return input_error(path, "key \"format\"", "\"sida-route-table-1\"", format);
  RouteTable t;
  PERFMEM_RETURN_IF_ERROR(json_get(j, path, "mode", &mode));
  if (mode != "generate" && mode != "encode")
    return input_error(path, "key \"mode\"", "\"generate\" or \"encode\"", mode);
  t.generate = mode == "generate";
  PERFMEM_RETURN_IF_ERROR(json_get(j, path, "max_new_tokens", &t.max_new_tokens));
  if (j.contains("sampling")) {  // absent: greedy
    const Json& sj = j["sampling"];
    PERFMEM_RETURN_IF_ERROR(json_get(sj, path + " key \"sampling\"", "temperature", &t.sampling.temperature));
    PERFMEM_RETURN_IF_ERROR(json_get(sj, path + " key \"sampling\"", "top_k", &t.sampling.top_k));
    PERFMEM_RETURN_IF_ERROR(json_get(sj, path + " key \"sampling\"", "top_p", &t.sampling.top_p));
    PERFMEM_RETURN_IF_ERROR(json_get(sj, path + " key \"sampling\"", "seed", &t.sampling.seed));
    PERFMEM_RETURN_IF_ERROR(check_sampling(t.sampling, path + " key \"sampling\""));
  }
  PERFMEM_RETURN_IF_ERROR(json_get(j, path, "num_moe_layers", &t.num_moe_layers));
  PERFMEM_RETURN_IF_ERROR(json_get(j, path, "num_experts", &t.num_experts));
  Json reqs;
  PERFMEM_RETURN_IF_ERROR(json_get(j, path, "requests", &reqs));
  if (!reqs.is_array()) return input_error(path, "key \"requests\"", "an array", reqs.type_name());
  const int64_t ids = t.num_moe_layers * t.num_experts;
  for (size_t r = 0; r < reqs.size(); ++r) {
    const std::string place = path;
    Request tokens;
    std::vector<int32_t> accesses;
    PERFMEM_RETURN_IF_ERROR(json_get(reqs[r], place + " request " + std::to_string(r), "tokens", &tokens));
    PERFMEM_RETURN_IF_ERROR(json_get(reqs[r], place + " request " + std::to_string(r), "accesses", &accesses));
    for (int32_t a : accesses)
      if (a < 0 || a >= ids)
        return input_error(path, "request " + std::to_string(r) + " accesses",
                           "expert ids below " + std::to_string(ids), std::to_string(a));
    t.requests.push_back(std::move(tokens));
    t.accesses.push_back(std::move(accesses));
  }
  return t;
}

using internal::guarded;

GenerateOptions request_generate_options(const ServeOptions& options, size_t index) {
  GenerateOptions g;
  g.max_new_tokens = options.max_new_tokens;
  g.keep_logits = options.keep_outputs;
  g.keep_encoder = options.keep_outputs;
  g.sampling = options.sampling;
  g.sampling.seed += index;
  return g;
}

Result<ServeReport> serve(const ModelWeights& model, ExpertStore& store, const std::vector<Request>& requests,
                          const ServeOptions& options) {
  if (options.routes && options.predictor)
    return Status(StatusCode::kInvalidInput, "give the prefetch policy a predictor or a route table, not both");
  if (store.policy() == Policy::kPrefetch) {
    if (!options.routes && !options.predictor)
      return Status(StatusCode::kInvalidInput,
                    "the prefetch policy needs a predictor (--predictor DIR, made by `sida train-predictor`) or an "
                    "oracle route table (--routes FILE, made by `sida record-routes`)");
    if (options.routes) PERFMEM_RETURN_IF_ERROR(check_routes(*options.routes, requests, options, model.config()));
    if (options.predictor)
      PERFMEM_RETURN_IF_ERROR(check_predictor_fits(options.predictor->config(), model, "the predictor"));
  }
  if (options.replace_router && !options.predictor)
    return Status(StatusCode::kInvalidInput, "router replacement needs a predictor (--predictor DIR)");
  if (options.replace_router)
    PERFMEM_RETURN_IF_ERROR(check_router_replacement(model, *options.predictor, options.replace_top_k));
  // The plans load at least the experts a replaced token goes to.
  const int64_t replaced_k = replaced_experts_per_token(model.config(), options.replace_top_k);
  const int64_t plan_top_k = options.replace_router ? std::max(options.plan_top_k, replaced_k) : options.plan_top_k;
  const bool prefetch = store.policy() == Policy::kPrefetch;
  double predictor_s = 0;  // written by the run-ahead thread, read after join()
  const size_t window = std::max<size_t>(1, options.window);
  BoundedQueue<WindowPlan> plans(std::max<size_t>(1, options.queue_capacity));
  // The run-ahead thread: turns the route table into per-window access plans.
  std::thread run_ahead([&] {
    for (size_t first = 0; first < requests.size(); first += window) {
      WindowPlan plan;
      plan.first = first;
      plan.count = std::min(window, requests.size() - first);
      if (options.predictor && (prefetch || options.replace_router)) {
        Stopwatch sw;
        for (size_t r = first; r < first + plan.count; ++r)
          plan.routes.push_back(options.predictor->predict_routes(requests[r], plan_top_k));
        if (prefetch)
          plan.accesses =
              accesses_of_routes(plan.routes, options.predictor->config().num_moe_layers,
                                 options.predictor->config().num_experts, options.execution == Execution::kWindow);
        predictor_s += sw.elapsed_s();
      } else if (prefetch) {
        plan.accesses = window_accesses(*options.routes, first, plan.count, options.execution,
                                        model.config().num_encoder_moe_layers());
      }
      if (!plans.push(std::move(plan))) return;
    }
    plans.close();
  });
  // Should anything below still throw, the queue is closed and the thread joined on the way out
  // (unwinding past a joinable std::thread terminates the program).
  struct JoinOnExit {
    BoundedQueue<WindowPlan>& plans;
    std::thread& thread;
    ~JoinOnExit() {
      plans.close();
      if (thread.joinable()) thread.join();
    }
  } join_on_exit{plans, run_ahead};

  Engine engine(model, store, options.engine);
  ServeReport report;
  // Replacement mode: the routes of the engine call's first request (the running request in
  // request execution, the window's first in window execution); a token's are its sequence's.
  const Predictor::Routes* call_routes = nullptr;
  if (options.replace_router)
    engine.set_router_replacement(predicted_router_replacement(model, *options.predictor, options.replace_top_k,
                                                               [&](int32_t sequence) -> const Predictor::Routes& {
                                                                 return call_routes[sequence];
                                                               }),
                                  replaced_k);
  // Router decisions go to the request being run: the current one in request execution, the
  // window's first plus the visit's index in window execution.
  size_t current_request = 0, window_first = 0;
  if (options.keep_routes)
    engine.set_observer([&](const MoeLayerVisit& v) {
      const size_t r = v.window_request >= 0 ? window_first + size_t(v.window_request) : current_request;
      report.results[r].routes.push_back(
          {v.moe_layer, v.decode_step, v.positions, v.choice, v.experts_per_token, v.dropped});
    });
  report.policy = policy_name(store.policy());
  report.execution = execution_name(options.execution);
  report.slots = store.num_slots();
  report.budget_bytes = store.num_slots() * store.slot_bytes();
  report.requests = requests.size();
  report.results.resize(requests.size());
  std::vector<double> latencies;
  Status failure;
  Stopwatch wall;
  ProgressBar bar("serving", int64_t(requests.size()));
  while (auto plan = plans.pop()) {
    report.planned_accesses += plan->accesses.size();
    // The window before has finished: what its plan expected and did not happen (mispredictions)
    // is dropped with it. Appended instead, a plan's leftovers in its last layer could outnumber
    // the store's search for the next access, and the prefetcher stayed behind for good.
    store.set_upcoming(plan->accesses);
    if (options.execution == Execution::kWindow) {
      // The window's requests advance together and complete together: each one's latency is
      // the window's, measured from the moment the window started.
      Stopwatch sw;
      window_first = plan->first;
      if (options.replace_router) call_routes = plan->routes.data();
      std::vector<Request> batch(requests.begin() + std::ptrdiff_t(plan->first),
                                 requests.begin() + std::ptrdiff_t(plan->first + plan->count));
      const std::string which =
          "requests " + std::to_string(plan->first) + ".." + std::to_string(plan->first + plan->count - 1);
      if (options.generate) {
        std::vector<GenerateOptions> each;
        for (size_t i = 0; i < plan->count; ++i) each.push_back(request_generate_options(options, plan->first + i));
        auto gen = guarded([&] { return engine.generate_window(batch, each, nullptr); });
        if (!gen.ok()) {
          failure = gen.status().with_context(which);
          break;
        }
        for (size_t i = 0; i < plan->count; ++i) {
          RequestResult& out = report.results[plan->first + i];
          out.generated = (*gen)[i].tokens[0];
          report.generated_tokens += out.generated.size();
          if (options.keep_outputs) {
            out.logits = std::move((*gen)[i].logits);
            out.encoder_hidden = std::move((*gen)[i].encoder.hidden);
          }
        }
      } else {
        auto enc = guarded([&] { return engine.encode_window(batch); });
        if (!enc.ok()) {
          failure = enc.status().with_context(which);
          break;
        }
        if (options.keep_outputs)
          for (size_t i = 0; i < plan->count; ++i)
            report.results[plan->first + i].encoder_hidden = std::move((*enc)[i].hidden);
      }
      const double ms = sw.elapsed_ms();
      for (size_t i = 0; i < plan->count; ++i) {
        report.input_tokens += batch[i].size();
        report.results[plan->first + i].latency_ms = ms;
        latencies.push_back(ms);
        bar.advance();
      }
      continue;
    }
    for (size_t r = plan->first; r < plan->first + plan->count && failure.ok(); ++r) {
      Stopwatch sw;
      current_request = r;
      if (options.replace_router) call_routes = &plan->routes[r - plan->first];
      RequestResult& out = report.results[r];
      report.input_tokens += requests[r].size();
      if (options.generate) {
        auto gen = guarded([&] { return engine.generate({requests[r]}, request_generate_options(options, r)); });
        if (!gen.ok()) {
          failure = gen.status().with_context("request " + std::to_string(r));
          break;
        }
        out.generated = gen->tokens[0];
        report.generated_tokens += out.generated.size();
        if (options.keep_outputs) {
          out.logits = std::move(gen->logits);
          out.encoder_hidden = std::move(gen->encoder.hidden);
        }
      } else {
        auto enc = guarded([&] { return engine.encode({requests[r]}); });
        if (!enc.ok()) {
          failure = enc.status().with_context("request " + std::to_string(r));
          break;
        }
        if (options.keep_outputs) out.encoder_hidden = std::move(enc->hidden);
      }
      out.latency_ms = sw.elapsed_ms();
      latencies.push_back(out.latency_ms);
      bar.advance();
    }
    if (!failure.ok()) break;
  }
  plans.close();
  run_ahead.join();
  bar.finish();
  if (!failure.ok()) return failure;
  report.wall_s = wall.elapsed_s();
  report.plans = !prefetch ? "none" : options.predictor ? "predictor" : "oracle";
  report.predictor_s = predictor_s;
  report.replace_router = options.replace_router;
  if (options.replace_router) report.router = replaced_router_description(model.config(), options.replace_top_k);
  report.latency_ms = summarize(latencies);
  report.peak_rss_bytes = peak_rss_bytes();
  report.store = store.stats();
  report.engine = engine.stats();
  return report;
}

Json report_to_json(const ServeReport& r) {
  Json j;
  j["policy"] = r.policy;
  j["execution"] = r.execution;
  j["plans"] = r.plans;
  j["router"] = r.router;
  j["planned_accesses"] = r.planned_accesses;
  j["predictor_s"] = r.predictor_s;
  j["budget_bytes"] = r.budget_bytes;
  j["slots"] = r.slots;
  j["requests"] = r.requests;
  j["input_tokens"] = r.input_tokens;
  j["generated_tokens"] = r.generated_tokens;
  j["wall_s"] = r.wall_s;
  j["requests_per_s"] = r.requests_per_s();
  j["input_tokens_per_s"] = r.input_tokens_per_s();
  j["generated_tokens_per_s"] = r.generated_tokens_per_s();
  j["latency_ms"] = to_json(r.latency_ms);
  j["peak_rss_bytes"] = r.peak_rss_bytes;
  j["expert_accesses"] = r.store.accesses;
  j["fast_tier_hits"] = r.store.hits;
  j["fast_tier_hit_rate"] = r.store.hit_rate();
  j["inflight_prefetch_hits"] = r.store.inflight_hits;
  j["misses"] = r.store.misses;
  j["loads"] = r.store.loads;
  j["prefetch_loads"] = r.store.prefetch_loads;
  j["evictions"] = r.store.evictions;
  j["bytes_read"] = r.store.bytes_read;
  j["read_errors"] = r.store.read_errors;
  j["io_wait_s"] = r.store.io_wait_s;
  j["io_read_s"] = r.store.read_s;
  j["expert_compute_s"] = r.engine.expert_compute_s;
  j["expert_bytes_streamed"] = r.engine.expert_bytes;
  j["expert_bandwidth_gb_per_s"] =
      r.engine.expert_compute_s > 0 ? double(r.engine.expert_bytes) / r.engine.expert_compute_s / 1e9 : 0.0;
  return j;
}

Json routes_to_json(const ModelWeights& model, const std::vector<Request>& requests, const ServeReport& report) {
  const SwitchConfig& c = model.config();
  Json out;
  out["format"] = "sida-router-choices-1";
  out["num_experts"] = c.num_experts;
  Json reqs = Json::array();
  for (size_t r = 0; r < report.results.size(); ++r) {
    Json layers = Json::array();
    for (const RouterChoices& rc : report.results[r].routes) {
      const auto place = c.moe_layer_place(rc.moe_layer);
      layers.push_back({{"moe_layer", rc.moe_layer},
                        {"decoder", place.decoder},
                        {"block", place.block},
                        {"step", rc.decode_step},
                        {"positions", rc.positions},
                        {"expert", rc.expert},
                        {"experts_per_token", rc.experts_per_token},
                        {"dropped", rc.dropped}});
    }
    reqs.push_back({{"tokens", requests[r]}, {"layers", std::move(layers)}});
  }
  out["requests"] = std::move(reqs);
  return out;
}

std::string report_to_text(const ServeReport& r) {
  std::ostringstream o;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "policy %s, %s execution, budget %s (%zu expert slots)\n"
                "  %zu requests, %llu input tokens, %llu generated tokens in %.3f s\n"
                "  throughput %.2f requests/s, %.1f input tokens/s, %.1f generated tokens/s\n"
                "  latency p50 %.2f ms, p99 %.2f ms\n"
                "  peak RSS %s, read from disk %s\n"
                "  fast-tier hit rate %.1f%% (%llu of %llu accesses; %llu waited on a prefetch)\n"
                "  inference thread waited %.3f s for I/O\n",
                r.policy.c_str(), r.execution.c_str(), format_bytes(double(r.budget_bytes)).c_str(), r.slots,
                r.requests, (unsigned long long)r.input_tokens, (unsigned long long)r.generated_tokens, r.wall_s,
                r.requests_per_s(), r.input_tokens_per_s(), r.generated_tokens_per_s(), r.latency_ms.median,
                r.latency_ms.p99, format_bytes(double(r.peak_rss_bytes)).c_str(),
                format_bytes(double(r.store.bytes_read)).c_str(), 100.0 * r.store.hit_rate(),
                (unsigned long long)r.store.hits, (unsigned long long)r.store.accesses,
                (unsigned long long)r.store.inflight_hits, r.store.io_wait_s);
  o << buf;
  if (r.plans == "predictor") {
    std::snprintf(buf, sizeof buf,
                  "  prefetch plans from the predictor: %.3f s in the run-ahead thread (inside the wall time)\n",
                  r.predictor_s);
    o << buf;
  } else if (r.plans == "oracle") {
    o << "  prefetch plans from an oracle route table (a recorded pass, not counted: an upper bound)\n";
  }
  return o.str();
}

}  // namespace perfmem::sida
