// Times the reference tokenizer (@lenml/tokenizers, the tokenizers part of transformers.js) on a
// corpus (one JSON string per line), encode only (loading excluded), one thread (JavaScript).
// usage: node bench/tokenize_ref.mjs NODE_MODULES MODEL_DIR CORPUS.jsonl
// prints: "ref: BYTES bytes TOKENS tokens S s (C CPU s): X MB/s, Y MB per CPU s" (CPU: node's own, GC included)
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [nm, dir, corpus] = process.argv.slice(2);
const { TokenizerLoader } = await import(pathToFileURL(`${nm}/@lenml/tokenizers/dist/main.mjs`).href);
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8")),
  tokenizerConfig: JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")),
});
const docs = readFileSync(corpus, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
let bytes = 0;
for (const d of docs) bytes += Buffer.byteLength(d);
const c0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
let n = 0;
for (const d of docs) n += tok.encode(d, { add_special_tokens: false }).length;
const s = Number(process.hrtime.bigint() - t0) / 1e9;
const c = process.cpuUsage(c0);
const cpu = (c.user + c.system) / 1e6;
console.log(`ref: ${bytes} bytes ${n} tokens ${s.toFixed(3)} s (${cpu.toFixed(3)} CPU s): ${(bytes / 1e6 / s).toFixed(3)} MB/s, ${(bytes / 1e6 / cpu).toFixed(3)} MB per CPU s`);
