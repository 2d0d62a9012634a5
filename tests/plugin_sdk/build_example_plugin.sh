#!/usr/bin/env bash
# The out-of-tree plugin workflow of docs/plugins.md, end to end: install attnlab into a temporary
# prefix, build docs/example-plugin against it with find_package(attnlab), then load the plugin
# with `attnlab plugins --plugin-path`, run its gradient-check examples with the installed
# `attnlab gradcheck` and count a model's parameters with it, as the page says.
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
echo "example plugin built out of tree, loaded and gradient-checked"
