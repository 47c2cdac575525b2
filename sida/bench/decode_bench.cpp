// sida_decode_bench: prompt and decode speed of a decoder-only checkpoint at batch 1, every expert
// resident, greedy; the sida half of sida/bench/llama_side_by_side.sh (which runs llama.cpp on the
// same weights and prompt).
//
//   sida_decode_bench CKPT --tokens "1 306 4966 ..." --new-tokens 32 [--half-experts] [--repeat 3]
//
// Timing, per repetition: the prompt time is from the call to the first generated token (the
// prompt's forward pass and the first token's logits); each decode step is the time from one
// generated token to the next. Prompt tokens/s = prompt tokens / prompt time; decode tokens/s =
// (new tokens - 1) / the decode steps' time. The best repetition of each is reported (the
// machine is shared, so the best is the least disturbed), after one untimed warm-up. The output
// is one JSON object on stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "perfmem/core/cli.h"
#include "perfmem/core/json.h"
#include "perfmem/core/thread_pool.h"
#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/expert_store.h"
#include "perfmem/sida/kernels.h"

namespace {

using perfmem::Json;
using perfmem::Result;
using perfmem::Status;
using perfmem::StatusCode;
using Clock = std::chrono::steady_clock;

Result<std::vector<int32_t>> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string cur;
  auto flush = [&]() -> Status {
    if (cur.empty()) return Status::Ok();
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(cur, &used);
    } catch (...) { used = 0; }
    if (used != cur.size() || v < 0 || v > INT32_MAX)
      return Status(StatusCode::kInvalidInput, "--tokens: not a token id: \"" + cur + "\"");
    ids.push_back(int32_t(v));
    cur.clear();
    return Status::Ok();
  };
  for (char ch : text) {
    if (ch == ' ' || ch == ',' || ch == '\n' || ch == '\t') {
      PERFMEM_RETURN_IF_ERROR(flush());
    } else {
      cur += ch;
    }
  }
  PERFMEM_RETURN_IF_ERROR(flush());
  if (ids.empty()) return Status(StatusCode::kInvalidInput, "--tokens: no token ids given");
  return ids;
}

struct Timing {
  double prompt_s = 0, decode_s = 0;
  std::vector<int32_t> ids;
};

Result<Timing> timed_generation(perfmem::sida::Engine& engine, const std::vector<int32_t>& prompt, int64_t new_tokens) {
  Timing t;
  const Clock::time_point start = Clock::now();
  Clock::time_point first;
  perfmem::sida::GenerateOptions options;
  options.max_new_tokens = new_tokens;
  auto gen = engine.generate_window({prompt}, {options}, [&](size_t, int32_t token) {
    if (t.ids.empty()) first = Clock::now();
    t.ids.push_back(token);
    return true;
  });
  const Clock::time_point end = Clock::now();
  if (!gen.ok()) return gen.status();
  t.prompt_s = std::chrono::duration<double>(first - start).count();
  t.decode_s = std::chrono::duration<double>(end - first).count();
  return t;
}

int run(int argc, char** argv) {
  CLI::App app{"Prompt and decode tokens/s of a decoder-only checkpoint, every expert resident, greedy"};
  std::string ckpt, tokens;
  int64_t new_tokens = 32, repeat = 3;
  bool half_experts = false;
  app.add_option("checkpoint", ckpt, "Checkpoint folder (config.json + safetensors)")->required();
  app.add_option("--tokens", tokens, "The prompt: token ids separated by spaces or commas")->required();
  app.add_option("--new-tokens", new_tokens, "Tokens to generate (end ids do not stop it)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  app.add_option("--repeat", repeat, "Timed repetitions (the best is reported)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1000)));
  app.add_flag("--half-experts", half_experts,
               "Keep BF16/F16 experts in their stored type in the fast tier (widened as computed)");
  return perfmem::run_cli(app, argc, argv, [&] {
    auto fail = [&](const Status& s) { return perfmem::report_failure(app, s); };
    auto prompt = parse_ids(tokens);
    if (!prompt.ok()) return fail(prompt.status());
    auto model = perfmem::sida::ModelWeights::load(ckpt);
    if (!model.ok()) return fail(model.status());
    perfmem::sida::StoreOptions store_options;
    store_options.policy = perfmem::sida::Policy::kAllResident;
    store_options.bf16_fast_tier = half_experts;
    auto store = perfmem::sida::ExpertStore::create(**model, store_options);
    if (!store.ok()) return fail(store.status());
    perfmem::sida::Engine engine(**model, **store);

    auto warm = timed_generation(engine, *prompt, 2);  // loads every expert it touches; untimed
    if (!warm.ok()) return fail(warm.status());
    Timing best_prompt, best_decode;
    best_prompt.prompt_s = best_decode.decode_s = 1e300;
    std::vector<int32_t> ids;
    for (int64_t r = 0; r < repeat; ++r) {
      auto t = timed_generation(engine, *prompt, new_tokens);
      if (!t.ok()) return fail(t.status());
      if (int64_t(t->ids.size()) != new_tokens)
        return fail(Status(StatusCode::kInvalidInput,
                           ckpt + ": generation ended at an end id after " + std::to_string(t->ids.size()) +
                               " tokens; give the folder a generation_config.json without eos_token_id"));
      if (!ids.empty() && t->ids != ids)
        return fail(Status(StatusCode::kInternal, "two repetitions generated different ids"));
      ids = t->ids;
      if (t->prompt_s < best_prompt.prompt_s) best_prompt = *t;
      if (t->decode_s < best_decode.decode_s) best_decode = *t;
    }
    const perfmem::sida::SwitchConfig& c = (*model)->config();
    Json j;
    j["engine"] = "sida";
    j["experts"] = half_experts ? "stored 16-bit type" : "f32";
    j["threads"] = int64_t(perfmem::hardware_threads());
    j["layers"] = c.num_decoder_layers;
    j["prompt_tokens"] = int64_t(prompt->size());
    j["new_tokens"] = new_tokens;
    j["prompt_s"] = best_prompt.prompt_s;
    j["decode_s"] = best_decode.decode_s;
    j["prompt_tokens_per_s"] = double(prompt->size()) / best_prompt.prompt_s;
    j["decode_tokens_per_s"] = double(new_tokens - 1) / best_decode.decode_s;
    Json out_ids = Json::array();
    for (int32_t id : ids) out_ids.push_back(int64_t(id));
    j["ids"] = out_ids;
    std::cout << j.dump() << "\n";
    return perfmem::kExitOk;
  });
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
