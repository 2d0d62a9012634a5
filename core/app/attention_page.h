// core/app/attention_page.h — the page `attnlab attention` writes: attention probabilities as
// heatmaps in one self-contained HTML file.
//
// Contract:
// - attention_page(page) returns one HTML document with no external reference (no network, no
//   script or style from elsewhere): the data as JSON in a <script type="application/json">
//   element (every "</" written as "<\/", so no token ends the element), a small script, a style.
// - The page shows one heatmap at a time — an SVG with one <rect class="cell"> per (query, key)
//   carrying data-row, data-col and data-p (the probability, 4 decimals; the colour is scaled to
//   the largest probability in the heatmap), the query tokens down
//   the side and the key tokens along the top — and controls to choose the kind of attention
//   (encoder self-attention, decoder self-attention, cross-attention), the layer and the head or
//   the average over heads; below it, one small heatmap per head of the chosen layer (clicking
//   one selects it). The initial choice may be given in the address's fragment:
//   FILE.html#kind=K&layer=L&head=H (H a head index or "avg"), which is also updated on every
//   change, so a view can be linked to.
// - Each AttentionMap holds probs[head][row][col], rows and cols naming which token list is on
//   each axis ("src" or "tgt").
#pragma once

#include <string>
#include <vector>

namespace attnlab::cli {

struct AttentionMap {
  std::string kind;   // "encoder self-attention", "decoder self-attention", "cross-attention"
  int layer = 0;      // 0-based, in graph order within its kind
  std::string node;   // the attention node's name in the graph
  std::string rows, cols;  // "src" or "tgt": the tokens of each axis
  int heads = 0, row_count = 0, col_count = 0;
  std::vector<float> probs;  // heads × rows × cols
};

struct AttentionPage {
  std::string title;
  std::vector<std::string> src_tokens, tgt_tokens;
  std::vector<AttentionMap> maps;
};

std::string attention_page(const AttentionPage& page);

}  // namespace attnlab::cli
