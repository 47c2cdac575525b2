// Text in and out through the checkpoint's SentencePiece model (spiece.model, as shipped with
// Hugging Face's T5 and Switch Transformers checkpoints), on Debian's libsentencepiece.
//
//   auto tok = perfmem::sida::Tokenizer::open("ckpt/spiece.model");
//   auto ids = (*tok)->encode("a very good movie");   // pieces' ids, then eos (1) like T5
//   std::string text = (*tok)->decode(generated_ids);  // pad/eos are dropped
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem::sida {

class Tokenizer {
 public:
  // Errors name the file when it is missing or not a SentencePiece model.
  static Result<std::unique_ptr<Tokenizer>> open(const std::string& model_path, int32_t eos_id = 1);
  ~Tokenizer();

  Result<std::vector<int32_t>> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  int32_t vocab_size() const;

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int32_t eos_id_ = 1;
};

}  // namespace perfmem::sida
