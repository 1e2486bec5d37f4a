// Reference tokenizer for the chat tests: @lenml/tokenizers (the tokenizers part of
// transformers.js) on a model's tokenizer.json + tokenizer_config.json.
// usage: NODE_PATH=<npm dir>/node_modules node tok_ref.js MODEL_DIR IN.json OUT.json
// IN.json: a list of strings; OUT.json: their ids, encoded with add_special_tokens false (as
// transformers' apply_chat_template(tokenize=True) does: the template already holds them).
const fs = require("fs");
const { TokenizerLoader } = require("@lenml/tokenizers");
const [dir, inp, out] = process.argv.slice(2);
const tk = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(dir + "/tokenizer.json", "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(dir + "/tokenizer_config.json", "utf8")),
});
const texts = JSON.parse(fs.readFileSync(inp, "utf8"));
const ids = texts.map((t) => Array.from(tk.encode(t, { add_special_tokens: false })));
fs.writeFileSync(out, JSON.stringify(ids));
