// Compares spillway's tokenizer with the reference (@lenml/tokenizers, the tokenizers part of
// transformers.js) on a corpus: every document's ids must be equal, and the decoded text too.
// usage: node tok_ref.mjs NODE_MODULES MODEL_DIR CORPUS.jsonl OURS.txt [add_special 0|1]
//   OURS.txt: per document "id id id<TAB>decoded-text-as-JSON" (spillway tokenize --jsonl).
// Exit 0 when all match, 1 with the first mismatch printed.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [nm, dir, corpusPath, oursPath, addArg] = process.argv.slice(2);
const add = addArg === "1";
const { TokenizerLoader } = await import(pathToFileURL(`${nm}/@lenml/tokenizers/dist/main.mjs`).href);
// transformers.js runs the Split regexes as JavaScript RegExps, whose \s also matches U+FEFF (and
// other characters outside Unicode White_Space); Hugging Face's tokenizers runs them with Oniguruma,
// whose \s is exactly White_Space. The reference gets the same patterns with \s and \S spelled out
// as Oniguruma's class, so it follows the Rust library (docs/tokenizer.md).
const ONIG_S = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
function onigSpaces(re) {
  let out = "", inClass = false;
  for (let i = 0; i < re.length; i++) {
    const c = re[i];
    if (c === "\\" && i + 1 < re.length) {
      const d = re[i + 1];
      if (d === "s") out += inClass ? ONIG_S : `[${ONIG_S}]`;
      else if (d === "S" && !inClass) out += `[^${ONIG_S}]`;
      else if (d === "S") throw new Error(`tok_ref: \\S inside a class in ${re}`);
      else out += c + d;
      i++;
      continue;
    }
    if (c === "[" && !inClass) inClass = true;
    else if (c === "]" && inClass) inClass = false;
    out += c;
  }
  return out;
}
function patchSplits(node) {
  if (Array.isArray(node)) node.forEach(patchSplits);
  else if (node && typeof node === "object") {
    if (node.type === "Split" && node.pattern && typeof node.pattern.Regex === "string") node.pattern.Regex = onigSpaces(node.pattern.Regex);
    Object.values(node).forEach(patchSplits);
  }
}
const tjson = JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8"));
patchSplits(tjson.pre_tokenizer);
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: tjson,
  tokenizerConfig: JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")),
});
const docs = readFileSync(corpusPath, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const ours = readFileSync(oursPath, "utf8").split("\n");
if (ours.length && ours[ours.length - 1] === "") ours.pop();
if (ours.length !== docs.length) {
  console.log(`FAIL ${dir}: spillway printed ${ours.length} lines for ${docs.length} documents`);
  process.exit(1);
}
let roundtrip = 0, bytes = 0, tokens = 0;
const show = (s) => JSON.stringify(s.length > 300 ? s.slice(0, 300) + "..." : s);
for (let i = 0; i < docs.length; i++) {
  const text = docs[i];
  const ref = tok.encode(text, { add_special_tokens: add });
  const tab = ours[i].indexOf("\t");
  const ourIds = ours[i].slice(0, tab) === "" ? [] : ours[i].slice(0, tab).split(" ").map(Number);
  const ourDec = JSON.parse(ours[i].slice(tab + 1));
  bytes += Buffer.byteLength(text);
  tokens += ref.length;
  if (ref.length !== ourIds.length || ref.some((v, k) => v !== ourIds[k])) {
    let k = 0;
    while (k < ref.length && ref[k] === ourIds[k]) k++;
    console.log(`FAIL ${dir}: document ${i + 1} (corpus line ${i + 1}) ${show(text)}`);
    console.log(`  first difference at token ${k}`);
    console.log(`  reference: [${ref.join(", ")}]`);
    console.log(`  spillway:  [${ourIds.join(", ")}]`);
    console.log(`  reference tokens: ${JSON.stringify(tok.model.convert_ids_to_tokens(ref.slice(Math.max(0, k - 3), k + 5)))}`);
    console.log(`  spillway tokens:  ${JSON.stringify(tok.model.convert_ids_to_tokens(ourIds.slice(Math.max(0, k - 3), k + 5)))}`);
    process.exit(1);
  }
  const refDec = ref.length ? tok.decode(ref, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : "";
  if (refDec !== ourDec) {
    console.log(`FAIL ${dir}: document ${i + 1}: decode differs for ids [${ref.join(", ")}]`);
    console.log(`  reference: ${show(refDec)}`);
    console.log(`  spillway:  ${show(ourDec)}`);
    process.exit(1);
  }
  if (refDec === text) roundtrip++;
}
console.log(`ok ${dir}: ${docs.length} documents, ${bytes} bytes, ${tokens} tokens equal (add_special=${add ? 1 : 0}); ` +
  `decode equal on all, decode(encode(x)) == x on ${roundtrip}`);
