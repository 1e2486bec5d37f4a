// Writes the mixed tokenizer test corpus: one JSON string per line (documents may hold newlines),
// deterministic (seeded), at least MIN_BYTES of UTF-8 text.
// usage: node tests/ref/tok_corpus.mjs OUT.jsonl [MIN_BYTES=1100000] [SEED=12]
import { writeFileSync } from "node:fs";

const out = process.argv[2];
const minBytes = Number(process.argv[3] ?? 1100000);
let seed = Number(process.argv[4] ?? 12) >>> 0;
if (!out) {
  console.error("usage: node tok_corpus.mjs OUT.jsonl [MIN_BYTES] [SEED]");
  process.exit(2);
}

// mulberry32
function rnd() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];
const rep = (n, f) => Array.from({ length: n }, f).join("");

const words = (
  "the of and to in is was that for it with as his on be at by had are but from or have an they which one you were her all she " +
  "there would their we him been has when who will more no if out so said what up its about into than them can only other new some " +
  "could time these two may then do first any my now such like our over man me even most made after also did many before must " +
  "through back years where much your way well down should because each just those people how too little state good very make world " +
  "still own see men work long get here between both life being under never day same another know while last might us great old year " +
  "off come since against go came right used take three tokenizer gradient offload checkpoint optimizer parameter NVMe bandwidth " +
  "internationalization antidisestablishmentarianism Pneumonoultramicroscopicsilicovolcanoconiosis McDonald's O'Neill naïve café résumé"
).split(" ");
const contractions = ["I'm", "you're", "it's", "don't", "CAN'T", "we've", "they'll", "she'd", "IT'S", "Won't", "y'all", "'tis", "rock'n'roll", "o'clock"];
const punct = [".", ",", "!", "?", ";", ":", "...", " -", " —", "\u2014", "\u2026", ")", "\"", "'", "?!", "!!!"];

function sentence() {
  let n = 3 + int(18), s = [];
  for (let i = 0; i < n; i++) {
    let w = rnd() < 0.08 ? pick(contractions) : pick(words);
    if (i === 0) w = w[0].toUpperCase() + w.slice(1);
    if (rnd() < 0.03) w = w.toUpperCase();
    if (rnd() < 0.05) w = "(" + w + ")";
    if (rnd() < 0.04) w = "\"" + w + "\"";
    s.push(w);
    if (rnd() < 0.1) s[s.length - 1] += ",";
  }
  return s.join(" ") + pick(punct);
}
const prose = () => rep(1 + int(6), () => sentence() + (rnd() < 0.2 ? "\n\n" : " ")).trimEnd();

const codeLines = [
  "int main(int argc, char **argv)\n{\n\treturn 0;\n}",
  "def f(x):\n    if x > 0:\n        return x ** 2\n    return -x",
  "for (size_t i = 0; i < n; i++) {\n\t\ta[i] += b[i] * 2.5f;\t// axpy\n\t}",
  "    const x = {a: 1, 'b': [1,2,3], \"c\": null};  \r\n",
  "SELECT name, COUNT(*) FROM users WHERE id>=10 GROUP BY name;",
  "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))",
  "if __name__ == \"__main__\":\n\tmain()\n",
  "x=1;y=2;;z = x+y    # trailing spaces    ",
  "<div class=\"a\">&nbsp;&lt;tag&gt;</div>\n<br/>",
  "$ make -j2 CUDA=0 test 2>&1 | tee log.txt && echo ok || echo FAIL",
  "fn main() { println!(\"{:?}\", vec![1u8; 4]); }",
  "    \t  \t\t    mixed indentation\n\n\n\n",
  "a_b_c __init__ camelCaseName snake_case_name CONSTANT_NAME",
  "https://example.com/path?q=1&r=%20x#frag user@example.org",
];
const code = () => rep(1 + int(4), () => pick(codeLines) + (rnd() < 0.5 ? "\n" : "") + " ".repeat(int(3) ? 0 : int(40)) + (rnd() < 0.3 ? "\t".repeat(1 + int(4)) : ""));

function number() {
  switch (int(8)) {
    case 0: return String(int(1e9));
    case 1: return (rnd() * 1e4).toFixed(int(6));
    case 2: return "1,000,000";
    case 3: return "3.14159265358979323846";
    case 4: return "+1 (555) 123-4567";
    case 5: return "2024-02-29T23:59:60Z";
    case 6: return "0x" + int(2 ** 31).toString(16).toUpperCase();
    default: return rep(1 + int(30), () => String(int(10)));
  }
}
const numbers = () => rep(1 + int(12), () => number() + pick([" ", ", ", "\n", "", " x ", "%", "$"]));

const han = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持音";
const kana = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンー";
function hangul() { return String.fromCodePoint(0xac00 + int(11172)); }
function cjk() {
  let s = "";
  const n = 5 + int(rnd() < 0.1 ? 400 : 60);
  for (let i = 0; i < n; i++) {
    const r = rnd();
    s += r < 0.6 ? pick(han) : r < 0.8 ? pick(kana) : r < 0.93 ? hangul() : pick(["，", "。", "、", "！", "？", "「", "」", "（", "）", " ", "：", "\u3000"]);
  }
  return s;
}

const emojiList = ["😀", "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "❤️", "✨", "🤖", "🧑🏿‍💻", "⚡", "🔥🔥🔥", "☃", "©", "®", "™", "🫠", "🦀", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"];
const emoji = () => rep(1 + int(10), () => pick(emojiList) + pick(["", " ", "  ", "!", "\n"]));

// decomposed forms (NFC composes them), stacked and unusual marks
const combList = [
  "e\u0301", "a\u0300", "n\u0303", "o\u0308", "u\u0308\u0301", "A\u030A", "c\u0327", "\u1100\u1161\u11A8",
  "\u1112\u1161\u11AB", "x\u0301\u0302\u0303\u0304", "\u0301", "\u0928\u093F", "ạ\u0302", "Ω", "\u212B", "\u2126",
  "\u0041\u0328\u0301", "i\u0307", "\u05D0\u05B8", "\u0627\u0653", "\u0915\u093C", "q\u0323\u0307", "\u00E9", "e\u0301\u0301",
  "\u1E0B\u0323", "\u0CBF\u0CD5", "\u0B47\u0B3E", "Z\u0351\u036B\u0343\u036A\u0302\u036B\u033D\u034F\u0334\u0319\u0324",
];
const combining = () => rep(1 + int(15), () => (rnd() < 0.5 ? pick(words) : "") + pick(combList) + pick(["", " ", "s ", "\n"]));

const ctrlList = ["\u0000", "\u0001", "\u0007", "\b", "\u000b", "\f", "\r", "\r\n", "\u001b[31m", "\u001f", "\u007f", "\u0085", "\u200b", "\u200d", "\u2028", "\u2029", "\ufeff", "\u00a0", "\u2003", "\u3000", "\u00ad", "\u202e"];
const controls = () => rep(1 + int(12), () => pick(ctrlList) + (rnd() < 0.6 ? pick(words) : "") + pick(["", " ", "  "]));

// unusual but valid: private use, noncharacters, astral planes, the largest code point, specials
const oddList = ["\ue000", "\uf8ff", "\ufdd0", "\ufffe", "\uffff", "\ufffd", "\u{10FFFF}", "\u{F0000}", "\u{1D518}\u{1D52B}\u{1D526}", "\u{1F3FB}", "\u{E0001}", "\u{2A6D6}", "\u{20000}", "\u{1F9D1}", "\u0600", "\u{1D11E}", "\u02BC", "\u2019", "ǅ", "ﬃ", "Ⅻ", "½", "²", "①", "ｆｕｌｌｗｉｄｔｈ", "ｶﾀｶﾅ", "\u{E0041}"];
const odd = () => rep(1 + int(10), () => pick(oddList) + pick(["", " ", pick(words), "\n"]));

// text that looks like special tokens of the three families (real ones, near misses, nested)
const specList = [
  "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\n", "<|end_of_text|>", "<|reserved_special_token_5|>",
  "<s>", "</s>", "<unk>", "[INST]", "[/INST]", "<<SYS>>\n", "\n<</SYS>>\n\n", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
  "<tool_call>", "<|eot_id", "eot_id|>", "<|eot_id|><|eot_id|>", "<s><s>", " <s> ", "<0x41>", "<0x0A>", "<|im_start|>assistant\n", "<<s>>", "< s >", "<|fim_prefix|>",
  "<|vision_start|>", "[INST]  hello  [/INST]", "▁", "▁▁", "Ġ", "Ċ",
];
const specials = () => rep(1 + int(8), () => pick(specList) + (rnd() < 0.5 ? pick(words) : "") + pick(["", " ", "  ", "\n"]));

const spaces = () => pick(["", " ", "  ", "\n", "\t"]) + " ".repeat(int(200)) + pick(words) + "\n".repeat(int(5)) + " \t".repeat(int(20)) + (rnd() < 0.3 ? "" : " ");

const gens = [prose, prose, prose, code, code, numbers, cjk, cjk, emoji, combining, controls, odd, specials, spaces];
const lines = [];
let bytes = 0;
// fixed edge cases first
for (const s of ["", " ", "  ", "\n", "a", "\u0000", "<s>", " <s>", "<|eot_id|>", "Hello", " Hello", "hello world", "\t\t", "é", "e\u0301"]) {
  lines.push(JSON.stringify(s));
  bytes += Buffer.byteLength(s);
}
while (bytes < minBytes) {
  let s;
  if (rnd() < 0.35) s = rep(2 + int(4), () => pick(gens)() + pick(["", " ", "\n", "  "]));
  else s = pick(gens)();
  lines.push(JSON.stringify(s));
  bytes += Buffer.byteLength(s);
}
writeFileSync(out, lines.join("\n") + "\n");
console.error(`tok_corpus: ${lines.length} documents, ${bytes} bytes of text -> ${out}`);
