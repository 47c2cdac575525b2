#include "perfmem/sida/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <csignal>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <sstream>

#include "perfmem/core/json.h"

namespace perfmem::sida {
namespace {

using Clock = std::chrono::steady_clock;

// A request the server refuses: the HTTP status, a message, and the field it is about.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;  // empty: not about one field
};

const char* error_type(int status) {
  if (status == 503) return "overloaded";
  if (status >= 500) return "server_error";
  if (status == 404) return "not_found";
  return "invalid_request_error";
}

std::string error_json(const ApiError& e) {
  Json j;
  j["error"] = {{"message", e.message},
                {"type", error_type(e.status)},
                {"param", e.param.empty() ? Json(nullptr) : Json(e.param)},
                {"code", e.status}};
  return j.dump();
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(error_json(e), "application/json");
}

// Prometheus histogram of seconds with fixed buckets.
class Histogram {
 public:
  static constexpr std::array<double, 13> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  void observe(double seconds) {
    for (size_t i = 0; i < kBounds.size(); ++i)
      if (seconds <= kBounds[i]) ++counts_[i];
    ++count_;
    sum_ += seconds;
  }
  void render(std::ostream& out, const std::string& name, const std::string& labels) const {
    const std::string sep = labels.empty() ? "" : ",";
    for (size_t i = 0; i < kBounds.size(); ++i)
      out << name << "_bucket{" << labels << sep << "le=\"" << kBounds[i] << "\"} " << counts_[i] << "\n";
    out << name << "_bucket{" << labels << sep << "le=\"+Inf\"} " << count_ << "\n";
    out << name << "_sum" << (labels.empty() ? "" : "{" + labels + "}") << " " << sum_ << "\n";
    out << name << "_count" << (labels.empty() ? "" : "{" + labels + "}") << " " << count_ << "\n";
  }

 private:
  std::array<uint64_t, kBounds.size()> counts_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

// While a response waits for its job, it writes a heartbeat this often: whitespace before a JSON
// body, an SSE comment in a stream (both ignored by clients). Writing is how a server learns that
// the client went away (the write after the peer's reset fails); the failed write makes httplib
// call the releaser, which cancels the job, whether it is queued or running.
constexpr std::chrono::milliseconds kHeartbeat{100};

bool heartbeat(httplib::DataSink& sink, std::string_view text) { return sink.write(text.data(), text.size()); }

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

struct HttpServer::Impl {
  const ModelWeights& model;
  Batcher& batcher;
  const Tokenizer* tokenizer;
  HttpServerOptions options;
  httplib::Server http;
  mutable std::mutex tokenizer_mutex;  // SentencePiece calls, serialized

  // Draining: new requests are refused; shutdown() waits until no response is in progress.
  std::atomic<bool> draining{false};
  std::mutex drain_mutex;
  std::condition_variable drain_changed;
  size_t active_responses = 0;
  bool stopped = false;
  std::atomic<uint64_t> next_id{1};
  int listen_socket = -1;

  mutable std::mutex metrics_mutex;
  std::map<std::pair<std::string, int>, uint64_t> responses;  // (endpoint, status) -> count
  std::map<std::string, Histogram> duration;                  // per endpoint
  Histogram queue_wait, first_token;
  uint64_t rejected_full = 0, rejected_draining = 0;

  Impl(const ModelWeights& m, Batcher& b, const Tokenizer* t, HttpServerOptions o)
      : model(m), batcher(b), tokenizer(t), options(std::move(o)) {}

  void count_response(const std::string& endpoint, int status) {
    std::lock_guard<std::mutex> lock(metrics_mutex);
    ++responses[{endpoint, status}];
  }

  std::string decode(const std::vector<int32_t>& ids) const {
    if (!tokenizer) return "";
    std::lock_guard<std::mutex> lock(tokenizer_mutex);
    return tokenizer->decode(ids);
  }

  // The request's tokens from `field`: text (through the tokenizer) or an array of ids, each
  // checked as the engine does, within the prompt limit.
  std::optional<ApiError> tokens_of(const Json& body, const std::string& field, std::vector<int32_t>* out) const {
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) return ApiError{400, "\"" + field + "\" is required", field};
    const SwitchConfig& c = model.config();
    if (it->is_string()) {
      if (!tokenizer)
        return ApiError{400,
                        "\"" + field + "\" is text, but this checkpoint has no " + tokenizer_file_name(c) +
                            " (a SentencePiece model) to tokenize it: send token ids",
                        field};
      if (it->get_ref<const std::string&>().find_first_not_of(" \t\r\n") == std::string::npos)
        return ApiError{400, "\"" + field + "\" is empty", field};
      std::unique_lock<std::mutex> lock(tokenizer_mutex);
      Result<std::vector<int32_t>> ids = tokenizer->encode(it->get<std::string>());
      lock.unlock();
      if (!ids.ok()) return ApiError{400, "\"" + field + "\": " + ids.status().message(), field};
      *out = std::move(*ids);
    } else if (it->is_array()) {
      if (it->empty()) return ApiError{400, "\"" + field + "\" is an empty list of token ids", field};
      out->clear();
      for (size_t i = 0; i < it->size(); ++i) {
        const Json& v = (*it)[i];
        if (!v.is_number_integer())
          return ApiError{400,
                          "\"" + field + "\"[" + std::to_string(i) + "] must be an integer token id (one prompt per " +
                              "request), not " + v.type_name(),
                          field};
        const int64_t id = v.get<int64_t>();
        if (id < 0 || id >= c.vocab_size)
          return ApiError{400,
                          "\"" + field + "\"[" + std::to_string(i) + "] = " + std::to_string(id) +
                              " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")",
                          field};
        out->push_back(int32_t(id));
      }
    } else {
      return ApiError{400, "\"" + field + "\" must be a string or an array of token ids, not " + it->type_name(),
                      field};
    }
    if (int64_t(out->size()) > options.max_prompt_tokens)
      return ApiError{400,
                      "\"" + field + "\" has " + std::to_string(out->size()) + " tokens; the limit is " +
                          std::to_string(options.max_prompt_tokens),
                      field};
    const int64_t pad = c.masked_pad_id();
    if (pad >= 0 && std::all_of(out->begin(), out->end(), [&](int32_t t) { return t == pad; }))
      return ApiError{400, "\"" + field + "\" holds only the pad id " + std::to_string(pad), field};
    return std::nullopt;
  }

  // The parsed body, an object (errors name the body).
  std::optional<ApiError> parse_body(const httplib::Request& req, Json* body) const {
    *body = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body->is_discarded()) return ApiError{400, "the request body is not valid JSON", "body"};
    if (!body->is_object()) return ApiError{400, "the request body must be a JSON object", "body"};
    return std::nullopt;
  }

  // Submits the job; on refusal, the 503 (queue full or draining).
  std::optional<ApiError> admit(const std::shared_ptr<Job>& job) {
    const Batcher::Admission a = draining ? Batcher::Admission::kClosed : batcher.submit(job);
    if (a == Batcher::Admission::kQueued) return std::nullopt;
    std::lock_guard<std::mutex> lock(metrics_mutex);
    if (a == Batcher::Admission::kFull) {
      ++rejected_full;
      return ApiError{503, "the request queue is full; retry later", ""};
    }
    ++rejected_draining;
    return ApiError{503, "the server is shutting down", ""};
  }

  bool begin_response() {
    std::lock_guard<std::mutex> lock(drain_mutex);
    if (draining) return false;
    ++active_responses;
    return true;
  }
  void end_response() {
    {
      std::lock_guard<std::mutex> lock(drain_mutex);
      --active_responses;
    }
    drain_changed.notify_all();
  }

  // Completes the metrics of a job whose response ended (`written`: the client got all of it).
  void record_job(const std::string& endpoint, Job& job, Clock::time_point arrived, bool written) {
    Job::Clock::time_point started, first;
    bool ok = true;
    {
      std::lock_guard<std::mutex> lock(job.mutex);  // a cancelled job may still be running
      started = job.started;
      first = job.first_token;
      ok = job.status.ok();
    }
    std::lock_guard<std::mutex> lock(metrics_mutex);
    const Job::Clock::time_point zero{};
    if (written) {
      ++responses[{endpoint, ok ? 200 : 500}];
      duration[endpoint].observe(seconds_between(arrived, Clock::now()));
    } else {
      ++responses[{endpoint, 499}];  // the client went away (nginx's convention)
    }
    if (started != zero) queue_wait.observe(seconds_between(job.submitted, started));
    if (first != zero) first_token.observe(seconds_between(job.submitted, first));
  }

  Json completion_json(const std::string& id, int64_t created, const Json& choice, const Job& job) const {
    Json j;
    j["id"] = id;
    j["object"] = "text_completion";
    j["created"] = created;
    j["model"] = options.model_name;
    j["choices"] = Json::array({choice});
    j["usage"] = {{"prompt_tokens", job.tokens.size()},
                  {"completion_tokens", job.generated.size()},
                  {"total_tokens", job.tokens.size() + job.generated.size()}};
    return j;
  }

  // temperature (default 0: greedy, unlike OpenAI's 1, so that a plain request is deterministic),
  // top_p, top_k (an extension, as other OpenAI-compatible servers offer) and seed (absent: a
  // random one); null is absent.
  static std::optional<ApiError> sampling_of(const Json& body, SamplingOptions* out) {
    auto field = [&](const char* name) -> const Json* {
      auto it = body.find(name);
      return it == body.end() || it->is_null() ? nullptr : &*it;
    };
    if (const Json* v = field("temperature")) {
      if (!v->is_number())
        return ApiError{400, std::string("\"temperature\" must be a number, not ") + v->type_name(), "temperature"};
      out->temperature = v->get<double>();
    }
    if (const Json* v = field("top_p")) {
      if (!v->is_number())
        return ApiError{400, std::string("\"top_p\" must be a number, not ") + v->type_name(), "top_p"};
      out->top_p = v->get<double>();
    }
    if (const Json* v = field("top_k")) {
      if (!v->is_number_integer())
        return ApiError{400, std::string("\"top_k\" must be an integer, not ") + v->type_name(), "top_k"};
      out->top_k = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v->get<int64_t>();
    }
    if (const Json* v = field("seed")) {
      if (!v->is_number_integer())
        return ApiError{400, std::string("\"seed\" must be an integer, not ") + v->type_name(), "seed"};
      out->seed = v->is_number_unsigned() ? v->get<uint64_t>() : uint64_t(v->get<int64_t>());
    } else {
      out->seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
    }
    if (Status s = check_sampling(*out, "request"); !s.ok()) {
      const std::string param = out->temperature < 0 || !std::isfinite(out->temperature) ? "temperature"
                                : out->top_k < 0                                         ? "top_k"
                                                                                         : "top_p";
      return ApiError{400, "\"" + param + "\": " + s.message(), param};
    }
    return std::nullopt;
  }

  void handle_completions(const httplib::Request& req, httplib::Response& res);
  void handle_encode(const httplib::Request& req, httplib::Response& res);
  std::string metrics() const;
};

void HttpServer::Impl::handle_completions(const httplib::Request& req, httplib::Response& res) {
  const std::string endpoint = "/v1/completions";
  const Clock::time_point arrived = Clock::now();
  Json body;
  std::vector<int32_t> tokens;
  int64_t max_tokens = options.default_max_tokens;
  bool stream = false;
  auto refuse = [&](const ApiError& e) {
    send_error(res, e);
    count_response(endpoint, e.status);
  };
  if (auto e = parse_body(req, &body)) return refuse(*e);
  if (auto e = tokens_of(body, "prompt", &tokens)) return refuse(*e);
  if (auto it = body.find("max_tokens"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer())
      return refuse({400, std::string("\"max_tokens\" must be an integer, not ") + it->type_name(), "max_tokens"});
    const int64_t v = it->get<int64_t>();
    if (v < 1 || v > options.max_tokens_limit)
      return refuse({400,
                     "\"max_tokens\" must be between 1 and " + std::to_string(options.max_tokens_limit) + ", not " +
                         std::to_string(v),
                     "max_tokens"});
    max_tokens = v;
  }
  if (auto it = body.find("stream"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean())
      return refuse({400, std::string("\"stream\" must be true or false, not ") + it->type_name(), "stream"});
    stream = it->get<bool>();
  }
  SamplingOptions sampling;
  if (auto e = sampling_of(body, &sampling)) return refuse(*e);
  auto job = Job::generation(std::move(tokens), max_tokens, sampling);
  if (!begin_response()) return refuse({503, "the server is shutting down", ""});
  if (auto e = admit(job)) {
    end_response();
    return refuse(*e);
  }
  const std::string id = "cmpl-" + std::to_string(next_id++);
  const int64_t created = int64_t(std::time(nullptr));
  auto releaser = [this, job, endpoint, arrived](bool success) {
    if (!success) job->cancel();
    record_job(endpoint, *job, arrived, success);
    end_response();
  };
  if (!stream) {
    res.set_chunked_content_provider(
        "application/json",
        [this, job, id, created](size_t, httplib::DataSink& sink) {
          if (!job->wait_for([&] { return job->finished; }, kHeartbeat)) return heartbeat(sink, " ");
          std::string text;
          {
            std::lock_guard<std::mutex> lock(job->mutex);
            if (!job->status.ok()) return false;  // the status line is sent: abort the response
            Json choice = {{"index", 0},
                           {"text", decode(job->generated)},
                           {"token_ids", job->generated},
                           {"logprobs", nullptr},
                           {"finish_reason", job->stopped_by_end_id ? "stop" : "length"}};
            text = completion_json(id, created, choice, *job).dump();
          }
          if (!sink.write(text.data(), text.size())) return false;
          sink.done();
          return true;
        },
        releaser);
    return;
  }
  struct StreamState {
    size_t sent = 0;
    std::string text;  // decoded so far
  };
  auto state = std::make_shared<StreamState>();
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, id, created, state](size_t, httplib::DataSink& sink) {
        if (!job->wait_for([&] { return job->finished || job->generated.size() > state->sent; }, kHeartbeat))
          return heartbeat(sink, ": waiting\n\n");
        std::vector<int32_t> generated;
        bool finished = false, by_end_id = false;
        Status status;
        {
          std::lock_guard<std::mutex> lock(job->mutex);
          generated = job->generated;
          finished = job->finished;
          by_end_id = job->stopped_by_end_id;
          status = job->status;
        }
        std::string out;
        for (; state->sent < generated.size(); ++state->sent) {
          const bool last = finished && status.ok() && state->sent + 1 == generated.size();
          // Each event carries the text the token adds (decoding the whole prefix keeps
          // SentencePiece's spaces right); a token that completes no character adds "".
          std::string delta;
          if (tokenizer) {
            const std::string full = decode({generated.begin(), generated.begin() + std::ptrdiff_t(state->sent + 1)});
            if (full.compare(0, state->text.size(), state->text) == 0) {
              delta = full.substr(state->text.size());
              state->text = full;
            }
          }
          Json choice = {{"index", 0},
                         {"text", delta},
                         {"token_ids", {generated[state->sent]}},
                         {"logprobs", nullptr},
                         {"finish_reason", last ? Json(by_end_id ? "stop" : "length") : Json(nullptr)}};
          Json chunk = {{"id", id},
                        {"object", "text_completion"},
                        {"created", created},
                        {"model", options.model_name},
                        {"choices", Json::array({choice})}};
          if (last)
            chunk["usage"] = {{"prompt_tokens", job->tokens.size()},
                              {"completion_tokens", generated.size()},
                              {"total_tokens", job->tokens.size() + generated.size()}};
          out += "data: " + chunk.dump() + "\n\n";
        }
        if (finished) {
          if (!status.ok()) out += "data: " + error_json({500, status.to_string(), ""}) + "\n\n";
          out += "data: [DONE]\n\n";
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;
        if (finished) sink.done();
        return true;
      },
      releaser);
}

void HttpServer::Impl::handle_encode(const httplib::Request& req, httplib::Response& res) {
  const std::string endpoint = "/v1/encode";
  const Clock::time_point arrived = Clock::now();
  Json body;
  std::vector<int32_t> tokens;
  std::string pooling = "none";
  auto refuse = [&](const ApiError& e) {
    send_error(res, e);
    count_response(endpoint, e.status);
  };
  if (model.config().is_decoder_only())
    return refuse({400,
                   std::string("this model (") + model_family_name(model.config().family) +
                       ") is decoder-only: it has no encoder states to return; use /v1/completions",
                   ""});
  if (auto e = parse_body(req, &body)) return refuse(*e);
  if (auto e = tokens_of(body, "input", &tokens)) return refuse(*e);
  if (auto it = body.find("pooling"); it != body.end() && !it->is_null()) {
    if (!it->is_string() || (*it != "none" && *it != "mean"))
      return refuse({400, "\"pooling\" must be \"none\" or \"mean\", not " + it->dump(), "pooling"});
    pooling = it->get<std::string>();
  }
  auto job = Job::encoding(std::move(tokens));
  if (!begin_response()) return refuse({503, "the server is shutting down", ""});
  if (auto e = admit(job)) {
    end_response();
    return refuse(*e);
  }
  res.set_chunked_content_provider(
      "application/json",
      [this, job, pooling](size_t, httplib::DataSink& sink) {
        if (!job->wait_for([&] { return job->finished; }, kHeartbeat)) return heartbeat(sink, " ");
        std::string text;
        {
          std::lock_guard<std::mutex> lock(job->mutex);
          if (!job->status.ok()) return false;  // the status line is sent: abort the response
          const size_t d = size_t(model.config().d_model), n = job->tokens.size();
          Json j;
          j["object"] = "encoding";
          j["model"] = options.model_name;
          j["tokens"] = job->tokens;
          j["dimensions"] = d;
          j["pooling"] = pooling;
          if (pooling == "mean") {
            std::vector<float> mean(d);
            for (size_t k = 0; k < d; ++k) {
              double sum = 0;
              for (size_t t = 0; t < n; ++t) sum += job->encoder_hidden[t * d + k];
              mean[k] = float(sum / double(n));
            }
            j["embedding"] = mean;
          } else {
            Json rows = Json::array();
            for (size_t t = 0; t < n; ++t)
              rows.push_back(std::vector<float>(job->encoder_hidden.begin() + std::ptrdiff_t(t * d),
                                                job->encoder_hidden.begin() + std::ptrdiff_t((t + 1) * d)));
            j["encoder_states"] = std::move(rows);
          }
          j["usage"] = {{"prompt_tokens", n}, {"total_tokens", n}};
          text = j.dump();
        }
        if (!sink.write(text.data(), text.size())) return false;
        sink.done();
        return true;
      },
      [this, job, endpoint, arrived](bool success) {
        if (!success) job->cancel();
        record_job(endpoint, *job, arrived, success);
        end_response();
      });
}

std::string HttpServer::Impl::metrics() const {
  const BatcherStats b = batcher.stats();
  const StoreStats s = batcher.store().stats();
  std::ostringstream o;
  o.precision(15);  // counters print as whole numbers (the default 6 digits would round them)
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value << "\n";
  };
  std::lock_guard<std::mutex> lock(metrics_mutex);
  o << "# HELP sida_http_responses_total HTTP responses by endpoint and status (499: the client went away)\n"
       "# TYPE sida_http_responses_total counter\n";
  for (const auto& [key, count] : responses)
    o << "sida_http_responses_total{endpoint=\"" << key.first << "\",code=\"" << key.second << "\"} " << count << "\n";
  o << "# HELP sida_request_duration_seconds Time from arrival to the last byte of the response\n"
       "# TYPE sida_request_duration_seconds histogram\n";
  for (const auto& [endpoint, h] : duration)
    h.render(o, "sida_request_duration_seconds", "endpoint=\"" + endpoint + "\"");
  o << "# HELP sida_queue_wait_seconds Time a request waited for its window\n"
       "# TYPE sida_queue_wait_seconds histogram\n";
  queue_wait.render(o, "sida_queue_wait_seconds", "");
  o << "# HELP sida_time_to_first_token_seconds Time from admission to the first generated token\n"
       "# TYPE sida_time_to_first_token_seconds histogram\n";
  first_token.render(o, "sida_time_to_first_token_seconds", "");
  o << "# HELP sida_requests_rejected_total Requests refused with 503\n"
       "# TYPE sida_requests_rejected_total counter\n"
    << "sida_requests_rejected_total{reason=\"queue_full\"} " << rejected_full << "\n"
    << "sida_requests_rejected_total{reason=\"draining\"} " << rejected_draining << "\n";
  metric("sida_requests_completed_total", "counter", "Requests the engine ran to their end", double(b.jobs_done));
  metric("sida_requests_cancelled_total", "counter", "Requests cancelled by their client", double(b.jobs_cancelled));
  metric("sida_requests_failed_total", "counter", "Requests the engine failed", double(b.jobs_failed));
  metric("sida_prompt_tokens_total", "counter", "Prompt tokens run through the encoder", double(b.prompt_tokens));
  metric("sida_generated_tokens_total", "counter", "Tokens generated", double(b.generated_tokens));
  metric("sida_windows_total", "counter", "Windows run", double(b.windows));
  metric("sida_queue_depth", "gauge", "Requests waiting for a window", double(b.queue_depth));
  metric("sida_requests_running", "gauge", "Requests in the window being planned or run", double(b.running));
  metric("sida_window_size_max", "gauge", "Most requests per window", double(batcher.options().window));
  metric("sida_router_replaced", "gauge",
         "1: SiDA's router replacement routes the requests' own tokens (the predictor's experts); 0: exact mode",
         batcher.options().replace_router ? 1.0 : 0.0);
  metric("sida_expert_accesses_total", "counter", "Experts acquired by the engine", double(s.accesses));
  metric("sida_fast_tier_hits_total", "counter", "Acquisitions that found the expert resident", double(s.hits));
  metric("sida_fast_tier_hit_rate", "gauge", "Fast-tier hits per acquisition since start", s.hit_rate());
  metric("sida_expert_loads_total", "counter", "Experts read from disk", double(s.loads));
  metric("sida_expert_prefetch_loads_total", "counter", "Experts read ahead of their use", double(s.prefetch_loads));
  metric("sida_disk_bytes_read_total", "counter", "Bytes read from the checkpoint's files", double(s.bytes_read));
  metric("sida_io_wait_seconds_total", "counter", "Time the inference thread waited for expert reads", s.io_wait_s);
  metric("sida_predictor_seconds_total", "counter", "Time the run-ahead thread spent in the predictor", b.predictor_s);
  metric("sida_inference_busy_seconds_total", "counter", "Time the inference thread spent running windows", b.busy_s);
  return o.str();
}

HttpServer::HttpServer(const ModelWeights& model, Batcher& batcher, const Tokenizer* tokenizer,
                       HttpServerOptions options)
    : impl_(std::make_unique<Impl>(model, batcher, tokenizer, std::move(options))) {
  // Debian's libcpp-httplib is built to send without MSG_NOSIGNAL: a client that disconnects
  // mid-response would otherwise end the process with SIGPIPE instead of failing the write.
  std::signal(SIGPIPE, SIG_IGN);
  Impl& s = *impl_;
  const size_t threads =
      s.options.threads ? s.options.threads : batcher.options().max_queue + 2 * batcher.options().window + 16;
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.http.set_payload_max_length(s.options.max_body_bytes);
  // Keeps the listening socket, whose backlog bind() raises (see there).
  s.http.set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    impl_->listen_socket = sock;
  });
  s.http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own JSON error
    ApiError e{res.status, "", ""};
    if (res.status == 413) {
      e.message =
          "the request body is larger than the limit of " + std::to_string(impl_->options.max_body_bytes) + " bytes";
      e.param = "body";
    } else if (res.status == 404) {
      e.message = "no endpoint " + req.method + " " + req.path +
                  " (known: POST /v1/completions, POST /v1/encode, GET /health, GET /metrics)";
    } else {
      e.message = "the request could not be served (HTTP " + std::to_string(res.status) + ")";
    }
    res.set_content(error_json(e), "application/json");
    impl_->count_response(req.path, res.status);
  });
  s.http.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) { what = e.what(); } catch (...) {
    }
    send_error(res, {500, "internal error: " + what, ""});
    impl_->count_response(req.path, 500);
  });
  s.http.Post("/v1/completions",
              [this](const httplib::Request& req, httplib::Response& res) { impl_->handle_completions(req, res); });
  s.http.Post("/v1/encode",
              [this](const httplib::Request& req, httplib::Response& res) { impl_->handle_encode(req, res); });
  s.http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const bool draining = impl_->draining;
    res.status = draining ? 503 : 200;
    if (draining) res.set_header("Retry-After", "1");
    res.set_content(Json{{"status", draining ? "draining" : "ok"}}.dump(), "application/json");
    impl_->count_response("/health", res.status);
  });
  s.http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(impl_->metrics(), "text/plain; version=0.0.4");
    impl_->count_response("/metrics", 200);
  });
}

HttpServer::~HttpServer() { shutdown(); }

Result<int> HttpServer::bind() {
  Impl& s = *impl_;
  const int port = s.options.port == 0                                   ? s.http.bind_to_any_port(s.options.host)
                   : s.http.bind_to_port(s.options.host, s.options.port) ? s.options.port
                                                                         : -1;
  // httplib 0.11 listens with a backlog of 5: a burst of clients connecting at once overflows
  // it, and the kernel drops their handshakes (some clients then fail to read a response).
  // listen() again on the same socket only raises the backlog.
  if (port > 0 && s.listen_socket >= 0) ::listen(s.listen_socket, SOMAXCONN);
  if (port <= 0)
    return Status(StatusCode::kIoError, "cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) +
                                            " (address in use, or not an address of this machine?)");
  return port;
}

Status HttpServer::run() {
  Impl& s = *impl_;
  const bool ok = s.http.listen_after_bind();
  std::unique_lock<std::mutex> lock(s.drain_mutex);
  if (!ok && !s.stopped) return Status(StatusCode::kIoError, "the listening socket failed");
  return Status::Ok();
}

void HttpServer::shutdown() {
  Impl& s = *impl_;
  {
    std::unique_lock<std::mutex> lock(s.drain_mutex);
    if (s.draining) {  // another caller drains: wait for it
      s.drain_changed.wait(lock, [&] { return s.stopped; });
      return;
    }
    s.draining = true;
  }
  // Every admitted request runs to its end, then its response is written.
  s.batcher.close();
  {
    std::unique_lock<std::mutex> lock(s.drain_mutex);
    s.drain_changed.wait(lock, [&] { return s.active_responses == 0; });
  }
  s.http.stop();
  {
    std::lock_guard<std::mutex> lock(s.drain_mutex);
    s.stopped = true;
  }
  s.drain_changed.notify_all();
}

std::string HttpServer::metrics_text() const { return impl_->metrics(); }

}  // namespace perfmem::sida
