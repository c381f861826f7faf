// llama.cpp (through node-llama-cpp's prebuilt CPU binaries) on the same GGUF
// file as umi: prefill and decode speed, or greedy tokens for a prompt.
//   npm install --prefix /tmp/nlc node-llama-cpp
//   node bench/llamacpp_compare.mjs /tmp/nlc MODEL.gguf speed [prompt_tokens] [gen_tokens] [threads]
//   node bench/llamacpp_compare.mjs /tmp/nlc MODEL.gguf greedy IDS(comma) N
// Prints JSON lines.
import path from "node:path";

const [moduleDir, modelPath, mode, ...rest] = process.argv.slice(2);
const { getLlama } = await import(path.join(moduleDir, "node_modules/node-llama-cpp/dist/index.js"));
const llama = await getLlama({ gpu: false, logLevel: "error" });
const model = await llama.loadModel({ modelPath });

if (mode === "greedy") {
  const ids = rest[0].split(",").map(Number);
  const n = Number(rest[1] ?? 32);
  const context = await model.createContext({ contextSize: 1024, threads: 2 });
  const seq = context.getSequence();
  const out = [];
  for await (const token of seq.evaluate(ids, { temperature: 0 })) {
    out.push(token);
    if (out.length >= n) break;
  }
  console.log(JSON.stringify({ engine: "llama.cpp", mode: "greedy", tokens: out, text: model.detokenize(out) }));
} else {
  const promptTokens = Number(rest[0] ?? 512), gen = Number(rest[1] ?? 64), threads = Number(rest[2] ?? 2);
  const context = await model.createContext({ contextSize: promptTokens + gen + 8, threads, batchSize: 512 });
  const seq = context.getSequence();
  const prompt = Array.from({ length: promptTokens }, (_, i) => 1000 + ((i * 7919) % 20000));
  let t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const prefillS = (performance.now() - t0) / 1000;
  await seq.clearHistory();
  // Decode: one prompt token, then `gen` tokens one at a time.
  let count = 0, tFirst = 0;
  t0 = performance.now();
  for await (const token of seq.evaluate([prompt[0]], { temperature: 0 })) {
    if (count === 0) tFirst = performance.now();
    if (++count > gen) break;
  }
  const decodeS = (performance.now() - tFirst) / 1000;
  console.log(JSON.stringify({ engine: "llama.cpp", model: modelPath, threads, prompt_tokens: promptTokens,
    prefill_tok_s: +(promptTokens / prefillS).toFixed(2), decode_tokens: gen, decode_tok_s: +(gen / decodeS).toFixed(2) }));
}
await model.dispose();
