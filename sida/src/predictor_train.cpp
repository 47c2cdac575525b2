// The one translation unit that includes LibTorch (its headers take long to compile): the
// predictor's network as a torch::nn::Module, its training, and its forward for tests.
#include "perfmem/sida/predictor_train.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "perfmem/core/progress.h"
#include "perfmem/core/safetensors.h"
#include "perfmem/sida/predictor.h"

namespace perfmem::sida {
namespace {

// Row-wise sparsemax over the last dimension, written with differentiable tensor ops so autograd
// gives its Jacobian: sort descending, the support is the largest k with 1 + k z_(k) > Σ_{j≤k} z_(j),
// tau = (Σ_{j≤k} z_(j) - 1) / k, p = max(z - tau, 0).
torch::Tensor sparsemax_rows(const torch::Tensor& z) {
  const int64_t n = z.size(-1);
  torch::Tensor sorted = std::get<0>(z.sort(-1, /*descending=*/true));
  torch::Tensor cssv = sorted.cumsum(-1) - 1;
  torch::Tensor rank = torch::arange(1, n + 1, z.options());
  torch::Tensor support = (sorted * rank > cssv).to(torch::kLong).sum(-1, /*keepdim=*/true);
  torch::Tensor tau = cssv.gather(-1, support - 1) / support.to(z.scalar_type());
  return torch::clamp_min(z - tau, 0);
}

// Each request's positions reversed within its length, padding left in place: [B, L] indices
// whose gather turns a padded batch right to left and back. A right-to-left LSTM run over the
// reversed rows starts at each request's last token, as the serving forward does, never at padding.
torch::Tensor reversed_positions(const torch::Tensor& real) {
  const int64_t L = real.size(1);
  torch::Tensor length = real.to(torch::kLong).sum(1, /*keepdim=*/true);  // [B, 1]
  torch::Tensor position = torch::arange(L, torch::kLong).unsqueeze(0);   // [1, L]
  return torch::where(position < length, length - 1 - position, position);
}

struct NetImpl : torch::nn::Module {
  explicit NetImpl(const PredictorConfig& c)
      : config(c),
        input(register_module("input", torch::nn::Linear(c.d_model, c.hidden))),
        lstm(c.bidirectional
                 ? nullptr
                 : register_module(
                       "lstm",
                       torch::nn::LSTM(
                           torch::nn::LSTMOptions(c.hidden, c.hidden).num_layers(c.lstm_layers).batch_first(true)))),
        residual(register_module("residual", torch::nn::Linear(c.hidden, c.hidden))) {
    // Bidirectional: one single-layer LSTM per layer and direction ("lstm_l1_reverse"), so the
    // right-to-left one can read each padded request from its own last token (torch's own
    // bidirectional LSTM would start at the padding).
    for (int64_t k = 0; c.bidirectional && k < c.lstm_layers; ++k)
      for (const std::string& suffix : lstm_direction_suffixes(c))
        directed.push_back(
            register_module("lstm_l" + std::to_string(k) + suffix,
                            torch::nn::LSTM(torch::nn::LSTMOptions(c.hidden, lstm_units(c)).batch_first(true))));
    // One Linear(H -> E) per MoE layer, stacked; initialised as torch's Linear is.
    const double bound = 1.0 / std::sqrt(double(c.hidden));
    heads_weight = register_parameter(
        "heads_weight", torch::empty({c.num_moe_layers, c.num_experts, c.hidden}).uniform_(-bound, bound));
    heads_bias =
        register_parameter("heads_bias", torch::empty({c.num_moe_layers, c.num_experts}).uniform_(-bound, bound));
  }

  // x F32 [B, L, d_model], real bool [B, L] (false: padding) -> logits [B, L, M, E]. Padding keys
  // get a score far below any real one, so sparsemax gives them no weight.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& real) {
    const int64_t B = x.size(0), L = x.size(1), M = config.num_moe_layers, E = config.num_experts;
    torch::Tensor u = torch::relu(input(x));
    torch::Tensor o;
    if (config.bidirectional) {
      const torch::Tensor reverse = reversed_positions(real).unsqueeze(2).expand({B, L, config.hidden});
      const torch::Tensor reverse_out = reversed_positions(real).unsqueeze(2).expand({B, L, lstm_units(config)});
      o = u;
      for (size_t k = 0; k < directed.size(); k += 2) {
        torch::Tensor left_to_right = std::get<0>(directed[k](o));
        torch::Tensor right_to_left = std::get<0>(directed[k + 1](o.gather(1, reverse))).gather(1, reverse_out);
        o = torch::cat({left_to_right, right_to_left}, 2);
      }
    } else {
      o = std::get<0>(lstm(u));
    }
    torch::Tensor scores = torch::bmm(o, o.transpose(1, 2)).masked_fill(real.unsqueeze(1).logical_not(), -1e9);
    torch::Tensor a = sparsemax_rows(scores);
    a = a / a.sum(-1, /*keepdim=*/true).clamp_min(1e-12);
    torch::Tensor c = torch::bmm(a, o) + residual(u);
    torch::Tensor logits = torch::matmul(c, heads_weight.view({M * E, config.hidden}).t()) + heads_bias.view({M * E});
    return logits.view({B, L, M, E});
  }

  PredictorConfig config;
  torch::nn::Linear input;
  torch::nn::LSTM lstm;                   // unidirectional: both layers in one module
  std::vector<torch::nn::LSTM> directed;  // bidirectional: layer k's directions at 2k, 2k + 1
  torch::nn::Linear residual;
  torch::Tensor heads_weight, heads_bias;
};
TORCH_MODULE(Net);

// The module's parameter name in the file ("heads_weight" -> "heads.weight"; names of registered
// parameters cannot hold dots; "lstm_l1_reverse.weight_ih_l0" -> "lstm.weight_ih_l1_reverse", the
// name PyTorch's bidirectional LSTM gives it).
std::string file_name_of(const std::string& name) {
  if (name == "heads_weight") return "heads.weight";
  if (name == "heads_bias") return "heads.bias";
  if (name.rfind("lstm_l", 0) == 0) {
    const size_t dot = name.find('.');
    const std::string layer = name.substr(6, dot - 6);                       // "1" or "1_reverse"
    const std::string tensor = name.substr(dot + 1, name.size() - dot - 3);  // "weight_ih_l0" less "l0"
    return "lstm." + tensor + "l" + layer;
  }
  return name;
}

// The embedding rows of the batch's requests, padded: x [B, L, d], real [B, L], and the flat
// indices (b * L + position) of real tokens in request order.
struct Batch {
  torch::Tensor x, real, index;
  torch::Tensor top_logits, top_experts;  // teacher, [N, M, T] (experts as int64)
  int64_t tokens = 0;
};

Batch make_batch(const RoutesDataset& data, const torch::Tensor& embedding, const std::vector<int64_t>& requests) {
  const int64_t B = int64_t(requests.size()), M = data.num_moe_layers, T = data.top;
  int64_t L = 0, N = 0;
  for (int64_t r : requests) {
    const int64_t len = data.offsets[size_t(r + 1)] - data.offsets[size_t(r)];
    L = std::max(L, len);
    N += len;
  }
  torch::Tensor ids = torch::zeros({B * L}, torch::kLong);
  torch::Tensor real = torch::zeros({B * L}, torch::kBool);
  torch::Tensor index = torch::empty({N}, torch::kLong);
  torch::Tensor top_logits = torch::empty({N, M, T}, torch::kFloat);
  torch::Tensor top_experts = torch::empty({N, M, T}, torch::kLong);
  auto ids_a = ids.accessor<int64_t, 1>();
  auto real_a = real.accessor<bool, 1>();
  auto index_a = index.accessor<int64_t, 1>();
  float* tl = top_logits.data_ptr<float>();
  int64_t* te = top_experts.data_ptr<int64_t>();
  int64_t n = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t first = data.offsets[size_t(requests[size_t(b)])];
    const int64_t len = data.offsets[size_t(requests[size_t(b)] + 1)] - first;
    for (int64_t p = 0; p < len; ++p, ++n) {
      ids_a[b * L + p] = data.tokens[size_t(first + p)];
      real_a[b * L + p] = true;
      index_a[n] = b * L + p;
      const size_t at = size_t(first + p) * size_t(M * T);
      std::copy_n(&data.top_logits[at], M * T, tl + n * M * T);
      for (int64_t j = 0; j < M * T; ++j) te[n * M * T + j] = data.top_experts[at + size_t(j)];
    }
  }
  Batch out;
  out.x = embedding.index_select(0, ids).view({B, L, embedding.size(1)});
  out.real = real.view({B, L});
  out.index = index;
  out.top_logits = top_logits;
  out.top_experts = top_experts;
  out.tokens = N;
  return out;
}

// The student's logits of the batch's real tokens: [N, M, E].
torch::Tensor student_logits(Net& net, const Batch& batch) {
  torch::Tensor logits = net->forward(batch.x, batch.real);
  const int64_t B = logits.size(0), L = logits.size(1);
  return logits.view({B * L, logits.size(2), logits.size(3)}).index_select(0, batch.index);
}

// Tokens x layers whose teacher choice is among the student's k best.
int64_t hits(const torch::Tensor& s, const torch::Tensor& teacher_top, int64_t k) {
  torch::Tensor best = std::get<1>(s.topk(std::min<int64_t>(k, s.size(2)), 2));  // [N, M, k]
  return (best == teacher_top.unsqueeze(2)).any(2).sum().item<int64_t>();
}

Status load_into(Net& net, const std::string& dir, const PredictorConfig& config) {
  PERFMEM_ASSIGN_OR_RETURN(auto tensors, read_predictor_tensors(dir, config));
  torch::NoGradGuard no_grad;
  for (auto& item : net->named_parameters()) {
    torch::Tensor& param = item.value();
    auto it = tensors.find(file_name_of(item.key()));
    PERFMEM_CHECK(it != tensors.end(), "read_predictor_tensors returns every parameter");
    PERFMEM_CHECK(int64_t(it->second.size()) == param.numel(), "shapes were validated");
    std::copy(it->second.begin(), it->second.end(), param.data_ptr<float>());
  }
  return Status::Ok();
}

torch::Tensor embedding_of(const ModelWeights& model) {
  // Read only: index_select copies the rows it needs.
  return torch::from_blob(const_cast<float*>(predictor_embedding(model)),
                          {model.config().vocab_size, model.config().d_model}, torch::kFloat);
}

}  // namespace

Result<TrainResult> train_predictor(const ModelWeights& model, const RoutesDataset& data, const TrainOptions& options,
                                    const std::string& dir) {
  const SwitchConfig& mc = model.config();
  PredictorConfig config;
  config.d_model = mc.d_model;
  config.hidden = options.hidden;
  config.bidirectional = options.bidirectional;
  config.num_moe_layers = data.num_moe_layers;
  config.num_experts = data.num_experts;
  config.vocab_size = data.vocab_size;
  if (options.hidden < 1 || options.hidden > 65536)
    return input_error("--hidden", "value", "1 to 65536", std::to_string(options.hidden));
  if (options.bidirectional && options.hidden % 2 != 0)
    return input_error("--hidden", "value", "an even width with --bidirectional (half per direction)",
                       std::to_string(options.hidden));
  if (options.batch < 1) return input_error("--batch", "value", "at least 1", std::to_string(options.batch));
  if (options.epochs < 1) return input_error("--epochs", "value", "at least 1", std::to_string(options.epochs));
  if (!(options.lr > 0) || !std::isfinite(options.lr))
    return input_error("--lr", "value", "a positive number", std::to_string(options.lr));
  if (!(options.lambda >= 0) || !std::isfinite(options.lambda))
    return input_error("--lambda", "value", "a number of at least 0", std::to_string(options.lambda));
  PERFMEM_RETURN_IF_ERROR(check_predictor_fits(config, model, "the routes dataset"));
  std::vector<int64_t> train, validation;
  for (int64_t r = 0; r < data.num_requests(); ++r) (data.validation[size_t(r)] ? validation : train).push_back(r);
  if (train.empty())
    return Status(StatusCode::kInvalidInput, "train-predictor: the routes dataset has no training requests");

  const auto start = std::chrono::steady_clock::now();
  torch::set_num_threads(std::max(options.threads, 1));
  torch::manual_seed(options.seed);
  Net net(config);
  torch::optim::AdamW optimizer(net->parameters(),
                                torch::optim::AdamWOptions(options.lr).weight_decay(options.weight_decay));
  const torch::Tensor embedding = embedding_of(model);
  const int64_t steps_per_epoch = (int64_t(train.size()) + options.batch - 1) / options.batch;
  int64_t total = steps_per_epoch * options.epochs;
  if (options.max_steps >= 0) total = std::min(total, options.max_steps);

  std::mt19937_64 rng(options.seed);
  ProgressBar bar("training predictor", total, stderr, options.show_progress);
  TrainResult result;
  double epoch_loss = 0;
  int64_t epoch_steps = 0, epoch_hits = 0, epoch_cells = 0;
  for (int64_t epoch = 0; epoch < options.epochs && result.steps < total; ++epoch) {
    for (size_t i = train.size(); i > 1; --i) std::swap(train[i - 1], train[size_t(rng() % i)]);  // Fisher-Yates
    epoch_loss = 0;
    epoch_steps = epoch_hits = epoch_cells = 0;
    for (int64_t s = 0; s < steps_per_epoch && result.steps < total; ++s) {
      const auto first = train.begin() + s * options.batch;
      const std::vector<int64_t> ids(first, first + std::min<int64_t>(options.batch, train.end() - first));
      Batch batch = make_batch(data, embedding, ids);
      torch::Tensor student = student_logits(net, batch);  // [N, M, E]
      const int64_t N = student.size(0), M = student.size(1), E = student.size(2);
      torch::Tensor student_top = student.gather(2, batch.top_experts);
      torch::Tensor l1 = (torch::softmax(student_top, 2) - torch::softmax(batch.top_logits, 2)).abs().sum(2).mean();
      torch::Tensor teacher_top = batch.top_experts.select(2, 0);
      torch::Tensor ce =
          torch::nn::functional::cross_entropy(student.reshape({N * M, E}), teacher_top.reshape({N * M}));
      torch::Tensor loss = l1 + options.lambda * ce;
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      ++result.steps;
      ++epoch_steps;
      epoch_loss += loss.item<double>();
      {
        torch::NoGradGuard no_grad;
        epoch_hits += hits(student, teacher_top, 1);
      }
      epoch_cells += N * M;
      char note[96];
      std::snprintf(note, sizeof note, "epoch %lld loss %.4f hit %.1f%%", static_cast<long long>(epoch + 1),
                    epoch_loss / double(epoch_steps), 100.0 * double(epoch_hits) / double(epoch_cells));
      bar.set_note(note);
      bar.advance();
    }
  }
  bar.finish();
  result.final_loss = epoch_steps ? epoch_loss / double(epoch_steps) : 0;
  result.train_hit_top1 = epoch_cells ? double(epoch_hits) / double(epoch_cells) : 0;

  // The validation split, as the predictor would be used.
  result.validation_hit_top1 = result.validation_hit_top3 = std::nan("");
  if (!validation.empty()) {
    torch::NoGradGuard no_grad;
    int64_t h1 = 0, h3 = 0, cells = 0;
    for (size_t first = 0; first < validation.size(); first += size_t(options.batch)) {
      const std::vector<int64_t> ids(
          validation.begin() + long(first),
          validation.begin() + long(std::min(validation.size(), first + size_t(options.batch))));
      Batch batch = make_batch(data, embedding, ids);
      torch::Tensor student = student_logits(net, batch);
      torch::Tensor teacher_top = batch.top_experts.select(2, 0);
      h1 += hits(student, teacher_top, 1);
      h3 += hits(student, teacher_top, 3);
      cells += student.size(0) * student.size(1);
    }
    result.validation_hit_top1 = double(h1) / double(cells);
    result.validation_hit_top3 = double(h3) / double(cells);
  }

  // Save: the tensors under their file names, then the config.
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status(StatusCode::kIoError, dir + ": cannot create the folder: " + ec.message());
  std::vector<torch::Tensor> keep;  // the writer copies nothing until write()
  SafetensorsWriter writer;
  writer.set_metadata("format", kPredictorFormat);
  for (const auto& item : net->named_parameters()) {
    keep.push_back(item.value().detach().contiguous());
    Shape shape(keep.back().sizes().begin(), keep.back().sizes().end());
    writer.add(file_name_of(item.key()), DType::kF32, shape, keep.back().data_ptr<float>());
  }
  PERFMEM_RETURN_IF_ERROR(writer.write(dir + "/" + kPredictorWeightsFile));
  Json training = {{"seed", options.seed},
                   {"epochs", options.epochs},
                   {"steps", result.steps},
                   {"batch", options.batch},
                   {"lr", options.lr},
                   {"weight_decay", options.weight_decay},
                   {"lambda", options.lambda},
                   {"top", data.top},
                   {"training_requests", train.size()},
                   {"validation_requests", validation.size()},
                   {"final_loss", result.final_loss},
                   {"train_hit_top1", result.train_hit_top1}};
  if (!validation.empty()) {
    training["validation_hit_top1"] = result.validation_hit_top1;
    training["validation_hit_top3"] = result.validation_hit_top3;
  }
  PERFMEM_RETURN_IF_ERROR(write_predictor_config(dir, config, training));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

Result<std::vector<std::vector<float>>> torch_predictor_forward(const std::string& dir, const ModelWeights& model,
                                                                const std::vector<std::vector<int32_t>>& requests) {
  PERFMEM_ASSIGN_OR_RETURN(PredictorConfig config, read_predictor_config(dir));
  PERFMEM_RETURN_IF_ERROR(check_predictor_fits(config, model, dir));
  Net net(config);
  PERFMEM_RETURN_IF_ERROR(load_into(net, dir, config));
  torch::NoGradGuard no_grad;
  const int64_t B = int64_t(requests.size());
  int64_t L = 1;
  for (const auto& r : requests) L = std::max(L, int64_t(r.size()));
  // One padded batch, as training runs them: padding must change no request's logits.
  torch::Tensor ids = torch::zeros({B * L}, torch::kLong);
  torch::Tensor real = torch::zeros({B * L}, torch::kBool);
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < requests[size_t(b)].size(); ++t) {
      ids[b * L + int64_t(t)] = int64_t(requests[size_t(b)][t]);
      real[b * L + int64_t(t)] = true;
    }
  torch::Tensor x = embedding_of(model).index_select(0, ids).view({B, L, config.d_model});
  torch::Tensor logits = net->forward(x, real.view({B, L})).contiguous();  // [B, L, M, E]
  const int64_t cell = config.num_moe_layers * config.num_experts;
  std::vector<std::vector<float>> out;
  for (int64_t b = 0; b < B; ++b) {
    const float* first = logits.data_ptr<float>() + b * L * cell;
    out.emplace_back(first, first + int64_t(requests[size_t(b)].size()) * cell);
  }
  return out;
}

}  // namespace perfmem::sida
