// plugins/basic/embedding.cpp — `embedding` (table lookup) and `embedding.project` (the tied
// pre-softmax projection). Both own a parameter named `weight` of shape [vocab, dim], so nodes
// that share a param_scope share one table.
#include "basic_ops.h"

#include "tensor/gemm.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace attnlab::basic {

namespace {

void require_positive(const Attrs& attrs, const char* type, const char* name) {
  if (attrs.get_int(name) <= 0)
    throw ShapeError(std::string(type) + ": " + name + " must be positive, got " + std::to_string(attrs.get_int(name)));
}

ParamSpec table_spec(int64_t vocab, int64_t dim) {
  return {"weight", {vocab, dim}, Init::Normal, static_cast<float>(1.0 / std::sqrt(static_cast<double>(dim)))};
}

// ---- embedding ----------------------------------------------------------------------------------

class Embedding final : public Node {
 public:
  explicit Embedding(const Attrs& attrs)
      : vocab_(attrs.get_int("vocab")), dim_(attrs.get_int("dim")), scale_(static_cast<float>(attrs.get_float("scale"))) {
    require_positive(attrs, "embedding", "vocab");
    require_positive(attrs, "embedding", "dim");
  }

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs.size() != 1) throw ShapeError("embedding: expects one input (ids), got " + std::to_string(inputs.size()));
    if (inputs[0].empty()) throw ShapeError("embedding: ids must have at least one dimension, got a scalar");
    Shape y = inputs[0];
    y.push_back(dim_);
    return {{y}, {table_spec(vocab_, dim_)}, {}, {}};
  }

  void forward(const ForwardContext& ctx) const override {
    const TensorView& ids = ctx.inputs[0];
    const float* table = ctx.params[0].data();
    float* y = ctx.outputs[0].data();
    const int64_t n = ids.numel();
    // Validate every id first (cheap, serial) so that an error names the first bad position
    // deterministically and no task throws half-way.
    for (int64_t i = 0; i < n; ++i) checked_id(ids.data()[i], vocab_, "embedding", "id", i, "vocab");
    const int64_t dim = dim_;
    const float scale = scale_;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, row_grain(dim)), [&](const tbb::blocked_range<int64_t>& r) {
      for (int64_t i = r.begin(); i < r.end(); ++i) {
        const float* row = table + static_cast<int64_t>(ids.data()[i]) * dim;
        float* out = y + i * dim;
        for (int64_t j = 0; j < dim; ++j) out[j] = scale * row[j];
      }
    });
  }

  // Gather rows by the ids (cast back to integers), times the scale.
  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const std::string ids = g.cast(l.inputs[0], OnnxType::Int64);
    if (scale_ == 1.0f) g.add_node("Gather", {l.params[0], ids}, {l.outputs[0]});
    else g.add_node("Mul", {g.op("Gather", {l.params[0], ids}), g.scalar(scale_)}, {l.outputs[0]});
    return true;
  }

  void backward(const BackwardContext& ctx) const override {
    const TensorView& dW = ctx.param_grads[0];
    if (!dW.present()) return;
    const TensorView& ids = ctx.inputs[0];
    const float* dy = ctx.output_grads[0].data();
    const int64_t n = ids.numel(), dim = dim_;
    const float scale = scale_;
    // ASSIGN: zero the whole table gradient, then scatter-add. Tasks own disjoint column ranges of
    // the table, so no two tasks write the same element and every element's sum is taken in the
    // same (token) order whatever the thread count: the result is deterministic.
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, vocab_, std::max<int64_t>(1, row_grain(dim))),
                      [&](const tbb::blocked_range<int64_t>& r) {
                        std::memset(dW.data() + r.begin() * dim, 0, sizeof(float) * r.size() * dim);
                      });
    const int64_t col_block = 64;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, (dim + col_block - 1) / col_block), [&](const tbb::blocked_range<int64_t>& r) {
      const int64_t c0 = r.begin() * col_block, c1 = std::min(dim, r.end() * col_block);
      for (int64_t i = 0; i < n; ++i) {
        float* row = dW.data() + static_cast<int64_t>(ids.data()[i]) * dim;
        const float* g = dy + i * dim;
        for (int64_t j = c0; j < c1; ++j) row[j] += scale * g[j];
      }
    });
  }

 private:
  int64_t vocab_, dim_;
  float scale_;
};

// ---- embedding.project --------------------------------------------------------------------------

class EmbeddingProject final : public Node {
 public:
  explicit EmbeddingProject(const Attrs& attrs) : vocab_(attrs.get_int("vocab")), dim_(attrs.get_int("dim")) {
    require_positive(attrs, "embedding.project", "vocab");
    require_positive(attrs, "embedding.project", "dim");
  }

  NodeShapes infer(std::span<const Shape> inputs) const override {
    if (inputs.size() != 1)
      throw ShapeError("embedding.project: expects one input (x), got " + std::to_string(inputs.size()));
    if (inputs[0].empty() || inputs[0].back() != dim_)
      throw ShapeError("embedding.project: x's last dimension must be dim = " + std::to_string(dim_) + ", got shape " +
                       to_string(inputs[0]));
    Shape y = inputs[0];
    y.back() = vocab_;
    return {{y}, {table_spec(vocab_, dim_)}, {}, {}};
  }

  void forward(const ForwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t rows = x.numel() / dim_;
    // logits[rows, vocab] = x[rows, dim] · weight[vocab, dim]ᵀ
    gemm(Trans::No, Trans::Yes, rows, vocab_, dim_, 1.0f, x.data(), dim_, ctx.params[0].data(), dim_, 0.0f,
         ctx.outputs[0].data(), vocab_);
  }

  bool lower_onnx(const OnnxLowering& l) const override {
    OnnxBuilder& g = l.graph;
    const std::string table_t = g.op("Transpose", {l.params[0]}, {{"perm", std::vector<int64_t>{1, 0}}});
    g.add_node("MatMul", {l.inputs[0], table_t}, {l.outputs[0]});
    return true;
  }

  void backward(const BackwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const float* dy = ctx.output_grads[0].data();
    const int64_t rows = x.numel() / dim_;
    if (ctx.input_grads[0].present())  // dx += dy[rows, vocab] · weight[vocab, dim]
      gemm(Trans::No, Trans::No, rows, dim_, vocab_, 1.0f, dy, vocab_, ctx.params[0].data(), dim_, 1.0f,
           ctx.input_grads[0].data(), dim_);
    if (ctx.param_grads[0].present())  // dW = dyᵀ[vocab, rows] · x[rows, dim]
      gemm(Trans::Yes, Trans::No, vocab_, dim_, rows, 1.0f, dy, vocab_, x.data(), dim_, 0.0f,
           ctx.param_grads[0].data(), dim_);
  }

 private:
  int64_t vocab_, dim_;
};

}  // namespace

void register_embedding(PluginRegistrar& registrar) {
  const float ids_vocab3[] = {0, 2, 1, 2, 0, 1};
  registrar.add<Embedding>(tight(NodeSchema{
      "embedding",
      "Token embedding: y = scale * weight[id]; weight [vocab, dim], initialised N(0, 1/dim).",
      {{"ids", "token ids [B, S] (integers stored as floats, each in [0, vocab))", false, false}},
      {{"y", "embeddings [B, S, dim]"}},
      {{"vocab", AttrType::Int, std::nullopt, "vocabulary size: rows of the table"},
       {"dim", AttrType::Int, std::nullopt, "embedding width: columns of the table"},
       {"scale", AttrType::Float, 1.0, "factor applied to every looked-up row (the paper uses sqrt(d_model))"}},
      {{"basic", Attrs{{"vocab", int64_t{7}}, {"dim", int64_t{5}}}, {CheckInput::index({2, 3}, 7)}},
       {"scaled", Attrs{{"vocab", int64_t{11}}, {"dim", int64_t{4}}, {"scale", 2.5}}, {CheckInput::index({3, 4}, 11)}},
       // Repeated ids: the table gradient must sum every use of a row.
       {"repeated_ids", Attrs{{"vocab", int64_t{3}}, {"dim", int64_t{6}}},
        {CheckInput::fixed({2, 3}, std::vector<float>(std::begin(ids_vocab3), std::end(ids_vocab3)))}}}}));

  registrar.add<EmbeddingProject>(tight(NodeSchema{
      "embedding.project",
      "Pre-softmax projection through an embedding table: logits = x * weight^T (tie it with `embedding`).",
      {{"x", "activations [..., dim]"}},
      {{"logits", "scores [..., vocab]"}},
      {{"vocab", AttrType::Int, std::nullopt, "vocabulary size: rows of the table"},
       {"dim", AttrType::Int, std::nullopt, "model width: columns of the table"}},
      {{"tied", Attrs{{"vocab", int64_t{9}}, {"dim", int64_t{6}}}, {CheckInput::real({2, 3, 6})}},
       {"rank2", Attrs{{"vocab", int64_t{13}}, {"dim", int64_t{4}}}, {CheckInput::real({5, 4})}},
       // Large enough for gemm() to split the product into tasks.
       {"large", Attrs{{"vocab", int64_t{300}}, {"dim", int64_t{32}}}, {CheckInput::real({4, 64, 32})}}}}));
}

}  // namespace attnlab::basic
