// tests/onnx/ort_run.js — runs exported ONNX models in ONNX Runtime (the npm package
// onnxruntime-node, CPU), for the tests in this directory.
//
// usage: node ort_run.js REQUEST.json   (NODE_PATH or the working directory finds onnxruntime-node)
// The request is {"runs": [RUN...], "greedy": [GREEDY...]} and the answer, written to
// REQUEST.json's "answer" path, is {"runs": [{OUTPUT: {"dims": [...], "file": PATH}}...],
// "greedy": [[[token...] per row]...]}.
//   RUN:    {"model": PATH, "feeds": {NAME: {"type": "int64"|"float32", "dims": [...], "file": PATH}},
//            "fetches": [NAME...], "out": PREFIX}; each fetched tensor is written as raw
//            little-endian float32 to PREFIX.NAME.bin.
//   GREEDY: {"encoder": PATH, "decoder": PATH, "src": FEED, "steps": N, "bos": ID}: the encoder
//            once, then N decoder calls over the growing prefix [bos, t1, ...], each appending the
//            arg-max (lowest id on ties) of the last position's logits, for every row.
"use strict";
const fs = require("fs");
const ort = require("onnxruntime-node");

function readFeed(feed) {
  const bytes = fs.readFileSync(feed.file);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const data = feed.type === "int64" ? new BigInt64Array(buffer) : new Float32Array(buffer);
  return new ort.Tensor(feed.type, data, feed.dims);
}

async function run(request) {
  const session = await ort.InferenceSession.create(request.model);
  const feeds = {};
  for (const [name, feed] of Object.entries(request.feeds)) feeds[name] = readFeed(feed);
  const results = await session.run(feeds, request.fetches);
  const answer = {};
  for (const name of request.fetches) {
    const file = `${request.out}.${name}.bin`;
    const t = results[name];
    fs.writeFileSync(file, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    answer[name] = { dims: t.dims.map(Number), file };
  }
  return answer;
}

async function greedy(request) {
  const encoder = await ort.InferenceSession.create(request.encoder);
  const decoder = await ort.InferenceSession.create(request.decoder);
  const src = readFeed(request.src);
  const { memory } = await encoder.run({ src });
  const rows = request.src.dims[0];
  const prefixes = Array.from({ length: rows }, () => [request.bos]);
  for (let step = 0; step < request.steps; ++step) {
    const length = step + 1;
    const ids = new BigInt64Array(rows * length);
    for (let r = 0; r < rows; ++r) for (let t = 0; t < length; ++t) ids[r * length + t] = BigInt(prefixes[r][t]);
    const { logits } = await decoder.run({ src, memory, tgt_in: new ort.Tensor("int64", ids, [rows, length]) });
    const vocab = logits.dims[2];
    for (let r = 0; r < rows; ++r) {
      const last = (r * length + length - 1) * vocab;
      let best = 0;
      for (let v = 1; v < vocab; ++v) if (logits.data[last + v] > logits.data[last + best]) best = v;
      prefixes[r].push(best);
    }
  }
  return prefixes.map((p) => p.slice(1));
}

async function main() {
  const request = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const answer = { runs: [], greedy: [] };
  for (const r of request.runs || []) answer.runs.push(await run(r));
  for (const g of request.greedy || []) answer.greedy.push(await greedy(g));
  fs.writeFileSync(request.answer, JSON.stringify(answer));
}

main().catch((e) => {
  console.error(`ort_run.js: ${e.stack || e}`);
  process.exit(1);
});
