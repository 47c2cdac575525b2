// Real DyNet implementations of the benchmark workloads (dynet_workloads.h).
#include "dynet_workloads.h"

#include <cmath>

#include <dynet/dynet.h>
#include <dynet/expr.h>
#include <dynet/init.h>
#include <dynet/lstm.h>
#include <dynet/model.h>

namespace perfmem::acrobat::dynet_bench {

namespace dy = dynet;

const char* dynet_mode_name(DynetMode mode) {
  switch (mode) {
    case DynetMode::kNone: return "none";
    case DynetMode::kAgenda: return "agenda";
    case DynetMode::kDepth: return "depth";
  }
  return "?";
}

void initialize_dynet() {
  static bool done = false;
  if (done) return;
  dy::DynetParams params;
  params.random_seed = 1;  // the random initialisers run, but every value is overwritten below
  params.autobatch = 0;
  dy::initialize(params);
  done = true;
}

namespace {

double glorot(int64_t rows, int64_t cols) { return std::sqrt(6.0 / double(rows + cols)); }

// Sets a rows x cols parameter to the workloads' hashed values. DyNet stores matrices
// column-major; the hash index is row-major (k = r * cols + c).
void set_matrix(dy::Parameter p, int64_t tid, int64_t rows, int64_t cols, double scale) {
  std::vector<float> v(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) v[size_t(c * rows + r)] = hashed_parameter(tid, r * cols + c, scale);
  p.set_value(v);
}

dy::Parameter matrix(dy::ParameterCollection& pc, int64_t tid, int64_t rows, int64_t cols, double scale) {
  dy::Parameter p = pc.add_parameters({unsigned(rows), unsigned(cols)});
  set_matrix(p, tid, rows, cols, scale);
  return p;
}

void set_vector(dy::Parameter p, int64_t tid, int64_t n, double scale) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = hashed_parameter(tid, i, scale);
  p.set_value(v);
}

dy::Parameter vector_param(dy::ParameterCollection& pc, int64_t tid, int64_t n, double scale) {
  dy::Parameter p = pc.add_parameters({unsigned(n)});
  set_vector(p, tid, n, scale);
  return p;
}

// A lookup table of n vectors of size d: element (w, j) has k = w * d + j.
dy::LookupParameter vector_table(dy::ParameterCollection& pc, int64_t tid, int64_t n, int64_t d, double scale) {
  dy::LookupParameter p = pc.add_lookup_parameters(unsigned(n), {unsigned(d)});
  std::vector<float> v(static_cast<size_t>(d));
  for (int64_t w = 0; w < n; ++w) {
    for (int64_t j = 0; j < d; ++j) v[size_t(j)] = hashed_parameter(tid, w * d + j, scale);
    p.initialize(unsigned(w), v);
  }
  return p;
}

// A lookup table of n matrices h x h: element (w, r, c) has k = (w * h + r) * h + c; each
// matrix column-major as DyNet stores it.
dy::LookupParameter matrix_table(dy::ParameterCollection& pc, int64_t tid, int64_t n, int64_t h, double scale) {
  dy::LookupParameter p = pc.add_lookup_parameters(unsigned(n), {unsigned(h), unsigned(h)});
  std::vector<float> v(static_cast<size_t>(h * h));
  for (int64_t w = 0; w < n; ++w) {
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < h; ++c) v[size_t(c * h + r)] = hashed_parameter(tid, (w * h + r) * h + c, scale);
    p.initialize(unsigned(w), v);
  }
  return p;
}

// DyNet's VanillaLSTMBuilder (1 layer, input H, hidden H, forget bias 1.0) with the
// workloads' Wx, Wh, b (gate rows i, f, o, g, as the builder orders them).
struct Lstm {
  dy::VanillaLSTMBuilder builder;
  Lstm(dy::ParameterCollection& pc, int64_t h, int64_t tid_wx, int64_t tid_wh, int64_t tid_b)
      : builder(1, unsigned(h), unsigned(h), pc, /*ln_lstm=*/false, /*forget_bias=*/1.0f) {
    auto& ps = builder.params[0];  // {x2i, h2i, bi}
    set_matrix(ps[0], tid_wx, 4 * h, h, glorot(4 * h, h));
    set_matrix(ps[1], tid_wh, 4 * h, h, glorot(4 * h, h));
    set_vector(ps[2], tid_b, 4 * h, 0.1);
  }
};

// Runs the graph: every instance's logits concatenated (instance-major), forward under `mode`.
void forward_all(dy::ComputationGraph& cg, const std::vector<dy::Expression>& logits, DynetMode mode,
                 std::vector<float>* out) {
  dy::autobatch_flag = static_cast<int>(mode);
  dy::Expression y = dy::concatenate(logits);
  *out = dy::as_vector(cg.forward(y));
}

class TreeLstm : public DynetWorkload {
 public:
  explicit TreeLstm(int64_t h)
      : h_(unsigned(h)),
        E_(vector_table(pc_, 1, 1000, h, 1.0)),
        W_iou_(matrix(pc_, 2, 3 * h, h, glorot(3 * h, h))),
        U_iou_(matrix(pc_, 3, 3 * h, h, glorot(3 * h, h))),
        b_iou_(vector_param(pc_, 4, 3 * h, 0.1)),
        W_f_(matrix(pc_, 5, h, h, glorot(h, h))),
        U_f_(matrix(pc_, 6, h, h, glorot(h, h))),
        b_f_(vector_param(pc_, 7, h, 0.1)),
        Wc_(matrix(pc_, 8, 16, h, glorot(16, h))),
        bc_(vector_param(pc_, 9, 16, 0.1)) {}

  void run(const std::vector<Instance>& data, size_t begin, size_t end, DynetMode mode,
           std::vector<float>* out) override {
    dy::ComputationGraph cg;
    dy::Expression W_iou = dy::const_parameter(cg, W_iou_), U_iou = dy::const_parameter(cg, U_iou_),
                   b_iou = dy::const_parameter(cg, b_iou_), W_f = dy::const_parameter(cg, W_f_),
                   U_f = dy::const_parameter(cg, U_f_), b_f = dy::const_parameter(cg, b_f_),
                   Wc = dy::const_parameter(cg, Wc_), bc = dy::const_parameter(cg, bc_);
    std::vector<dy::Expression> logits;
    for (size_t n = begin; n < end; ++n) {
      const auto& nodes = data[n].nodes;
      std::vector<dy::Expression> hs(nodes.size()), cs(nodes.size());
      for (size_t k = 0; k < nodes.size(); ++k) {  // post-order: children first
        const TreeNode& node = nodes[k];
        dy::Expression x = dy::const_lookup(cg, E_, unsigned(node.word));
        dy::Expression iou, c;
        if (node.left < 0) {
          iou = dy::affine_transform({b_iou, W_iou, x});
        } else {
          const dy::Expression &hl = hs[size_t(node.left)], &hr = hs[size_t(node.right)];
          iou = dy::affine_transform({b_iou, W_iou, x, U_iou, hl + hr});
          dy::Expression fx = dy::affine_transform({b_f, W_f, x});  // shared by both forget gates
          dy::Expression fl = dy::logistic(dy::affine_transform({fx, U_f, hl}));
          dy::Expression fr = dy::logistic(dy::affine_transform({fx, U_f, hr}));
          c = dy::cmult(fl, cs[size_t(node.left)]) + dy::cmult(fr, cs[size_t(node.right)]);
        }
        dy::Expression i = dy::logistic(dy::pick_range(iou, 0, h_));
        dy::Expression o = dy::logistic(dy::pick_range(iou, h_, 2 * h_));
        dy::Expression u = dy::tanh(dy::pick_range(iou, 2 * h_, 3 * h_));
        cs[k] = node.left < 0 ? dy::cmult(i, u) : dy::cmult(i, u) + c;
        hs[k] = dy::cmult(o, dy::tanh(cs[k]));
      }
      logits.push_back(dy::affine_transform({bc, Wc, hs.back()}));
    }
    forward_all(cg, logits, mode, out);
  }

 private:
  dy::ParameterCollection pc_;
  unsigned h_;
  dy::LookupParameter E_;
  dy::Parameter W_iou_, U_iou_, b_iou_, W_f_, U_f_, b_f_, Wc_, bc_;
};

class MvRnn : public DynetWorkload {
 public:
  explicit MvRnn(int64_t h)
      : Ev_(vector_table(pc_, 1, 1000, h, 1.0)),
        EM_(matrix_table(pc_, 2, 1000, h, glorot(h, h))),
        W_(matrix(pc_, 3, h, 2 * h, glorot(h, 2 * h))),
        WM_(matrix(pc_, 4, h, 2 * h, glorot(h, 2 * h))),
        Wc_(matrix(pc_, 8, 16, h, glorot(16, h))),
        bc_(vector_param(pc_, 9, 16, 0.1)) {}

  void run(const std::vector<Instance>& data, size_t begin, size_t end, DynetMode mode,
           std::vector<float>* out) override {
    dy::ComputationGraph cg;
    dy::Expression W = dy::const_parameter(cg, W_), WM = dy::const_parameter(cg, WM_),
                   Wc = dy::const_parameter(cg, Wc_), bc = dy::const_parameter(cg, bc_);
    std::vector<dy::Expression> logits;
    for (size_t n = begin; n < end; ++n) {
      const auto& nodes = data[n].nodes;
      std::vector<dy::Expression> vs(nodes.size()), ms(nodes.size());
      for (size_t k = 0; k < nodes.size(); ++k) {  // post-order: left subtree, right subtree, node
        const TreeNode& node = nodes[k];
        if (node.left < 0) {
          vs[k] = dy::const_lookup(cg, Ev_, unsigned(node.word));
          ms[k] = dy::const_lookup(cg, EM_, unsigned(node.word));
          continue;
        }
        const dy::Expression &a = vs[size_t(node.left)], &A = ms[size_t(node.left)];
        const dy::Expression &b = vs[size_t(node.right)], &B = ms[size_t(node.right)];
        vs[k] = dy::tanh(W * dy::concatenate({B * a, A * b}));
        ms[k] = WM * dy::concatenate({A, B});  // rows: [A ; B] is 2h x h
      }
      logits.push_back(dy::affine_transform({bc, Wc, vs.back()}));
    }
    forward_all(cg, logits, mode, out);
  }

 private:
  dy::ParameterCollection pc_;
  dy::LookupParameter Ev_, EM_;
  dy::Parameter W_, WM_, Wc_, bc_;
};

class BiRnn : public DynetWorkload {
 public:
  explicit BiRnn(int64_t h)
      : E_(vector_table(pc_, 1, 1000, h, 1.0)),
        fwd_(pc_, h, 2, 3, 4),
        bwd_(pc_, h, 5, 6, 7),
        Wc_(matrix(pc_, 8, 16, 2 * h, glorot(16, 2 * h))),
        bc_(vector_param(pc_, 9, 16, 0.1)) {}

  void run(const std::vector<Instance>& data, size_t begin, size_t end, DynetMode mode,
           std::vector<float>* out) override {
    dy::ComputationGraph cg;
    fwd_.builder.new_graph(cg, /*update=*/false);
    bwd_.builder.new_graph(cg, /*update=*/false);
    dy::Expression Wc = dy::const_parameter(cg, Wc_), bc = dy::const_parameter(cg, bc_);
    std::vector<dy::Expression> logits;
    for (size_t n = begin; n < end; ++n) {
      const auto& words = data[n].words;
      std::vector<dy::Expression> xs;
      for (int32_t w : words) xs.push_back(dy::const_lookup(cg, E_, unsigned(w)));
      dy::Expression hf, hb;
      fwd_.builder.start_new_sequence();
      for (size_t t = 0; t < xs.size(); ++t) hf = fwd_.builder.add_input(xs[t]);
      bwd_.builder.start_new_sequence();
      for (size_t t = xs.size(); t-- > 0;) hb = bwd_.builder.add_input(xs[t]);
      logits.push_back(dy::affine_transform({bc, Wc, dy::concatenate({hf, hb})}));
    }
    forward_all(cg, logits, mode, out);
  }

 private:
  dy::ParameterCollection pc_;
  dy::LookupParameter E_;
  Lstm fwd_, bwd_;
  dy::Parameter Wc_, bc_;
};

class NestedRnn : public DynetWorkload {
 public:
  explicit NestedRnn(int64_t h)
      : E_(vector_table(pc_, 1, 1000, h, 1.0)),
        inner_(pc_, h, 2, 3, 4),
        outer_(pc_, h, 5, 6, 7),
        Wc_(matrix(pc_, 8, 16, h, glorot(16, h))),
        bc_(vector_param(pc_, 9, 16, 0.1)) {}

  void run(const std::vector<Instance>& data, size_t begin, size_t end, DynetMode mode,
           std::vector<float>* out) override {
    dy::ComputationGraph cg;
    inner_.builder.new_graph(cg, /*update=*/false);
    outer_.builder.new_graph(cg, /*update=*/false);
    dy::Expression Wc = dy::const_parameter(cg, Wc_), bc = dy::const_parameter(cg, bc_);
    std::vector<dy::Expression> logits;
    for (size_t n = begin; n < end; ++n) {
      dy::Expression h_out;
      outer_.builder.start_new_sequence();
      for (const auto& sentence : data[n].sentences) {
        dy::Expression e;
        inner_.builder.start_new_sequence();
        for (int32_t w : sentence) e = inner_.builder.add_input(dy::const_lookup(cg, E_, unsigned(w)));
        h_out = outer_.builder.add_input(e);
      }
      logits.push_back(dy::affine_transform({bc, Wc, h_out}));
    }
    forward_all(cg, logits, mode, out);
  }

 private:
  dy::ParameterCollection pc_;
  dy::LookupParameter E_;
  Lstm inner_, outer_;
  dy::Parameter Wc_, bc_;
};

}  // namespace

std::unique_ptr<DynetWorkload> DynetWorkload::create(const std::string& model, int64_t h) {
  if (model == "treelstm") return std::make_unique<TreeLstm>(h);
  if (model == "mvrnn") return std::make_unique<MvRnn>(h);
  if (model == "birnn") return std::make_unique<BiRnn>(h);
  if (model == "nestedrnn") return std::make_unique<NestedRnn>(h);
  return nullptr;
}

}  // namespace perfmem::acrobat::dynet_bench
