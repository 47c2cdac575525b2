// Text in and out through a checkpoint's SentencePiece model, on Debian's libsentencepiece:
//   Switch Transformers (T5's tokenizer): spiece.model; encoding appends eos;
//   Mixtral (Llama's tokenizer, LlamaTokenizer with legacy=True as Mixtral's checkpoints ship it):
//     tokenizer.model; encoding prepends bos and appends nothing, unless the folder's
//     tokenizer_config.json says otherwise (add_bos_token, add_eos_token).
// Decoding drops bos, eos, unknown and control pieces (skip_special_tokens=True) and ids outside
// the model. Qwen2-MoE's tokenizer is byte-level BPE (tokenizer.json), which is not read: its
// checkpoints take token ids.
//
//   auto tok = perfmem::sida::open_checkpoint_tokenizer("ckpt/", model.config());
//   auto ids = (*tok)->encode("a very good movie");
//   std::string text = (*tok)->decode(generated_ids);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/sida/config.h"

namespace perfmem::sida {

struct TokenizerOptions {
  int32_t bos_id = -1, eos_id = -1;  // -1: none
  bool add_bos = false;              // prepend bos_id when encoding
  bool add_eos = false;              // append eos_id when encoding
};

class Tokenizer {
 public:
  // Errors name the file when it is missing or not a SentencePiece model.
  static Result<std::unique_ptr<Tokenizer>> open(const std::string& model_path, const TokenizerOptions& options);
  // T5's convention: eos appended.
  static Result<std::unique_ptr<Tokenizer>> open(const std::string& model_path, int32_t eos_id = 1) {
    return open(model_path, TokenizerOptions{.eos_id = eos_id, .add_eos = true});
  }
  ~Tokenizer();

  Result<std::vector<int32_t>> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  int32_t vocab_size() const;

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  TokenizerOptions options_;
};

// The SentencePiece file a checkpoint of this family ships: "spiece.model" or "tokenizer.model".
std::string tokenizer_file_name(const SwitchConfig& config);

// The checkpoint's tokenizer with its family's conventions (above). A missing file is an error
// naming it (for Qwen2-MoE, saying that its BPE tokenizer.json is not read and ids are needed).
Result<std::unique_ptr<Tokenizer>> open_checkpoint_tokenizer(const std::string& dir, const SwitchConfig& config);

}  // namespace perfmem::sida
