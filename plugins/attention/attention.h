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
// Positional schemes inside attention (attribute `posenc`): posenc.rotary rotates the projected
// queries and keys by their positions; posenc.alibi adds -slopeₕ·|i−j| to the scores; the absolute
// schemes (none, sinusoidal, learned) act on embeddings and do nothing here. attention.additive
// rejects posenc.rotary; posenc.rotary needs an even d_k. Positions are indices within the query and
// memory sequences (offset by the decode position for queries during incremental decoding).
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

#include "node/node.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace attnlab::attention {

enum class ScoreKind { Dot, Additive };
enum class PositionScheme { Absolute, Rotary, Alibi };
enum class WindowMode { Causal, Centred };

struct AttentionConfig {
  std::string type;  // the node type name, used in messages
  ScoreKind kind = ScoreKind::Dot;
  int64_t heads = 8;
  int64_t d_k = 64;
  int64_t d_v = 64;
  int64_t kv_heads = 8;  // equals heads except for attention.grouped_query
  bool causal = false;
  bool bias = false;
  PositionScheme posenc = PositionScheme::Absolute;
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

// The ALiBi slopes for `heads` heads (Press et al. 2022): a geometric sequence starting at
// 2^(-8/n) with ratio 2^(-8/n) for the nearest power of two n ≤ heads, topped up with every other
// slope of the sequence for 2n when heads is not a power of two.
std::vector<float> alibi_slopes(int64_t heads);

class AttentionNode : public Node {
 public:
  explicit AttentionNode(AttentionConfig config);

  NodeShapes infer(std::span<const Shape> inputs) const override;
  void forward(const ForwardContext& ctx) const override;
  void backward(const BackwardContext& ctx) const override;
  std::vector<Shape> cache_shapes(std::span<const Shape> inputs, int64_t max_len) const override;

  const AttentionConfig& config() const { return config_; }

 private:
  struct Dims {
    int64_t batch, queries, keys, width;
  };
  struct ParamIndex {
    int w_q = 0, w_k = 1, w_v = 2, w_o = 3, v = -1, b_q = -1, b_k = -1, b_v = -1, b_o = -1;
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
                         bool causal) const;
  void rotate(float* x, int64_t rows_per_batch, int64_t batch, int64_t batch_stride, int64_t groups,
              int64_t first_position, bool inverse) const;
  void forward_decode(const ForwardContext& ctx) const;

  AttentionConfig config_;
  ParamIndex pidx_;
  int64_t group_size_;            // query heads per key/value head
  std::vector<float> slopes_;     // ALiBi
  std::vector<float> inv_freq_;   // rotary: base^(-2t/d_k)
};

}  // namespace attnlab::attention
