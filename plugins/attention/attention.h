// plugins/attention/attention.h — multi-head attention node types (libattnlab_plugin_attention.so).
//
// One implementation serves the four types; they differ only in how scores are formed and which
// key positions a query may see:
//   attention.scaled_dot     softmax(Q Kᵀ / sqrt(d_k)) V per head (Vaswani et al. 2017, eq. 1)
//   attention.additive       scores vₕᵀ tanh(qᵢ + kⱼ) per head (Bahdanau et al. 2015, eq. 6)
//   attention.grouped_query  kv_heads groups of key/value projections shared by heads/kv_heads
//                            query heads each (Ainslie et al. 2023; kv_heads = 1 is multi-query)
//   attention.local          scaled dot-product restricted to a window of keys around (centred) or
//                            ending at (causal) the query position (Vaswani et al. 2017, section 4)
//
// Ports: query[B,Tq,D], memory[B,Tk,D], optional mask → y[B,Tq,D]. Self-attention connects one
// value to both query and memory. The mask (1 keep, 0 masked; never differentiated) is one of
//   [B,Tk]     key padding (chosen whenever its first dimension equals B),
//   [Tq,Tk]    one row per query (when the first dimension is Tq and not B),
//   [B|1, Tq|1, Tk]  the general broadcastable form.
// A two-dimensional mask whose first dimension equals both B and Tq is read as key padding; pass a
// per-query mask as [1,Tq,Tk] (or use causal:true) to remove the ambiguity.
// A query whose every key is masked gets a zero attention distribution (its output is the output
// bias, or zero).
//
// Positional schemes inside attention (attribute `posenc`, a node type name): attention creates that
// node through the registry and asks it what to do (node/positional.h): nothing (absolute schemes,
// which act on embeddings), a bias added to every score as a function of head, query and key
// position, a rotation of the projected queries and keys, or both. It never compares the name with
// known ones: any node type offering PositionalScheme serves, a type that offers none is refused,
// and the scheme's own check() refuses settings it cannot serve (a rotation needs dot-product scores
// and an even d_k). The scheme's parameters are declared after attention's own, named
// "posenc.NAME"; attribute `posenc_scope` (non-empty) shares them between every attention naming
// the same scope (T5's bias, one per stack). Positions are indices within the query and memory
// sequences (offset by the decode position for queries during incremental decoding). A scheme
// with relative embeddings (Shaw et al. 2018) adds q_i·a_K[r(i,j)]/sqrt(d_k) to the scores and
// Σ_j p_ij a_V[r(i,j)] to each head's output, with the scheme's two tables. A scheme with a
// trainable bias or relative embeddings uses the materialised score kernel (its parameter gradients
// need every score gradient).
//
// shared_qk: keys are projected with the query projection (w_q, b_q; no w_k, b_k), so the scores
// of a head are symmetric in query and key content (the "why separate Q and K" ablation); needs
// kv_heads = heads. score_scale: the dot products are multiplied by 1/sqrt(d_k) ("rsqrt_d_k", the
// paper's choice), 1/d_k ("inv_d_k") or 1 ("none"); dot-product types only.
//
// qk-norm (attribute qk_norm: "layer" or "rms"; Dehghani et al. 2023, section 3.1 uses LayerNorm):
// after projection and bias, each head's query and key vector is normalised over its d_k features,
// y = gain ⊙ (x − μ)/√(σ² + 1e-6) + beta (rms: gain ⊙ x/√(mean(x²) + 1e-6)), with parameters q_gain,
// k_gain [d_k] (ones) and, for "layer", q_beta, k_beta [d_k] (zeros), shared by the heads; then the
// positional rotation, if any. It bounds the logits, which lets attention train at larger learning
// rates. Saved as well: x̂ and 1/σ of every query and key vector.
//
// Saved for backward: projected (and rotated) Q, K, V, the attention probabilities P and the
// concatenated head outputs O. Long sequences (see AttentionConfig::tile) use the tiled kernel
// instead (FlashAttention, Dao et al. 2022): for each block of queries the key/value blocks are
// streamed with a running maximum and sum per row (online softmax), and only the per-row
// log-sum-exp [B,H,Tq] is saved in place of P; backward recomputes each tile's probabilities from
// Q, K and the log-sum-exp, with D_i = rowsum(dO_i ∘ O_i). Saved and workspace memory is then
// linear in the lengths (no [B,H,Tq,Tk] buffer). Both kernels fuse mask, bias and softmax. Backward ADDS into query/memory gradients and ASSIGNS every parameter
// gradient.
//
// Incremental decoding (StepInfo::decode set): the node needs only its cache buffers
//   [0] keys [B,L,kv·d_k]  [1] values [B,L,kv·d_v]  [2] queries [B,Tq,H·d_k]
//   [3] probabilities [B,H,Tq,L]  [4] head outputs [B,Tq,H·d_v]  [5] key mask [B,L]
// with L = max(max_len, Tk). The batch dimension is outermost in every cache, so a beam decoder
// that reorders hypotheses copies whole batch slices. A node whose keys input depends on the
// target (DecodeState::stepwise, the graph's structure) is self-attention: it must be causal (else
// it is refused: its earlier outputs would depend on later positions); each step appends its
// keys/values, and the mask of its new keys ([B, Tk] padding or [B|1, 1, Tk]; a mask varying by
// query is refused) to the caches at DecodeState::position, and its queries attend to every cached
// position up to their own. Otherwise it is cross-attention: memory keys/values are computed at
// position 0 and reused by later steps, with the (fixed or per-step) mask as given.
// attention.local in mode "centred" cannot decode self-attention incrementally (its window reaches
// later positions) and says so.
#pragma once

#include "node/positional.h"
#include "node/registry.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace attnlab::attention {

enum class ScoreKind { Dot, Additive };
enum class WindowMode { Causal, Centred };
enum class QkNorm { None, Layer, Rms };

struct AttentionConfig {
  std::string type;  // the node type name, used in messages
  ScoreKind kind = ScoreKind::Dot;
  int64_t heads = 8;
  int64_t d_k = 64;
  int64_t d_v = 64;
  int64_t kv_heads = 8;  // equals heads except for attention.grouped_query
  bool causal = false;
  bool bias = false;
  QkNorm qk_norm = QkNorm::None;  // normalise each head's query and key vector (attribute qk_norm)
  bool shared_qk = false;         // keys projected with the query weights (attribute shared_qk)
  float score_scale = 1.0f;       // dot products times this (attribute score_scale; 1/sqrt(d_k) by default)
  std::string posenc;        // the node type whose PositionalScheme acts inside attention ("": none)
  std::string posenc_scope;  // non-empty: the scheme's parameters are shared under it
  int64_t window = 0;  // 0: unrestricted; otherwise the number of key positions a query may see
  WindowMode mode = WindowMode::Causal;
  // Score computation for dot-product types (attribute `tile`): 0 chooses from the shapes (tiled
  // when one head's score matrix has at least kTiledFromScores elements), n > 0 always streams
  // n×n tiles, -1 always materialises the score matrix. Additive scores are always materialised.
  int64_t tile = 0;
};

// The automatic choice: a [Tq, Tk] score matrix per (batch, head) of at least this many elements is
// computed in tiles of kDefaultTile × kDefaultTile (queries × keys) instead of materialised.
inline constexpr int64_t kTiledFromScores = 256 * 256;
inline constexpr int64_t kDefaultTile = 128;
// The tiled kernels split their (batch, head, block) tasks over this many chunks, each with its own
// scratch tiles declared by infer(): a constant, so buffers depend on shapes only, never threads.
inline constexpr int64_t kTileChunks = 16;
// qk_norm's epsilon under the square root.
inline constexpr float kQkNormEps = 1e-6f;

// Reads and validates attributes for `type`; throws std::invalid_argument with a message that
// needs no further context beyond the type name the registry prefixes.
AttentionConfig config_from_attrs(const std::string& type, const Attrs& attrs);

// Where mask element (b, i, j) lives: data[b * batch_stride + i * query_stride + j].
struct MaskLayout {
  int64_t batch_stride = 0;
  int64_t query_stride = 0;
};
// Throws ShapeError when `mask` does not broadcast to [B, Tq, Tk].
MaskLayout mask_layout(const Shape& mask, int64_t batch, int64_t queries, int64_t keys);

class AttentionNode : public Node {
 public:
  // Creates the positional scheme named by config.posenc through `registry`; throws
  // std::invalid_argument when it is unknown, offers no PositionalScheme or refuses this attention.
  AttentionNode(AttentionConfig config, const Registry& registry);

  NodeShapes infer(std::span<const Shape> inputs) const override;
  void forward(const ForwardContext& ctx) const override;
  void backward(const BackwardContext& ctx) const override;
  std::vector<Shape> cache_shapes(std::span<const Shape> inputs, int64_t max_len) const override;
  bool lower_onnx(const OnnxLowering& lowering) const override;  // attention_onnx.cpp

  const AttentionConfig& config() const { return config_; }

 private:
  struct Dims {
    int64_t batch, queries, keys, width;
  };
  struct ParamIndex {
    int w_q = 0, w_k = 1, w_v = 2, w_o = 3, v = -1, b_q = -1, b_k = -1, b_v = -1, b_o = -1;
    int q_gain = -1, k_gain = -1, q_beta = -1, k_beta = -1;  // qk_norm
    int scheme = 4;  // the positional scheme's parameters start here
  };
  // Everything the score/softmax/value stage needs for one call.
  struct AttendArgs {
    const float* q;        // [B, Tq, H·d_k]
    const float* k;        // batch b starts at k + b * k_batch_stride; rows of kv·d_k
    int64_t k_batch_stride;
    const float* v;
    int64_t v_batch_stride;
    const float* additive_v;  // [H, d_k] for additive scores
    float* probs;          // [B, H, Tq, Tk]
    float* heads_out;      // [B, Tq, H·d_v]
    const float* mask;     // null: none
    MaskLayout mask_layout;
    int64_t query_offset;  // absolute position of query row 0
    bool causal;
    bool use_mask;
    std::span<const TensorView> scheme_params;  // the positional scheme's parameters
  };

  Dims dims_of(std::span<const Shape> inputs) const;
  // Tile size for these lengths (0: materialise the scores). Depends on shapes and attributes only.
  int64_t tile_for(int64_t queries, int64_t keys) const;
  // Allowed key positions [first, last] for a query at `qpos` before the mask (empty if first > last).
  std::pair<int64_t, int64_t> key_range(int64_t qpos, int64_t keys, bool causal) const;
  void attend_tiled(const AttendArgs& a, int64_t batch, int64_t queries, int64_t keys, int64_t tile, float* lse,
                    float* scratch) const;
  void backward_tiled(const AttendArgs& a, int64_t batch, int64_t queries, int64_t keys, int64_t tile,
                      const float* lse, const float* dO, float* dQ, float* dK, float* dV, float* row_dots,
                      float* scratch) const;
  void backward_scores(const BackwardContext& ctx, const float* dO, float* dS, float* dQ, float* dK, float* dV) const;
  void finish_backward(const BackwardContext& ctx, float* dQ, float* dK, float* dV) const;
  void attend(const AttendArgs& a, int64_t batch, int64_t queries, int64_t keys) const;
  void score_row_softmax(float* row, int64_t keys, int64_t query_pos, int64_t head, const float* mask_row,
                         bool causal, std::span<const TensorView> scheme_params) const;
  // Rotates (or, inverse, rotates back) `groups` d_k-slices of each row by the row's position,
  // first_position + i, through the positional scheme. A no-op unless the scheme rotates.
  void rotate(float* x, int64_t rows_per_batch, int64_t batch, int64_t batch_stride, int64_t groups,
              int64_t first_position, bool inverse) const;
  std::span<const TensorView> scheme_params(std::span<const TensorView> params) const {
    return params.subspan(pidx_.scheme, scheme_param_count_);
  }
  void forward_decode(const ForwardContext& ctx) const;
  // qk_norm on `rows` rows of `groups` d_k-vectors at x (in place), with the query's or the key's
  // gain and bias; x̂ and 1/σ go to xhat and rstd when given (forward for training).
  void normalise(float* x, int64_t rows, int64_t groups, std::span<const TensorView> params, bool keys, float* xhat,
                 float* rstd) const;
  // Its backward: dx (in place, the gradient of the normalised vectors becomes that of the raw
  // ones) and ASSIGNS the gain (and bias) gradients.
  void normalise_backward(float* dx, int64_t rows, int64_t groups, const float* xhat, const float* rstd,
                          std::span<const TensorView> params, std::span<const TensorView> grads, bool keys) const;

  AttentionConfig config_;
  ParamIndex pidx_;
  int64_t group_size_;            // query heads per key/value head
  NodeHandle scheme_node_;        // the node named by config.posenc (keeps its library loaded)
  const PositionalScheme* scheme_ = nullptr;
  PositionalScheme::Effects effects_;
  AttentionGeometry geometry_;
  size_t scheme_param_count_ = 0;
  bool relative_ = false;         // the scheme offers relative embeddings (Shaw et al. 2018)
  bool trainable_bias_ = false;   // a score bias with parameters, or relative embeddings: the
                                  // materialised kernel only
};

}  // namespace attnlab::attention
