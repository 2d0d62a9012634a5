# Sourced by the plugin SDK tests: installs the attnlab of BUILD_DIR into a temporary prefix
# ($work/prefix, removed on exit) and builds the out-of-tree plugin in PLUGIN_SOURCE against it with
# find_package(attnlab), as docs/plugins.md does, into $work/plugin-build; extra arguments go to the
# configure step.
# usage: . install_and_build.sh BUILD_DIR PLUGIN_SOURCE [CMAKE_ARGS...]
set -euo pipefail
build=$1 plugin_source=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$plugin_source" -B "$work/plugin-build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" "$@" >/dev/null
cmake --build "$work/plugin-build" >/dev/null
