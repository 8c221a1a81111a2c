/**
 * The deterministic fake tokenizer shared by the simulated worker and the router's size estimates.
 *
 * Rule: text is cut into consecutive pieces of CHARS_PER_TOKEN (4) UTF-16 code units; each piece is one
 * token whose id is FNV-1a(piece) mod VOCAB_SIZE. Four characters per token is close to what BPE
 * tokenizers give for English, and the rule is prefix-preserving: two texts that share their first
 * 4k characters share their first k tokens, which is what a prefix cache needs to be honest.
 */
export const CHARS_PER_TOKEN = 4;
export const VOCAB_SIZE = 128_000;

/** Token count of a text without materialising ids (the router's estimate). */
export function countTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

/** Token ids of a text. */
export function tokenize(text: string): Uint32Array {
  const n = countTokens(text);
  const ids = new Uint32Array(n);
  for (let t = 0; t < n; t++) {
    let h = 0x811c9dc5;
    const end = Math.min(text.length, (t + 1) * CHARS_PER_TOKEN);
    for (let i = t * CHARS_PER_TOKEN; i < end; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    ids[t] = (h >>> 0) % VOCAB_SIZE;
  }
  return ids;
}

/**
 * Output vocabulary of the simulated model: every word is exactly CHARS_PER_TOKEN characters, so a
 * generated text re-tokenizes to exactly as many tokens as were generated.
 */
export const OUTPUT_WORDS: readonly string[] = [
  ' the', ' and', ' for', ' you', ' are', ' not', ' but', ' all', ' can', ' one', ' was', ' has', ' its', ' may',
  ' new', ' way', ' use', ' how', ' our', ' out', ' day', ' get', ' see', ' now', ' two', ' any', ' who', ' why',
];

/** The text of the k-th generated token for a request seeded with `seed`. */
export function outputWord(seed: number, k: number): string {
  let h = (seed ^ Math.imul(k + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  return OUTPUT_WORDS[h % OUTPUT_WORDS.length] as string;
}
