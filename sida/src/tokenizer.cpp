#include "perfmem/sida/tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>

#include "perfmem/core/json.h"

namespace perfmem::sida {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
  std::string path;
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::open(const std::string& model_path, const TokenizerOptions& options) {
  if (!std::filesystem::exists(model_path)) return not_found_error(model_path, "SentencePiece model");
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->impl_->path = model_path;
  t->options_ = options;
  auto status = t->impl_->processor.Load(model_path);
  if (!status.ok()) return input_error(model_path, "contents", "a SentencePiece model", status.ToString());
  return t;
}

Result<std::vector<int32_t>> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  auto status = impl_->processor.Encode(text, &ids);
  if (!status.ok()) return input_error(impl_->path, "encoding the text", "success", status.ToString());
  std::vector<int32_t> out;
  out.reserve(ids.size() + 2);
  if (options_.add_bos && options_.bos_id >= 0) out.push_back(options_.bos_id);
  out.insert(out.end(), ids.begin(), ids.end());
  if (options_.add_eos && options_.eos_id >= 0) out.push_back(options_.eos_id);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const sentencepiece::SentencePieceProcessor& p = impl_->processor;
  std::vector<int> kept;
  for (int32_t id : ids)
    if (id != options_.eos_id && id != options_.bos_id && id >= 0 && id < p.GetPieceSize() && !p.IsControl(id) &&
        !p.IsUnknown(id))
      kept.push_back(id);
  std::string text;
  if (!p.Decode(kept, &text).ok()) return {};
  return text;
}

int32_t Tokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }

std::string tokenizer_file_name(const SwitchConfig& config) {
  return config.is_decoder_only() ? "tokenizer.model" : "spiece.model";
}

Result<std::unique_ptr<Tokenizer>> open_checkpoint_tokenizer(const std::string& dir, const SwitchConfig& config) {
  const std::string path = dir + "/" + tokenizer_file_name(config);
  if (!config.is_decoder_only()) return Tokenizer::open(path, int32_t(config.eos_token_id));
  if (!std::filesystem::exists(path)) {
    if (std::filesystem::exists(dir + "/tokenizer.json"))
      return not_found_error(path,
                             "SentencePiece model (this checkpoint's tokenizer.json, a byte-level BPE "
                             "tokenizer as Qwen2's, is not read: give token ids)");
    return not_found_error(path, "SentencePiece model");
  }
  // LlamaTokenizer's defaults, then the keys of tokenizer_config.json that change them.
  TokenizerOptions options{.bos_id = int32_t(config.decoder_only.bos_token_id),
                           .eos_id = int32_t(config.eos_token_id),
                           .add_bos = true,
                           .add_eos = false};
  const std::string settings = dir + "/tokenizer_config.json";
  if (std::filesystem::exists(settings)) {
    PERFMEM_ASSIGN_OR_RETURN(Json j, read_json_file(settings));
    PERFMEM_RETURN_IF_ERROR(json_get(j, settings, "add_bos_token", &options.add_bos, /*optional=*/true));
    PERFMEM_RETURN_IF_ERROR(json_get(j, settings, "add_eos_token", &options.add_eos, /*optional=*/true));
  }
  if (options.add_bos && options.bos_id < 0)
    return input_error(dir + "/config.json", "key \"bos_token_id\"",
                       "the id the tokenizer prepends (add_bos_token is true)", "none");
  return Tokenizer::open(path, options);
}

}  // namespace perfmem::sida
