#!/usr/bin/env bash
# The out-of-tree plugin workflow of docs/plugins.md, end to end: install attnlab into a temporary
# prefix, build docs/example-plugin against it with find_package(attnlab), then load the plugin
# with `attnlab plugins --plugin-path` and run its gradient-check examples.
# usage: build_example_plugin.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source/docs/example-plugin" -B "$work/plugin-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/plugin-build" >/dev/null
test -f "$work/plugin-build/libattnlab_plugin_squared_relu.so"

# The installed executable finds the installed plugins, and the example through --plugin-path.
"$work/prefix/bin/attnlab" plugins --plugin-path "$work/plugin-build" --json > "$work/plugins.json"
grep -q '"name":"ffn.squared_relu","outputs":\[{"doc":"\[..., d_model\]","name":"y","optional":false}\],"plugin":"libattnlab_plugin_squared_relu.so"' "$work/plugins.json"
grep -q '"plugin":"libattnlab_plugin_basic.so"' "$work/plugins.json"

# Its gradient-check examples pass the same registry-driven test as the built-in node types.
ATTNLAB_PLUGIN_PATH="$work/plugin-build" "$build/gradcheck_tests" --gtest_filter='*squared_relu*' > "$work/gradcheck.log"
grep -q '\[  PASSED  \] 2 tests' "$work/gradcheck.log" || { cat "$work/gradcheck.log"; exit 1; }
echo "example plugin built out of tree, loaded and gradient-checked"
