// RFC 6962 section 2.1 Merkle Tree Hash. Leaves and interior nodes are hashed
// with distinct prefixes so a leaf can never pass for a node.
import { createHash } from 'node:crypto';

const leafPrefix = new Uint8Array([0x00]);
const nodePrefix = new Uint8Array([0x01]);

export function leafHash(leaf: Uint8Array): Uint8Array {
  return createHash('sha256').update(leafPrefix).update(leaf).digest();
}

function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return createHash('sha256').update(nodePrefix).update(left).update(right).digest();
}

/**
 * MTH(D[n]). Computed bottom-up: pairing neighbours level by level and carrying
 * an odd last node up unchanged gives the same tree as RFC 6962's split at the
 * largest power of two below n, without recursion.
 */
export function merkleTreeHash(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return createHash('sha256').digest();
  let level = leaves.map(leafHash);
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) {
      next.push(nodeHash(level[i] as Uint8Array, level[i + 1] as Uint8Array));
    }
    const odd = level.length % 2 === 1 ? level[level.length - 1] : undefined;
    if (odd) next.push(odd);
    level = next;
  }
  return level[0] as Uint8Array;
}

/** The root as evidence format v1 writes it: lower-case hex. */
export function merkleRootHex(leaves: readonly Uint8Array[]): string {
  return Buffer.from(merkleTreeHash(leaves)).toString('hex');
}
