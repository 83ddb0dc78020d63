// RFC 6962 section 2.1 Merkle Tree Hash. Leaves and interior nodes are hashed
// with distinct prefixes so a leaf can never pass for a node.
import { createHash, hash } from 'node:crypto';

const leafPrefix = new Uint8Array([0x00]);
const nodePrefix = new Uint8Array([0x01]);

// One-shot hashes: a batch hashes every record line, and a Hash object per
// leaf costs more than copying the prefix and the line into one buffer.
export function leafHash(leaf: Uint8Array): Uint8Array {
  return hash('sha256', Buffer.concat([leafPrefix, leaf]), 'buffer');
}

function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return hash('sha256', Buffer.concat([nodePrefix, left, right]), 'buffer');
}

/**
 * MTH(D[n]) a leaf at a time, so a caller can pause between leaves. It keeps
 * the roots of the perfect subtrees that n's binary digits describe (at most
 * one per size, largest first); folding them from the right gives RFC 6962's
 * split at the largest power of two below n.
 */
export class MerkleTree {
  readonly #subtrees: { size: number; hash: Uint8Array }[] = [];
  #leaves = 0;

  get leaves(): number {
    return this.#leaves;
  }

  add(leaf: Uint8Array): void {
    let subtree = { size: 1, hash: leafHash(leaf) };
    for (
      let top = this.#subtrees.at(-1);
      top !== undefined && top.size === subtree.size;
      top = this.#subtrees.at(-1)
    ) {
      this.#subtrees.pop();
      subtree = { size: top.size * 2, hash: nodeHash(top.hash, subtree.hash) };
    }
    this.#subtrees.push(subtree);
    this.#leaves += 1;
  }

  root(): Uint8Array {
    const last = this.#subtrees.at(-1);
    if (last === undefined) return createHash('sha256').digest();
    let hash = last.hash;
    for (let i = this.#subtrees.length - 2; i >= 0; i--) {
      hash = nodeHash((this.#subtrees[i] as { hash: Uint8Array }).hash, hash);
    }
    return hash;
  }
}

export function merkleTreeHash(leaves: readonly Uint8Array[]): Uint8Array {
  const tree = new MerkleTree();
  for (const leaf of leaves) tree.add(leaf);
  return tree.root();
}

/** The root as evidence format v1 writes it: lower-case hex. */
export function merkleRootHex(leaves: readonly Uint8Array[]): string {
  return Buffer.from(merkleTreeHash(leaves)).toString('hex');
}
