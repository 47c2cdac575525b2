// Continuous batching for a long-running server: requests arrive one by one, wait in a bounded
// queue, and run in windows (Engine::encode_window / generate_window: the window's requests
// advance layer by layer together, each expert acquired once per layer and decoding step).
//
//   perfmem::sida::Batcher batcher(model, *store, predictor.get(), {.window = 8, .max_queue = 64});
//   auto job = perfmem::sida::Job::generate({37, 5, 12, 1}, /*max_new_tokens=*/16);
//   if (batcher.submit(job) != perfmem::sida::Batcher::Admission::kQueued) { /* 503 */ }
//   job->wait_until([&] { return job->finished; });   // or wait for each new token (streaming)
//
// Two threads, as in serve(): the run-ahead thread takes the next window from the queue (as
// soon as one request waits, up to `window` of them), runs the predictor over it (prefetch
// policy) and hands the plan over; the inference thread hands the plan to the store, then runs
// the window. A request that arrives while a window runs joins the next one; the run-ahead
// thread is at most one window ahead, so it plans while the inference thread computes.
// Tokens reach a job as each decoding step ends; a job that finishes (end id or its own
// max_new_tokens) is finished at once, not when its window ends. A cancelled job is dropped
// before its window starts, or leaves its window at the next step.
// In exact mode (the default) the true routers decide, so every job's tokens and encoder states
// are those of Engine::generate({tokens}) / encode({tokens}) (window execution's invariant),
// whatever the window, the other requests, the policy and the budget. With replace_router
// (SiDA's mode) the run-ahead thread's predictions route each job's encoder tokens (a
// decoder-only model's prompt tokens) instead: every job's outputs are then those of
// serve() with the same replacement, again whatever the window and the other requests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/expert_store.h"
#include "perfmem/sida/predictor.h"

namespace perfmem::sida {

// One request and its progress, shared by the client that submitted it and the batcher.
// Fields below `mutex` change under it (notify `changed`); the rest is fixed at submission.
struct Job {
  using Clock = std::chrono::steady_clock;
  bool generate = true;  // false: encoder only
  std::vector<int32_t> tokens;
  int64_t max_new_tokens = 0;
  SamplingOptions sampling;  // greedy by default; sampled from the job's own seeded generator
  Clock::time_point submitted;
  std::atomic<bool> cancelled{false};  // set by the client (disconnect); read by the batcher

  std::mutex mutex;
  std::condition_variable changed;
  std::vector<int32_t> generated;
  std::vector<float> encoder_hidden;  // F32 [tokens, d_model], encoder-only jobs
  bool finished = false;
  bool stopped_by_end_id = false;  // generation ended on an end id (else its max_new_tokens)
  Status status;                   // an engine failure (the job is finished)
  Clock::time_point started, first_token, done;

  static std::shared_ptr<Job> generation(std::vector<int32_t> tokens, int64_t max_new_tokens,
                                         const SamplingOptions& sampling = {});
  static std::shared_ptr<Job> encoding(std::vector<int32_t> tokens);
  void cancel() { cancelled = true; }
  // Waits until `ready()` (checked under the job's mutex) or `timeout`; returns ready().
  template <typename Ready>
  bool wait_for(Ready ready, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, timeout, ready);
  }
};

struct BatcherOptions {
  size_t window = 8;       // most requests per window
  size_t max_queue = 64;   // most requests waiting for a window (beyond: Admission::kFull)
  int64_t plan_top_k = 1;  // experts planned per token and layer (ServeOptions::plan_top_k)
  // SiDA's router replacement (ServeOptions::replace_router, replace_top_k); needs the predictor,
  // under any policy (with prefetch, the same predictions also plan the loads).
  bool replace_router = false;
  int64_t replace_top_k = 1;
  EngineOptions engine;
};

// Counters since start (gauges: queue_depth, running).
struct BatcherStats {
  uint64_t windows = 0, jobs_done = 0, jobs_cancelled = 0, jobs_failed = 0;
  uint64_t prompt_tokens = 0, generated_tokens = 0;
  double predictor_s = 0;  // run-ahead thread time in the predictor
  double busy_s = 0;       // inference thread time running windows
  size_t queue_depth = 0;  // waiting for a window
  size_t running = 0;      // in the window being planned or run
};

class Batcher {
 public:
  // The model, store and predictor (may be null) must outlive the batcher. With the prefetch
  // policy or replace_router the predictor is required (an error otherwise).
  static Result<std::unique_ptr<Batcher>> create(const ModelWeights& model, ExpertStore& store,
                                                 const Predictor* predictor, BatcherOptions options);
  // Closes and drains (see close()).
  ~Batcher();

  enum class Admission { kQueued, kFull, kClosed };
  // Jobs must be valid (ids checked by the caller as Engine does): a window fails as a whole.
  Admission submit(std::shared_ptr<Job> job);
  // No new jobs; returns once every job already admitted is finished and the threads ended.
  void close();
  BatcherStats stats() const;
  const BatcherOptions& options() const { return options_; }
  const ExpertStore& store() const { return store_; }

 private:
  struct Window;
  Batcher(const ModelWeights& model, ExpertStore& store, const Predictor* predictor, BatcherOptions options);
  void run_ahead_loop();
  void inference_loop();
  void run_window(Window& window);

  const ModelWeights& model_;
  ExpertStore& store_;
  const Predictor* predictor_;  // null unless it plans loads (prefetch) or replaces routers
  const bool plans_loads_;      // the prefetch policy: the predictions become the store's plan
  BatcherOptions options_;
  Engine engine_;
  // Replacement mode: the routes of each request of the engine call running (inference thread).
  std::vector<const Predictor::Routes*> call_routes_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::unique_ptr<Window> planned_;  // the run-ahead thread's next window, at most one
  bool closed_ = false, run_ahead_done_ = false;
  BatcherStats stats_;
  std::thread run_ahead_, inference_;
};

}  // namespace perfmem::sida
