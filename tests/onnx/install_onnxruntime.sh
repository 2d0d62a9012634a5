#!/usr/bin/env bash
# tests/onnx/install_onnxruntime.sh DIR VERSION — installs the npm package onnxruntime-node@VERSION
# (ONNX Runtime's CPU build for Node.js) into DIR/node_modules, once; later calls find it there.
# Exit codes: 0 installed; 77 the npm registry is unreachable (the ONNX Runtime tests skip);
# 1 anything else (npm or node missing, a failed install): the tests fail.
set -u
dir=$1
version=$2
module="$dir/node_modules/onnxruntime-node"
mkdir -p "$dir"
exec 9>"$dir/.install.lock"
flock 9  # tests run in parallel: one installs, the others wait for it
loads() { node -e "const ort = require('$module'); if (ort.env.versions.node !== '$version') process.exit(1)" 2>/dev/null; }
if loads; then exit 0; fi
command -v node >/dev/null || { echo "node not found: install Debian's nodejs and npm (the README's test command does)"; exit 1; }
command -v npm >/dev/null || { echo "npm not found: install Debian's npm (the README's test command does)"; exit 1; }
if ! timeout 120 npm ping >/dev/null 2>&1; then
  echo "the npm registry is unreachable (npm ping failed): onnxruntime-node cannot be installed"
  exit 77
fi
# --ignore-scripts: the package's install script only fetches GPU execution providers (from NuGet);
# the CPU runtime ships inside the package itself.
if ! timeout 1200 npm install --prefix "$dir" --no-audit --no-fund --no-save --ignore-scripts "onnxruntime-node@$version"; then
  echo "npm install onnxruntime-node@$version into $dir failed"
  exit 1
fi
loads || { echo "onnxruntime-node@$version was installed into $dir but does not load in node"; exit 1; }
