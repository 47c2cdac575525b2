#include "perfmem/sida/batcher.h"

#include <algorithm>

#include "perfmem/core/stats.h"
#include "perfmem/sida/predictor.h"
#include "guarded.h"

namespace perfmem::sida {

std::shared_ptr<Job> Job::generation(std::vector<int32_t> tokens, int64_t max_new_tokens,
                                     const SamplingOptions& sampling) {
  auto job = std::make_shared<Job>();
  job->generate = true;
  job->tokens = std::move(tokens);
  job->max_new_tokens = max_new_tokens;
  job->sampling = sampling;
  return job;
}

std::shared_ptr<Job> Job::encoding(std::vector<int32_t> tokens) {
  auto job = std::make_shared<Job>();
  job->generate = false;
  job->tokens = std::move(tokens);
  return job;
}

namespace {

// Marks a job finished (with `status` when it failed) and wakes its client; false when it was
// finished already.
bool finish(Job& job, Status status = Status::Ok()) {
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    if (job.finished) return false;
    job.finished = true;
    job.status = std::move(status);
    job.done = Job::Clock::now();
  }
  job.changed.notify_all();
  return true;
}

using internal::guarded;

}  // namespace

// A window: its jobs and, with the prefetch policy, the predicted routes and the store's plan.
struct Batcher::Window {
  std::vector<std::shared_ptr<Job>> jobs;
  std::vector<Predictor::Routes> routes;  // per job, when planned
  std::vector<int32_t> accesses;
};

Result<std::unique_ptr<Batcher>> Batcher::create(const ModelWeights& model, ExpertStore& store,
                                                 const Predictor* predictor, BatcherOptions options) {
  if (store.policy() == Policy::kPrefetch && !predictor)
    return Status(StatusCode::kInvalidInput,
                  "the prefetch policy needs a predictor (--predictor DIR, made by `sida train-predictor`)");
  if (options.replace_router && !predictor)
    return Status(StatusCode::kInvalidInput, "router replacement needs a predictor (--predictor DIR)");
  if (predictor) PERFMEM_RETURN_IF_ERROR(check_predictor_fits(predictor->config(), model, "the predictor"));
  if (options.replace_router) {
    PERFMEM_RETURN_IF_ERROR(check_router_replacement(model, *predictor, options.replace_top_k));
    // The predictions load (prefetch) at least the experts a replaced token goes to.
    options.plan_top_k =
        std::max(options.plan_top_k, replaced_experts_per_token(model.config(), options.replace_top_k));
  }
  options.window = std::max<size_t>(1, options.window);
  options.max_queue = std::max<size_t>(1, options.max_queue);
  return std::unique_ptr<Batcher>(new Batcher(model, store, predictor, options));
}

Batcher::Batcher(const ModelWeights& model, ExpertStore& store, const Predictor* predictor, BatcherOptions options)
    : model_(model),
      store_(store),
      predictor_(store.policy() == Policy::kPrefetch || options.replace_router ? predictor : nullptr),
      plans_loads_(store.policy() == Policy::kPrefetch),
      options_(options),
      engine_(model, store, options.engine) {
  if (options_.replace_router)
    engine_.set_router_replacement(predicted_router_replacement(model, *predictor_, options_.replace_top_k,
                                                                [this](int32_t sequence) -> const Predictor::Routes& {
                                                                  return *call_routes_[size_t(sequence)];
                                                                }),
                                   replaced_experts_per_token(model.config(), options_.replace_top_k));
  run_ahead_ = std::thread([this] { run_ahead_loop(); });
  inference_ = std::thread([this] { inference_loop(); });
}

Batcher::~Batcher() { close(); }

Batcher::Admission Batcher::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return Admission::kClosed;
    if (queue_.size() >= options_.max_queue) return Admission::kFull;
    job->submitted = Job::Clock::now();
    queue_.push_back(std::move(job));
    stats_.queue_depth = queue_.size();
  }
  changed_.notify_all();
  return Admission::kQueued;
}

void Batcher::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  changed_.notify_all();
  if (run_ahead_.joinable()) run_ahead_.join();
  if (inference_.joinable()) inference_.join();
}

BatcherStats Batcher::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

// Keeps the next window filling while the inference thread is busy: arrivals join the planned
// window until it holds `window` jobs or the inference thread takes it. The predictor runs
// outside the lock, on jobs not yet visible to the inference thread.
void Batcher::run_ahead_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] {
      const bool room = !planned_ || planned_->jobs.size() < options_.window;
      return (!queue_.empty() && room) || (closed_ && queue_.empty());
    });
    if (queue_.empty()) {  // closed and drained
      run_ahead_done_ = true;
      changed_.notify_all();
      return;
    }
    const size_t room = options_.window - (planned_ ? planned_->jobs.size() : 0);
    std::vector<std::shared_ptr<Job>> taken;
    while (!queue_.empty() && taken.size() < room) {
      taken.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    stats_.queue_depth = queue_.size();
    stats_.running += taken.size();
    lock.unlock();
    std::vector<Predictor::Routes> routes;
    double predictor_s = 0;
    if (predictor_) {
      Stopwatch sw;
      for (const auto& job : taken) routes.push_back(predictor_->predict_routes(job->tokens, options_.plan_top_k));
      predictor_s = sw.elapsed_s();
    }
    lock.lock();
    stats_.predictor_s += predictor_s;
    if (!planned_) planned_ = std::make_unique<Window>();
    Window& w = *planned_;
    w.jobs.insert(w.jobs.end(), taken.begin(), taken.end());
    if (predictor_) w.routes.insert(w.routes.end(), routes.begin(), routes.end());
    if (plans_loads_) {
      // The engine runs the window's encoder-only jobs first, then its generations.
      std::vector<Predictor::Routes> encode_routes, generate_routes;
      for (size_t i = 0; i < w.jobs.size(); ++i)
        (w.jobs[i]->generate ? generate_routes : encode_routes).push_back(w.routes[i]);
      const PredictorConfig& pc = predictor_->config();
      w.accesses = accesses_of_routes(encode_routes, pc.num_moe_layers, pc.num_experts, true);
      const auto more = accesses_of_routes(generate_routes, pc.num_moe_layers, pc.num_experts, true);
      w.accesses.insert(w.accesses.end(), more.begin(), more.end());
    }
    changed_.notify_all();
  }
}

void Batcher::inference_loop() {
  while (true) {
    std::unique_ptr<Window> window;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return planned_ || run_ahead_done_; });
      if (!planned_) return;
      window = std::move(planned_);
    }
    changed_.notify_all();  // the run-ahead thread may start the next window
    Stopwatch sw;
    run_window(*window);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.busy_s += sw.elapsed_s();
    stats_.running -= window->jobs.size();
    ++stats_.windows;
  }
}

void Batcher::run_window(Window& window) {
  if (plans_loads_) store_.set_upcoming(window.accesses);
  std::vector<Job*> encodes, generations;
  std::vector<const Predictor::Routes*> encode_routes, generate_routes;  // replacement mode
  uint64_t cancelled = 0, prompt_tokens = 0;
  const auto now = Job::Clock::now();
  for (size_t i = 0; i < window.jobs.size(); ++i) {
    const auto& job = window.jobs[i];
    if (job->cancelled) {
      finish(*job);
      ++cancelled;
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(job->mutex);
      job->started = now;
    }
    prompt_tokens += job->tokens.size();
    (job->generate ? generations : encodes).push_back(job.get());
    if (options_.replace_router) (job->generate ? generate_routes : encode_routes).push_back(&window.routes[i]);
  }
  uint64_t failed = 0, generated = 0;
  auto fail_all = [&](const std::vector<Job*>& jobs, const Status& status) {
    for (Job* job : jobs)
      if (finish(*job, status)) ++failed;
  };
  if (!encodes.empty()) {
    std::vector<std::vector<int32_t>> batch;
    for (Job* job : encodes) batch.push_back(job->tokens);
    call_routes_ = encode_routes;
    auto enc = guarded([&] { return engine_.encode_window(batch); });
    if (!enc.ok()) {
      fail_all(encodes, enc.status());
    } else {
      for (size_t i = 0; i < encodes.size(); ++i) {
        {
          std::lock_guard<std::mutex> lock(encodes[i]->mutex);
          encodes[i]->encoder_hidden = std::move((*enc)[i].hidden);
        }
        finish(*encodes[i]);
      }
    }
  }
  if (!generations.empty()) {
    std::vector<std::vector<int32_t>> batch;
    std::vector<GenerateOptions> options;
    for (Job* job : generations) {
      batch.push_back(job->tokens);
      GenerateOptions g;
      g.max_new_tokens = job->max_new_tokens;
      g.sampling = job->sampling;
      options.push_back(g);
    }
    const SwitchConfig& config = model_.config();
    auto on_token = [&](size_t i, int32_t token) {
      Job& job = *generations[i];
      bool done = false;
      {
        std::lock_guard<std::mutex> lock(job.mutex);
        job.generated.push_back(token);
        if (job.generated.size() == 1) job.first_token = Job::Clock::now();
        job.stopped_by_end_id = config.is_generation_eos(token);
        done = job.stopped_by_end_id || int64_t(job.generated.size()) >= job.max_new_tokens;
      }
      ++generated;
      if (done) finish(job);
      job.changed.notify_all();
      return !done && !job.cancelled;
    };
    call_routes_ = generate_routes;
    auto gen = guarded([&] { return engine_.generate_window(batch, options, on_token); });
    if (!gen.ok()) {
      fail_all(generations, gen.status());
    } else {
      // Every job that ran to its end was finished in on_token; the others were cancelled.
      for (Job* job : generations) {
        if (finish(*job)) ++cancelled;
      }
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.jobs_done += window.jobs.size() - failed - cancelled;
  stats_.jobs_cancelled += cancelled;
  stats_.jobs_failed += failed;
  stats_.prompt_tokens += prompt_tokens;
  stats_.generated_tokens += generated;
}

}  // namespace perfmem::sida
