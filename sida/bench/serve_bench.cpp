#include "serve_bench.h"

#include <httplib.h>

#include <atomic>
#include <cmath>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "count_option.h"
#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/stats.h"
#include "perfmem/core/svg.h"
#include "perfmem/sida/serve.h"

namespace perfmem::sida {
namespace {

struct Target {
  std::string label, host;
  int port = 0;
};

Result<Target> parse_target(const std::string& text) {
  const size_t eq = text.find('=');
  const std::string scheme = "http://";
  const size_t at = eq == std::string::npos ? eq : text.find(scheme, eq + 1);
  if (eq == std::string::npos || at != eq + 1) return input_error("--server", "value", "label=http://host:port", text);
  const std::string rest = text.substr(at + scheme.size());
  const size_t colon = rest.rfind(':');
  Target t{text.substr(0, eq), rest.substr(0, colon), 0};
  if (colon != std::string::npos) t.port = std::atoi(rest.c_str() + colon + 1);
  if (t.label.empty() || t.host.empty() || t.port <= 0 || t.port > 65535)
    return input_error("--server", "value", "label=http://host:port", text);
  return t;
}

struct Point {
  double offered = 0, achieved = 0;
  size_t ok = 0, failed = 0;
  Summary latency_ms;
};

// Open-loop arrivals at `rate` per second: each request on its own thread and connection, sent
// at its arrival time whatever the earlier ones are doing.
Point run_rate(const Target& target, double rate, const std::vector<Request>& requests, const ServeBenchOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(rate);
  std::vector<double> latencies(requests.size(), -1);
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  double at = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    std::this_thread::sleep_until(start + std::chrono::duration<double>(at));
    threads.emplace_back([&, i] {
      httplib::Client client(target.host, target.port);
      client.set_read_timeout(600);
      const Json body = o.encoder_only ? Json{{"input", requests[i]}, {"pooling", "mean"}}
                                       : Json{{"prompt", requests[i]}, {"max_tokens", o.max_tokens}};
      Stopwatch sw;
      auto res = client.Post(o.encoder_only ? "/v1/encode" : "/v1/completions", body.dump(), "application/json");
      if (res && res->status == 200) latencies[i] = sw.elapsed_ms();
    });
    at += gap(rng);
  }
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Point p;
  p.offered = rate;
  std::vector<double> ok;
  for (double l : latencies)
    if (l >= 0) ok.push_back(l);
  p.ok = ok.size();
  p.failed = requests.size() - ok.size();
  p.achieved = wall > 0 ? double(p.ok) / wall : 0;
  p.latency_ms = summarize(ok);
  return p;
}

}  // namespace

void add_serve_bench_command(CLI::App& app, ServeBenchOptions& o) {
  o.command = app.add_subcommand(
      "serve-bench", "Throughput and p50/p99 latency of running `sida serve` servers against offered load (req/s)");
  CLI::App* cmd = o.command;
  cmd->add_option("--server", o.servers, "label=http://host:port of a running server (repeat to compare)")->required();
  cmd->add_option("--rates", o.rates, "Offered loads in requests/s, comma-separated")->capture_default_str();
  cmd->add_option("--requests", o.requests, "Requests per rate and server")
      ->capture_default_str()
      ->check(whole_number_in("a number of requests", 1, 100000));
  cmd->add_option("--max-tokens", o.max_tokens, "max_tokens of each completion")
      ->capture_default_str()
      ->check(whole_number_in("a number of tokens", 1, 1 << 20));
  cmd->add_option("--vocab", o.vocab, "Synthetic prompts' ids lie below this (the model's vocabulary)")
      ->capture_default_str()
      ->check(whole_number_in("a vocabulary size", 4, INT32_MAX));
  cmd->add_option("--seed", o.seed, "Seed of the prompts and the arrival times")->capture_default_str();
  cmd->add_flag("--encoder-only", o.encoder_only, "Send /v1/encode requests instead of completions");
  cmd->add_option("--svg", o.svg, "Write latency vs offered load as SVG");
  cmd->add_option("--json", o.json, "Write the results as JSON");
}

int run_serve_bench_command(const CLI::App& app, ServeBenchOptions& o) {
  if (!o.command || !o.command->parsed()) return -1;
  std::vector<double> rates;
  {
    std::string cleaned = o.rates;
    for (char& c : cleaned)
      if (c == ',') c = ' ';
    std::istringstream in(cleaned);
    for (std::string word; in >> word;) {
      char* end = nullptr;
      const double r = std::strtod(word.c_str(), &end);
      if (*end != '\0' || !(r > 0 && r < 1e6))
        return report_failure(app, input_error("--rates", "rate", "positive requests per second", word));
      rates.push_back(r);
    }
  }
  if (rates.empty()) return report_failure(app, input_error("--rates", "rates", "at least one rate", o.rates));
  std::vector<Target> targets;
  for (const std::string& s : o.servers) {
    auto t = parse_target(s);
    if (!t) return report_failure(app, t.status());
    targets.push_back(*t);
  }
  const auto requests = synthetic_requests(o.requests, 10, 60, o.vocab, o.seed);
  LineChart chart;
  chart.title = "latency vs offered load";
  chart.x_label = "offered load (requests/s)";
  chart.y_label = "latency (ms)";
  Json results = Json::array();
  std::cout << "| server | offered req/s | achieved req/s | ok | failed | p50 ms | p99 ms |\n"
               "|---|---:|---:|---:|---:|---:|---:|\n";
  for (const Target& t : targets) {
    Series p50{t.label + " p50", {}}, p99{t.label + " p99", {}};
    for (double rate : rates) {
      const Point p = run_rate(t, rate, requests, o);
      char line[256];
      std::snprintf(line, sizeof line, "| %s | %.2f | %.2f | %zu | %zu | %.1f | %.1f |\n", t.label.c_str(), p.offered,
                    p.achieved, p.ok, p.failed, p.latency_ms.median, p.latency_ms.p99);
      std::cout << line << std::flush;
      p50.points.push_back({rate, p.latency_ms.median});
      p99.points.push_back({rate, p.latency_ms.p99});
      results.push_back({{"server", t.label},
                         {"offered_requests_per_s", p.offered},
                         {"achieved_requests_per_s", p.achieved},
                         {"ok", p.ok},
                         {"failed", p.failed},
                         {"latency_ms", to_json(p.latency_ms)}});
    }
    chart.series.push_back(std::move(p99));
    chart.series.push_back(std::move(p50));
  }
  if (!o.svg.empty())
    if (auto s = write_text_file(o.svg, render_svg(chart)); !s.ok()) return report_failure(app, s);
  if (!o.json.empty())
    if (auto s = write_text_file(o.json, results.dump(2) + "\n"); !s.ok()) return report_failure(app, s);
  return kExitOk;
}

}  // namespace perfmem::sida
