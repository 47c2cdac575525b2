// `sida serve`: an HTTP/JSON server in front of the Batcher (continuous batching), on Debian's
// cpp-httplib, in the conventions of OpenAI-compatible model servers.
//
//   perfmem::sida::HttpServer server(model, *batcher, tokenizer.get(), options);
//   auto port = server.bind();               // options.port 0: any free port
//   std::thread stopper([&] { wait_for_sigterm(); server.shutdown(); });
//   server.run();                            // returns after shutdown()
//
// Endpoints:
//   POST /v1/completions  {"prompt": "text" | [ids], "max_tokens": N, "stream": bool}
//       -> {"id", "object": "text_completion", "created", "model", "choices": [{"index": 0,
//          "text", "token_ids", "finish_reason": "stop" | "length", "logprobs": null}],
//          "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}; with "stream": true,
//          server-sent events, one `data: {...}` chunk per generated token (its text delta and
//          id; the last one carries finish_reason and usage), then `data: [DONE]`.
//          Text prompts and "text" need the checkpoint's spiece.model; without it "text" is "".
//   POST /v1/encode       {"input": "text" | [ids], "pooling": "none" | "mean"}
//       -> {"object": "encoding", "model", "tokens", "dimensions", "pooling",
//          "encoder_states": [[...]] (none) or "embedding": [...] (mean over the tokens), "usage"}
//   GET /health           {"status": "ok"}; 503 {"status": "draining"} during shutdown
//   GET /metrics          Prometheus text format (sida_* metrics, see docs/sida.md)
// Errors are JSON {"error": {"message", "type", "param", "code"}} where "param" names the field:
// 400 malformed JSON, wrong types, out-of-vocabulary ids, prompt or max_tokens over the limits;
// 413 body over max_body_bytes; 404 unknown path; 503 with Retry-After when the queue is full or
// the server is draining; 500 when the engine fails (e.g. an expert cannot be read).
// A client that disconnects cancels its request: it leaves the queue, or its window at the next
// decoding step. shutdown() refuses new requests (503), lets every admitted one finish and its
// response be written, then stops listening.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "perfmem/core/status.h"
#include "perfmem/sida/batcher.h"
#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/tokenizer.h"

namespace perfmem::sida {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (bind() returns it)
  std::string model_name = "sida";
  size_t max_body_bytes = 1 << 20;
  int64_t max_prompt_tokens = 512;
  int64_t max_tokens_limit = 256;  // the largest max_tokens a request may ask for
  int64_t default_max_tokens = 16;
  // Handler threads; 0: enough for every request the batcher can hold (queue + two windows)
  // plus some idle keep-alive connections.
  size_t threads = 0;
};

class HttpServer {
 public:
  // The model, batcher and tokenizer (may be null) must outlive the server.
  HttpServer(const ModelWeights& model, Batcher& batcher, const Tokenizer* tokenizer, HttpServerOptions options);
  ~HttpServer();

  // Binds host:port; returns the port (the chosen one for port 0).
  Result<int> bind();
  // Serves until shutdown(); an error when the socket fails.
  Status run();
  // Thread-safe, idempotent: drains (see above) and makes run() return.
  void shutdown();
  // The /metrics text.
  std::string metrics_text() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace perfmem::sida
