// A bag of hashed features: every word, and the character trigrams of every word with its
// boundaries marked, land in one of D buckets with a sign (signed feature hashing), and the
// sum is scaled to unit length. Texts sharing words or word pieces point the same way, which
// is all a demo model needs to make search results look like search results.

const wordSeed = 0x9e3779b9;
const trigramSeed = 0x85ebca6b;
const wordWeight = 1;
// Trigrams tie "reset" to "resetting" without letting spelling outweigh whole words.
const trigramWeight = 0.5;
const boundary = 0x20;

/** The unit vector of `text` in `dimensions` dimensions; the same text always gives the same vector. */
export function embedText(text: string, dimensions: number): Float32Array {
  const vector = new Float32Array(dimensions);
  const lower = text.toLowerCase();
  let start = -1;
  for (let i = 0; i <= lower.length; i++) {
    const inWord = i < lower.length && isWordUnit(lower.charCodeAt(i));
    if (inWord && start === -1) start = i;
    else if (!inWord && start !== -1) {
      addWord(vector, lower, start, i);
      start = -1;
    }
  }
  return normalize(vector);
}

// Works on UTF-16 units, lower-cased already: ASCII letters and digits, and letters past Latin-1's
// symbols, bar the general and CJK punctuation blocks.
function isWordUnit(unit: number): boolean {
  if (unit < 0x80) return (unit >= 0x30 && unit <= 0x39) || (unit >= 0x61 && unit <= 0x7a);
  return unit >= 0xc0 && !(unit >= 0x2000 && unit <= 0x206f) && !(unit >= 0x3000 && unit <= 0x303f);
}

function addWord(vector: Float32Array, text: string, start: number, end: number): void {
  let hash = wordSeed;
  for (let i = start; i < end; i++) hash = fnvStep(hash, text.charCodeAt(i));
  addFeature(vector, hash, wordWeight);
  // " ab" and "ab " for "ab": one trigram a unit, boundaries standing in past either end.
  for (let i = start - 1; i < end - 1; i++) {
    let gram = trigramSeed;
    for (let j = i; j < i + 3; j++)
      gram = fnvStep(gram, j < start || j >= end ? boundary : text.charCodeAt(j));
    addFeature(vector, gram, trigramWeight);
  }
}

function fnvStep(hash: number, unit: number): number {
  return Math.imul(hash ^ unit, 0x01000193);
}

function addFeature(vector: Float32Array, hash: number, weight: number): void {
  const mixed = finalMix(hash);
  const index = mixed % vector.length;
  vector[index] = (vector[index] ?? 0) + (mixed & 0x80000000 ? -weight : weight);
}

// MurmurHash3's finaliser: FNV alone leaves the low bits, which pick the bucket, poorly mixed.
function finalMix(hash: number): number {
  let h = hash;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function normalize(vector: Float32Array): Float32Array {
  let squares = 0;
  for (const value of vector) squares += value * value;
  // A text with no words still gets a unit vector, so cosine similarity stays defined.
  if (squares === 0) {
    if (vector.length > 0) vector[0] = 1;
    return vector;
  }
  const scale = 1 / Math.sqrt(squares);
  for (let i = 0; i < vector.length; i++) vector[i] = (vector[i] ?? 0) * scale;
  return vector;
}
