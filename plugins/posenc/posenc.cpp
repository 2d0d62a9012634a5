// plugins/posenc/posenc.cpp — positional encodings on embeddings (libattnlab_plugin_posenc.so).
//
// Contract: every type maps x[B,S,D] → y[B,S,D].
//   posenc.sinusoidal  y = x + PE, PE(p, 2i) = sin(p / 10000^(2i/D)), PE(p, 2i+1) = cos(same angle)
//                      (Vaswani et al. 2017, section 3.5); no parameters.
//   posenc.learned     y = x + table[p], param table[max_len, D] (Gehring et al. 2017); an input
//                      reaching past max_len is an error naming max_len.
//   posenc.none, posenc.rotary, posenc.alibi
//                      y = x. Rotary and ALiBi act inside attention (its `posenc` attribute), so
//                      on embeddings they are the identity; the slot still names the scheme.
// During incremental decoding the position of row s is DecodeState::position + s. Backward ADDS
// dy into dx and ASSIGNS the table gradient (rows beyond the input length get zero).
#include "node/plugin_api.h"

#include <tbb/parallel_for.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace {

using namespace attnlab;

void check_input(std::span<const Shape> in) {
  if (in.size() != 1) throw ShapeError("expects one input x [batch, length, width]");
  if (in[0].size() != 3) throw ShapeError("x must be [batch, length, width], got " + to_string(in[0]));
}

int64_t first_position(const StepInfo& step) { return step.decode ? step.decode->position : 0; }

void add_input_grad(const BackwardContext& ctx) {
  if (ctx.input_grads.empty() || !ctx.input_grads[0].present()) return;
  ctx.input_grads[0].flat() += ctx.output_grads[0].flat();
}

// posenc.none / posenc.rotary / posenc.alibi on embeddings.
class IdentityPosenc : public Node {
 public:
  explicit IdentityPosenc(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override {
    check_input(in);
    return {{in[0]}, {}, {}, {}};
  }
  void forward(const ForwardContext& ctx) const override { ctx.outputs[0].copy_from(ctx.inputs[0]); }
  void backward(const BackwardContext& ctx) const override { add_input_grad(ctx); }
};

class SinusoidalPosenc : public Node {
 public:
  explicit SinusoidalPosenc(const Attrs&) {}
  NodeShapes infer(std::span<const Shape> in) const override {
    check_input(in);
    NodeShapes s;
    s.outputs = {in[0]};
    s.workspace = {{in[0][1], in[0][2]}};  // the encoding's rows for these positions
    return s;
  }
  void forward(const ForwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t B = x.dim(0), S = x.dim(1), D = x.dim(2);
    const int64_t offset = first_position(ctx.step);
    const float* in = x.data();
    float* out = ctx.outputs[0].data();
    float* table = ctx.workspace[0].data();
    // Rows are computed in the executor-owned workspace, never in memory allocated here: a
    // steady-state step allocates nothing. Angles in double: positions reach thousands.
    tbb::parallel_for(int64_t{0}, S, [&](int64_t s) {
      const double pos = static_cast<double>(offset + s);
      float* pe = table + s * D;
      for (int64_t d = 0; d < D; ++d) {
        const double inv_freq = std::pow(10000.0, -2.0 * static_cast<double>(d / 2) / static_cast<double>(D));
        const double angle = pos * inv_freq;
        pe[d] = static_cast<float>(d % 2 == 0 ? std::sin(angle) : std::cos(angle));
      }
      const Eigen::Map<const Eigen::ArrayXf> row(pe, D);
      for (int64_t b = 0; b < B; ++b)
        Eigen::Map<Eigen::ArrayXf>(out + (b * S + s) * D, D) = Eigen::Map<const Eigen::ArrayXf>(in + (b * S + s) * D, D) + row;
    });
  }
  void backward(const BackwardContext& ctx) const override { add_input_grad(ctx); }
};

class LearnedPosenc : public Node {
 public:
  explicit LearnedPosenc(const Attrs& attrs) : max_len_(attrs.get_int("max_len")) {
    if (max_len_ < 1) throw std::invalid_argument("max_len must be at least 1, got " + std::to_string(max_len_));
  }
  NodeShapes infer(std::span<const Shape> in) const override {
    check_input(in);
    if (in[0][1] > max_len_)
      throw ShapeError("input length " + std::to_string(in[0][1]) + " exceeds max_len " + std::to_string(max_len_));
    NodeShapes s;
    s.outputs = {in[0]};
    s.params = {{"table", {max_len_, in[0][2]}, Init::Normal, 1.0f / std::sqrt(static_cast<float>(in[0][2]))}};
    return s;
  }
  void forward(const ForwardContext& ctx) const override {
    const TensorView& x = ctx.inputs[0];
    const int64_t B = x.dim(0), S = x.dim(1), D = x.dim(2);
    const int64_t offset = first_position(ctx.step);
    if (offset + S > max_len_)
      throw ShapeError("position " + std::to_string(offset + S - 1) + " is beyond max_len " + std::to_string(max_len_));
    const float* table = ctx.params[0].data() + offset * D;
    Eigen::Map<const RowMajorMatrix> P(table, S, D);
    for (int64_t b = 0; b < B; ++b) {
      Eigen::Map<const RowMajorMatrix> X(x.data() + b * S * D, S, D);
      Eigen::Map<RowMajorMatrix>(ctx.outputs[0].data() + b * S * D, S, D) = X + P;
    }
  }
  void backward(const BackwardContext& ctx) const override {
    add_input_grad(ctx);
    const TensorView& dy = ctx.output_grads[0];
    const int64_t B = dy.dim(0), S = dy.dim(1), D = dy.dim(2);
    const TensorView& dtable = ctx.param_grads[0];
    dtable.set_zero();
    Eigen::Map<RowMajorMatrix> G(dtable.data(), S, D);
    for (int64_t b = 0; b < B; ++b) G += Eigen::Map<const RowMajorMatrix>(dy.data() + b * S * D, S, D);
  }

 private:
  int64_t max_len_;
};

NodeSchema schema(std::string name, std::string doc, std::vector<AttrSchema> attrs, std::vector<GradCheckExample> ex) {
  NodeSchema s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.inputs = {{"x", "embeddings [B, S, D]"}};
  s.outputs = {{"y", "embeddings with positions encoded [B, S, D]"}};
  s.attrs = std::move(attrs);
  s.examples = std::move(ex);
  return s;
}

GradCheckExample example(std::string name, Attrs attrs, Shape shape) {
  GradCheckExample e;
  e.name = std::move(name);
  e.attrs = std::move(attrs);
  e.inputs = {CheckInput::real(std::move(shape))};
  return e;
}

}  // namespace

ATTNLAB_PLUGIN(registrar) {
  registrar.add<SinusoidalPosenc>(schema("posenc.sinusoidal", "adds the fixed sine/cosine encoding (Vaswani et al. 2017)", {},
                                         {example("even_width", {}, {2, 5, 6}), example("odd_width", {}, {1, 3, 5})}));
  registrar.add<LearnedPosenc>(schema(
      "posenc.learned", "adds a learned embedding per position",
      {{"max_len", AttrType::Int, AttrValue{int64_t{1024}}, "longest input accepted (rows of the table)"}},
      {example("shorter_than_table", {{"max_len", AttrValue{int64_t{7}}}}, {2, 4, 3}),
       example("full_table", {{"max_len", AttrValue{int64_t{3}}}}, {2, 3, 4})}));
  registrar.add<IdentityPosenc>(schema("posenc.none", "no positional information (identity)", {},
                                       {example("identity", {}, {2, 3, 4})}));
  registrar.add<IdentityPosenc>(schema("posenc.rotary",
                                       "rotary encoding: identity on embeddings; attention rotates q and k when its "
                                       "posenc attribute is posenc.rotary",
                                       {}, {example("identity", {}, {2, 3, 4})}));
  registrar.add<IdentityPosenc>(schema("posenc.alibi",
                                       "ALiBi: identity on embeddings; attention adds a linear distance bias when its "
                                       "posenc attribute is posenc.alibi",
                                       {}, {example("identity", {}, {2, 3, 4})}));
}
