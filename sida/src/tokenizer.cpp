#include "perfmem/sida/tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>

namespace perfmem::sida {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
  std::string path;
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::open(const std::string& model_path, int32_t eos_id) {
  if (!std::filesystem::exists(model_path)) return not_found_error(model_path, "SentencePiece model");
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->impl_->path = model_path;
  t->eos_id_ = eos_id;
  auto status = t->impl_->processor.Load(model_path);
  if (!status.ok()) return input_error(model_path, "contents", "a SentencePiece model", status.ToString());
  return t;
}

Result<std::vector<int32_t>> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  auto status = impl_->processor.Encode(text, &ids);
  if (!status.ok()) return input_error(impl_->path, "encoding the text", "success", status.ToString());
  std::vector<int32_t> out(ids.begin(), ids.end());
  out.push_back(eos_id_);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<int> kept;
  for (int32_t id : ids)
    if (id != eos_id_ && id >= 0 && id < impl_->processor.GetPieceSize() && !impl_->processor.IsControl(id))
      kept.push_back(id);
  std::string text;
  if (!impl_->processor.Decode(kept, &text).ok()) return {};
  return text;
}

int32_t Tokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }

}  // namespace perfmem::sida
