#!/usr/bin/env bash
# The out-of-tree plugin workflow of docs/plugins.md, end to end: install attnlab into a temporary
# prefix, build docs/example-plugin against it with find_package(attnlab), then load the plugin
# with `attnlab plugins --plugin-path`, run its gradient-check examples with the installed
# `attnlab gradcheck`, count a model's parameters with it and export a model using it to ONNX,
# as the page says.
# usage: build_example_plugin.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
source=$2
. "$(dirname "$0")/install_and_build.sh" "$1" "$source/docs/example-plugin" -DCMAKE_BUILD_TYPE=Release
test -f "$work/plugin-build/libattnlab_plugin_squared_relu.so"

# The installed executable finds the installed plugins, and the example through --plugin-path.
"$work/prefix/bin/attnlab" plugins --plugin-path "$work/plugin-build" --json > "$work/plugins.json"
grep -q '"name":"ffn.squared_relu","outputs":\[{"doc":"\[..., d_model\]","name":"y","optional":false}\],"plugin":"libattnlab_plugin_squared_relu.so"' "$work/plugins.json"
grep -q '"plugin":"libattnlab_plugin_basic.so"' "$work/plugins.json"

# Its gradient-check examples pass the installed `attnlab gradcheck`, the command docs/plugins.md gives.
"$work/prefix/bin/attnlab" gradcheck --plugin-path "$work/plugin-build" ffn.squared_relu > "$work/gradcheck.log" ||
  { cat "$work/gradcheck.log"; exit 1; }
grep -qx 'ok   ffn_squared_relu__tokens' "$work/gradcheck.log" || { cat "$work/gradcheck.log"; exit 1; }
grep -q ' 0 failed$' "$work/gradcheck.log"

# The page's params command works on the installed experiments, from the install prefix.
(cd "$work/prefix/share/attnlab" &&
  "$work/prefix/bin/attnlab" params experiments/transformer_base.attn --plugin-path "$work/plugin-build" \
    --use ffn=ffn.squared_relu > "$work/params.txt") || { cat "$work/params.txt"; exit 1; }
grep -q 'ffn' "$work/params.txt"

# Its ONNX lowering (docs/plugins.md): a model with the example in its ffn slot exports.
cp "$work/prefix/share/attnlab/experiments/transformer_base.attn" "$work/"
cat > "$work/tiny.attn" <<'EXPERIMENT'
experiment tiny {
  model = "transformer_base.attn" with { layers = 1, d_model = 16, d_ff = 32, heads = 2 }
  data  = synthetic(train: 100, dev: 10, test: 10, seed: 3)
  train { adam(0.9, 0.98, 1e-9), noam(warmup: 10), batch_tokens: 256, max_steps: 1, valid_every: 0, checkpoint_every: 0 }
}
EXPERIMENT
"$work/prefix/bin/attnlab" run "$work/tiny.attn" --out "$work/run" --threads 1 --plugin-path "$work/plugin-build" \
  --use ffn=ffn.squared_relu > "$work/run.log" 2>&1 || { cat "$work/run.log"; exit 1; }
"$work/prefix/bin/attnlab" export --checkpoint "$work/run" --format onnx --out "$work/tiny.onnx" \
  --plugin-path "$work/plugin-build" 2> "$work/export.log" || { cat "$work/export.log"; exit 1; }
test -s "$work/tiny.onnx"
test -s "$work/tiny.decoder.onnx"
echo "example plugin built out of tree, loaded, gradient-checked and exported to ONNX"
