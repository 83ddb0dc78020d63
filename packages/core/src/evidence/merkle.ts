// RFC 6962 section 2.1 Merkle Tree Hash. Leaves and interior nodes are hashed
// with distinct prefixes so a leaf can never pass for a node.
import { hash } from 'node:crypto';

// A batch hashes every record line, so the per-hash overhead counts: one-shot
// hashes (a Hash object per leaf costs more), over one reused buffer holding
// the prefix and the input (a fresh buffer per hash costs more than the copy),
// digests kept as hex (Node returns a digest as a Buffer at several times the
// cost of a hex string). Hashing is synchronous, so no two calls share the
// buffer at once; a rare larger line gets a buffer of its own, so one outsized
// record does not stay in memory.
const scratch = Buffer.allocUnsafe(64 * 1024);
const digestBytes = 32;

function prefixed(prefix: number, length: number): Buffer {
  const buffer = length <= scratch.length ? scratch.subarray(0, length) : Buffer.allocUnsafe(length);
  buffer[0] = prefix;
  return buffer;
}

function leafHashHex(leaf: Uint8Array): string {
  const input = prefixed(0x00, 1 + leaf.length);
  input.set(leaf, 1);
  return hash('sha256', input, 'hex');
}

function nodeHashHex(left: string, right: string): string {
  const input = prefixed(0x01, 1 + 2 * digestBytes);
  input.write(left, 1, 'hex');
  input.write(right, 1 + digestBytes, 'hex');
  return hash('sha256', input, 'hex');
}

export function leafHash(leaf: Uint8Array): Uint8Array {
  return Buffer.from(leafHashHex(leaf), 'hex');
}

/**
 * MTH(D[n]) a leaf at a time, so a caller can pause between leaves. It keeps
 * the roots of the perfect subtrees that n's binary digits describe (at most
 * one per size, largest first); folding them from the right gives RFC 6962's
 * split at the largest power of two below n.
 */
export class MerkleTree {
  readonly #subtrees: { size: number; hash: string }[] = [];

  add(leaf: Uint8Array): void {
    let subtree = { size: 1, hash: leafHashHex(leaf) };
    for (
      let top = this.#subtrees.at(-1);
      top !== undefined && top.size === subtree.size;
      top = this.#subtrees.at(-1)
    ) {
      this.#subtrees.pop();
      subtree = { size: top.size * 2, hash: nodeHashHex(top.hash, subtree.hash) };
    }
    this.#subtrees.push(subtree);
  }

  /** The root as evidence format v1 writes it: lower-case hex. */
  rootHex(): string {
    const last = this.#subtrees.at(-1);
    if (last === undefined) return hash('sha256', '', 'hex');
    let root = last.hash;
    for (let i = this.#subtrees.length - 2; i >= 0; i--) {
      root = nodeHashHex((this.#subtrees[i] as { hash: string }).hash, root);
    }
    return root;
  }
}

export function merkleTreeHash(leaves: readonly Uint8Array[]): Uint8Array {
  return Buffer.from(merkleRootHex(leaves), 'hex');
}

/** The root as evidence format v1 writes it: lower-case hex. */
export function merkleRootHex(leaves: readonly Uint8Array[]): string {
  const tree = new MerkleTree();
  for (const leaf of leaves) tree.add(leaf);
  return tree.rootHex();
}
