#include "app/attention_page.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace attnlab::cli {

namespace {

// Text for an HTML element's content.
std::string escape_html(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

constexpr const char* kStyle = R"(
body { font-family: sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 8px; }
.controls { margin: 8px 0 12px; }
.controls label { margin-right: 14px; }
.sentence { font-size: 13px; color: #555; margin: 2px 0; }
svg text { font-size: 12px; font-family: sans-serif; }
#thumbs { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 14px; }
#thumbs figure { margin: 0; cursor: pointer; text-align: center; font-size: 11px; }
#thumbs figure.chosen svg { outline: 2px solid #d33; }
)";

// Reads the data, draws the chosen map, keeps the fragment in step with the controls.
constexpr const char* kScript = R"(
const data = JSON.parse(document.getElementById('attention-data').textContent);
const kinds = [...new Set(data.maps.map(m => m.kind))];
const state = { kind: kinds[0], layer: 0, head: 'avg' };
for (const part of decodeURIComponent(location.hash.slice(1)).split('&')) {
  const [k, v] = part.split('=');
  if (k === 'kind' && kinds.includes(v)) state.kind = v;
  if (k === 'layer' && /^[0-9]+$/.test(v)) state.layer = Number(v);
  if (k === 'head' && (v === 'avg' || /^[0-9]+$/.test(v))) state.head = v === 'avg' ? 'avg' : Number(v);
}
const $ = id => document.getElementById(id);
const NS = 'http://www.w3.org/2000/svg';
function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function mapsOfKind() { return data.maps.filter(m => m.kind === state.kind); }
function current() {
  const maps = mapsOfKind();
  state.layer = Math.min(state.layer, maps.length - 1);
  return maps[state.layer];
}
// probs of one head, or the mean over heads, as rows × cols.
function matrix(m, head) {
  const out = [];
  for (let i = 0; i < m.row_count; ++i) {
    const row = [];
    for (let j = 0; j < m.col_count; ++j) {
      if (head === 'avg') {
        let s = 0;
        for (let h = 0; h < m.heads; ++h) s += m.probs[(h * m.row_count + i) * m.col_count + j];
        row.push(s / m.heads);
      } else {
        row.push(m.probs[(head * m.row_count + i) * m.col_count + j]);
      }
    }
    out.push(row);
  }
  return out;
}
// Darker for more probability, scaled to the largest in the heatmap (rows spread over many
// keys would otherwise all look pale); the exact value is in each cell's title and data-p.
function colour(p, peak) {
  const t = Math.max(0, Math.min(1, p / peak));
  return 'rgb(' + Math.round(255 - 225 * t) + ',' + Math.round(255 - 170 * t) + ',' + Math.round(255 - 60 * t) + ')';
}
function heatmap(svg, m, head, cell, labels) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const rows = data[m.rows + '_tokens'], cols = data[m.cols + '_tokens'];
  const left = labels ? 110 : 2, top = labels ? 90 : 2;
  svg.setAttribute('width', left + cell * m.col_count + 4);
  svg.setAttribute('height', top + cell * m.row_count + 4);
  const p = matrix(m, head);
  const peak = Math.max(1e-6, ...p.map(row => Math.max(...row)));
  for (let i = 0; i < m.row_count; ++i)
    for (let j = 0; j < m.col_count; ++j) {
      const r = el('rect', { x: left + j * cell, y: top + i * cell, width: cell, height: cell, fill: colour(p[i][j], peak) }, svg);
      if (labels) {
        r.setAttribute('class', 'cell');
        r.setAttribute('data-row', i);
        r.setAttribute('data-col', j);
        r.setAttribute('data-p', p[i][j].toFixed(4));
        el('title', {}, r).textContent = rows[i] + ' → ' + cols[j] + ': ' + p[i][j].toFixed(3);
      }
    }
  if (!labels) return;
  rows.forEach((t, i) => {
    const e = el('text', { x: left - 6, y: top + i * cell + cell * 0.65, 'text-anchor': 'end', class: 'row-token' }, svg);
    e.textContent = t;
  });
  cols.forEach((t, j) => {
    const x = left + j * cell + cell * 0.6, y = top - 6;
    const e = el('text', { x: x, y: y, transform: 'rotate(-60 ' + x + ' ' + y + ')', class: 'col-token' }, svg);
    e.textContent = t;
  });
}
function option(select, value, text, chosen) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text;
  o.selected = chosen;
  select.appendChild(o);
}
function render() {
  const m = current();
  if (state.head !== 'avg' && state.head >= m.heads) state.head = 'avg';
  const kind = $('kind'), layer = $('layer'), head = $('head');
  kind.innerHTML = layer.innerHTML = head.innerHTML = '';
  kinds.forEach(k => option(kind, k, k, k === state.kind));
  mapsOfKind().forEach((_, l) => option(layer, l, 'layer ' + (l + 1), l === state.layer));
  option(head, 'avg', 'average of ' + m.heads + ' heads', state.head === 'avg');
  for (let h = 0; h < m.heads; ++h) option(head, h, 'head ' + (h + 1), state.head === h);
  $('caption').textContent = state.kind + ', layer ' + (state.layer + 1) + ', ' +
      (state.head === 'avg' ? 'average of ' + m.heads + ' heads' : 'head ' + (state.head + 1)) + ' (' + m.node + ')';
  const cell = Math.max(14, Math.min(34, Math.floor(640 / Math.max(m.row_count, m.col_count))));
  heatmap($('heatmap'), m, state.head, cell, true);
  const thumbs = $('thumbs');
  thumbs.innerHTML = '';
  for (let h = 0; h < m.heads; ++h) {
    const f = document.createElement('figure');
    f.className = state.head === h ? 'chosen' : '';
    heatmap(el('svg', { class: 'thumb' }, f), m, h, 5, false);
    const c = document.createElement('figcaption');
    c.textContent = 'head ' + (h + 1);
    f.appendChild(c);
    f.onclick = () => { state.head = h; update(); };
    thumbs.appendChild(f);
  }
  document.body.setAttribute('data-rendered', state.kind + '|' + state.layer + '|' + state.head);
}
function update() {
  history.replaceState(null, '', '#kind=' + encodeURIComponent(state.kind) + '&layer=' + state.layer + '&head=' + state.head);
  render();
}
$('kind').onchange = e => { state.kind = e.target.value; state.layer = 0; update(); };
$('layer').onchange = e => { state.layer = Number(e.target.value); update(); };
$('head').onchange = e => { state.head = e.target.value === 'avg' ? 'avg' : Number(e.target.value); update(); };
render();
)";

}  // namespace

std::string attention_page(const AttentionPage& page) {
  nlohmann::json data = {{"src_tokens", page.src_tokens}, {"tgt_tokens", page.tgt_tokens}, {"maps", nlohmann::json::array()}};
  for (const AttentionMap& m : page.maps) {
    nlohmann::json probs = nlohmann::json::array();
    // Four decimals are enough for a heatmap and keep the page small.
    for (const float p : m.probs) probs.push_back(std::round(static_cast<double>(p) * 1e4) / 1e4);
    data["maps"].push_back({{"kind", m.kind}, {"layer", m.layer}, {"node", m.node}, {"rows", m.rows}, {"cols", m.cols},
                            {"heads", m.heads}, {"row_count", m.row_count}, {"col_count", m.col_count}, {"probs", probs}});
  }
  std::string json = data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (size_t at = json.find("</"); at != std::string::npos; at = json.find("</", at + 3)) json.replace(at, 2, "<\\/");
  auto join = [](const std::vector<std::string>& tokens) {
    std::string s;
    for (const std::string& t : tokens) s += (s.empty() ? "" : " ") + t;
    return s;
  };
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + escape_html(page.title) +
         "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n<h1>" + escape_html(page.title) + "</h1>\n" +
         "<p class=\"sentence\">source: " + escape_html(join(page.src_tokens)) + "</p>\n" +
         "<p class=\"sentence\">target: " + escape_html(join(page.tgt_tokens)) + "</p>\n" +
         "<div class=\"controls\"><label>attention <select id=\"kind\"></select></label>"
         "<label>layer <select id=\"layer\"></select></label><label>head <select id=\"head\"></select></label></div>\n"
         "<div id=\"caption\"></div>\n<svg id=\"heatmap\" xmlns=\"http://www.w3.org/2000/svg\"></svg>\n<div id=\"thumbs\"></div>\n"
         "<script type=\"application/json\" id=\"attention-data\">" + json + "</script>\n<script>" + kScript +
         "</script>\n</body>\n</html>\n";
}

}  // namespace attnlab::cli
