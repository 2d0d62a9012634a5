#!/usr/bin/env bash
# A positional scheme that acts inside attention, built out of tree against the installed package
# (tests/plugin_sdk/probe_posenc: posenc.probe, a learned score bias by clipped distance), then, with
# the installed attnlab and no change to the attention plugin:
#   1. `attnlab gradcheck posenc.probe`: its parameters' gradients through every attention type, and
#      incremental decoding against the full pass with the scheme inside attention;
#   2. `attnlab run --use posenc=posenc.probe`: a tiny translation model trains (the loss falls and
#      the checkpoint holds the scheme's parameters) and decodes its test set;
#   3. `attnlab translate` decodes with the trained checkpoint.
# usage: build_probe_posenc.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
source=$2
. "$(dirname "$0")/install_and_build.sh" "$1" "$source/tests/plugin_sdk/probe_posenc"  # no build type given
plugin_dir="$work/plugin-build"
attnlab="$work/prefix/bin/attnlab"
test -f "$plugin_dir/libattnlab_plugin_probe_posenc.so"
# No build type was given: attnlab_add_plugin made it a Release build.
grep -qx 'CMAKE_BUILD_TYPE:STRING=Release' "$plugin_dir/CMakeCache.txt"

# 1. Gradient and decode checks through the installed command.
"$attnlab" gradcheck --plugin-path "$plugin_dir" posenc.probe > "$work/gradcheck.log" || { cat "$work/gradcheck.log"; exit 1; }
for name in posenc_probe__identity attention_scaled_dot__causal_attribute__with_posenc_probe \
            attention_additive__cross_key_padding_bias__with_posenc_probe \
            attention_grouped_query__tiled_causal_padding__with_posenc_probe \
            attention_scaled_dot__decodes_incrementally__with_posenc_probe \
            attention_local__decodes_incrementally__with_posenc_probe; do
  grep -qx "ok   $name" "$work/gradcheck.log" || { echo "missing: ok   $name"; cat "$work/gradcheck.log"; exit 1; }
done
grep -q " 0 failed$" "$work/gradcheck.log"

# 2. Training and decoding with the scheme in every attention of the model.
mkdir -p "$work/exp"
cp "$source/experiments/transformer_base.attn" "$work/exp/"
cat > "$work/exp/tiny.attn" <<'ATTN'
experiment tiny {
  model = "transformer_base.attn" with { layers = 1, d_model = 16, d_ff = 32, heads = 2 }
  data  = synthetic(train: 300, dev: 20, test: 20, seed: 3)
  seed  = 5
  train {
    adam(0.9, 0.98, 1e-9), noam(factor: 2.0, warmup: 10), label_smoothing: 0.1, dropout: 0.1,
    batch_tokens: 256, max_steps: 40, valid_every: 0, checkpoint_every: 0, valid_bleu_sentences: 20
  }
}
ATTN
"$attnlab" run "$work/exp/tiny.attn" --plugin-path "$plugin_dir" --use posenc=posenc.probe --threads 1 \
  --out "$work/run" > "$work/run.log" 2>&1 || { cat "$work/run.log"; exit 1; }
python3 - "$work/run" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
train = [e for e in events if e["event"] == "train"]
test = [e for e in events if e["event"] == "test"]
assert len(train) >= 2, "no training steps logged"
assert train[-1]["loss"] < 0.8 * train[0]["loss"], f"loss did not fall: {train[0]['loss']} -> {train[-1]['loss']}"
assert test and "bleu" in test[-1], "the test set was not decoded"
print(f"loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}, test BLEU {test[-1]['bleu']}")
PY
# The scheme's parameters are the model's: one [heads, 2·clip + 1] table in each of the three
# attention nodes (2 · 5 · 3 = 30 more than without a scheme), trained into the checkpoint.
count() {
  "$attnlab" params "$work/exp/transformer_base.attn" --plugin-path "$plugin_dir" --use "posenc=$1" \
    --set layers=1 --set d_model=16 --set d_ff=32 --set heads=2 --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])'
}
test $(( $(count posenc.probe) - $(count posenc.none) )) -eq 30
ls "$work/run/checkpoints/"step-*.ckpt > /dev/null
grep -aq 'posenc.bias' $(ls "$work/run/checkpoints/"step-*.ckpt | tail -1)

# 3. The trained checkpoint decodes through the translate command.
echo "der hund sieht die katze" | "$attnlab" translate --checkpoint "$work/run" --plugin-path "$plugin_dir" \
  > "$work/translation.txt" 2> "$work/translate.log" || { cat "$work/translate.log"; exit 1; }
test -s "$work/translation.txt"
echo "positional scheme built out of tree: gradient- and decode-checked, trained and decoded"
