// core/node/positional.h — what a positional scheme offers the attention that uses it.
//
// A positional node type (family posenc) is a Node on embeddings (`posenc(embed(ids))`) and may
// also act inside attention. Attention names its scheme by the `posenc` attribute, creates that
// node through the registry and asks it, through Node::positional_scheme(), what to do. It never
// compares type names: a scheme built out of tree works exactly like the built-in ones.
//
// Contract:
// - effects() says what the scheme does inside attention: nothing (absolute schemes, which act on
//   embeddings), a bias added to the scores, a rotation of the queries and keys, relative
//   embeddings, or a combination.
// - check(geometry) throws std::invalid_argument, with a message that needs no further context,
//   when the scheme cannot serve this attention (e.g. a rotation needs an even d_k and dot-product
//   scores). Attention calls it once, at construction.
// - params(geometry) declares the parameters the scheme owns. The attention node declares them
//   among its own (local names prefixed "posenc."), so they are stored, initialised, trained and
//   checkpointed like any parameter; with a ParamSpec::scope they are shared by every attention that
//   names the same scope (T5 shares its bias across layers). The spans of params and grads the
//   scheme is handed hold exactly these, in this order.
// - Positions are indices: a query's position is its row in the query sequence plus the decode
//   position during incremental decoding; a key's is its row in the key sequence (the cache index
//   during incremental decoding). The scheme keeps no state between calls: the same arguments give
//   the same result, from any thread.
// - add_score_bias() ADDS bias(head, query_pos, key) to row[j] for the keys first_key + j,
//   j in [0, count). Scores are the scaled dot products (or additive scores), before the softmax.
// - score_bias_backward() ASSIGNS the gradients of the scheme's parameters, given the gradients of
//   the loss with respect to every biased score, score_grads[b, h, i, j] for a [batch, heads,
//   queries, keys] block whose query 0 is at query_offset. A scheme without parameters ignores it.
// - rotate() rotates `vectors` consecutive d_k-sized vectors at x, all at `position`; `inverse`
//   applies the transposed rotation (attention's backward pass). Rotations are orthogonal and carry
//   no parameters.
// - Relative embeddings (Shaw et al. 2018): the scheme's first two parameters are a table of R key
//   vectors [R, d_k] and one of R value vectors [R, d_v], shared by the heads, and
//   relative_index(query_pos, key_pos) ∈ [0, R) picks the row for a query and a key. Attention adds
//   q·a_K · (its score scale) to each score and Σ_j p_ij a_V to each head's output, and computes
//   (ASSIGNS) both tables' gradients itself. Needs dot-product scores.
// - ONNX (optional; node/onnx_lowering.h): what the scheme does inside attention, as operators, for
//   `attnlab export --format onnx`. Each returns the value it built, or "" when it has none (the
//   default), and attention then refuses to export, naming the scheme.
//   lower_score_bias(graph, geometry, offsets, params): offsets is int64 [Tq, Tk], key position
//   minus query position; params are the initializers of params(geometry); returns a float value
//   that broadcasts to [B, heads, Tq, Tk] and is added to the scores.
//   lower_rotation(graph, x, d_k, positions): x is float [B, n, T, d_k], positions int64 [T];
//   returns x rotated as rotate() does.
//   lower_relative_index(graph, offsets): int64 [Tq, Tk], relative_index() of each query and key.
#pragma once

#include "node/node.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace attnlab {

class OnnxBuilder;  // node/onnx_lowering.h

// The attention a scheme serves.
struct AttentionGeometry {
  int64_t heads = 1;         // query heads
  int64_t d_k = 1;           // query/key size per head
  int64_t d_v = 1;           // value size per head
  bool dot_product = true;   // scores are dot products of queries and keys (false: additive scores)
};

class PositionalScheme {
 public:
  struct Effects {
    bool score_bias = false;  // add_score_bias() is used
    bool rotation = false;    // rotate() is used
    bool relative_embeddings = false;  // relative_index() and the two tables of params() are used
  };

  virtual ~PositionalScheme() = default;

  virtual Effects effects() const = 0;
  virtual void check(const AttentionGeometry&) const {}
  virtual std::vector<ParamSpec> params(const AttentionGeometry&) const { return {}; }

  virtual void add_score_bias(std::span<const TensorView> /*params*/, const AttentionGeometry&, int64_t /*head*/,
                              int64_t /*query_pos*/, int64_t /*first_key*/, int64_t /*count*/, float* /*row*/) const {}
  virtual void score_bias_backward(std::span<const TensorView> /*params*/, std::span<const TensorView> /*grads*/,
                                   const AttentionGeometry&, const float* /*score_grads*/, int64_t /*batch*/,
                                   int64_t /*queries*/, int64_t /*keys*/, int64_t /*query_offset*/) const {}
  virtual void rotate(float* /*x*/, int64_t /*vectors*/, int64_t /*d_k*/, int64_t /*position*/,
                      bool /*inverse*/) const {}
  virtual int64_t relative_index(int64_t /*query_pos*/, int64_t /*key_pos*/) const { return 0; }

  virtual std::string lower_score_bias(OnnxBuilder& /*graph*/, const AttentionGeometry&, const std::string& /*offsets*/,
                                       std::span<const std::string> /*params*/) const {
    return {};
  }
  virtual std::string lower_rotation(OnnxBuilder& /*graph*/, const std::string& /*x*/, int64_t /*d_k*/,
                                     const std::string& /*positions*/) const {
    return {};
  }
  virtual std::string lower_relative_index(OnnxBuilder& /*graph*/, const std::string& /*offsets*/) const { return {}; }
};

}  // namespace attnlab
