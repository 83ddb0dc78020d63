import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { leafHash, merkleRootHex, merkleTreeHash } from '../../src/evidence/merkle.ts';

// The leaves and roots of the Certificate Transparency reference tests (RFC 6962).
const leaves = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map((hex) => Buffer.from(hex, 'hex'));

const roots = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

test('the empty tree hashes to SHA-256 of nothing', () => {
  assert.equal(merkleRootHex([]), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('roots match the RFC 6962 reference vectors for 1 to 8 leaves', () => {
  roots.forEach((root, index) => {
    assert.equal(merkleRootHex(leaves.slice(0, index + 1)), root, `${index + 1} leaves`);
  });
});

test('a leaf is hashed with the 0x00 prefix, so a one-leaf tree is not the plain hash', () => {
  const leaf = Buffer.from('abc');
  const plain = createHash('sha256').update(leaf).digest();
  assert.deepEqual(merkleTreeHash([leaf]), leafHash(leaf));
  assert.notDeepEqual(merkleTreeHash([leaf]), plain);
});

// RFC 6962 section 2.1 as written, with plain Hash objects: split at the
// largest power of two below n; a leaf is SHA-256(0x00 || leaf).
function recursiveHash(items: readonly Uint8Array[]): Buffer {
  if (items.length === 0) return createHash('sha256').digest();
  if (items.length === 1) {
    return createHash('sha256')
      .update(Buffer.from([0x00]))
      .update(items[0] as Uint8Array)
      .digest();
  }
  let k = 1;
  while (k * 2 < items.length) k *= 2;
  return createHash('sha256')
    .update(Buffer.from([0x01]))
    .update(recursiveHash(items.slice(0, k)))
    .update(recursiveHash(items.slice(k)))
    .digest();
}

test('the tree built a leaf at a time equals the recursive definition for every size up to 70', () => {
  const many = Array.from({ length: 70 }, (_, i) => Buffer.from(`leaf-${i}`));
  for (let n = 0; n <= many.length; n++) {
    assert.deepEqual(
      Buffer.from(merkleTreeHash(many.slice(0, n))),
      recursiveHash(many.slice(0, n)),
      `${n} leaves`,
    );
  }
});

test('changing, dropping or reordering a leaf changes the root', () => {
  const base = merkleRootHex(leaves);
  assert.notEqual(merkleRootHex([...leaves.slice(0, 7), Buffer.from('60', 'hex')]), base);
  assert.notEqual(merkleRootHex(leaves.slice(1)), base);
  assert.notEqual(merkleRootHex([leaves[1], leaves[0], ...leaves.slice(2)] as Buffer[]), base);
});

test('leaves of any length hash as 0x00 then the leaf, a long one among short ones too', () => {
  const long = Buffer.alloc(200 * 1024, 0x61);
  const mixed = [Buffer.from('short'), long, Buffer.from('after')];
  assert.deepEqual(Buffer.from(leafHash(long)), recursiveHash([long]));
  assert.equal(merkleRootHex(mixed), recursiveHash(mixed).toString('hex'));
});
