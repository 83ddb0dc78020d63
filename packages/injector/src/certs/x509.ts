// Just enough X.509 to run a webhook's own PKI (a self-signed CA and serving
// certificates it signs, ECDSA P-256 with SHA-256) and the sidecars' admin-port
// PKI (a CA whose key is the controller's Ed25519 signing key, issuing
// certificates for public keys the sidecars send). Node can parse certificates
// but not build them, and the injector image has no openssl, so the DER is
// written here by hand (RFC 5280; only the fields a TLS client checks).
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';

/** PEM certificate and PKCS#8 PEM private key. */
export type CertificateAndKey = { cert: string; key: string };

export type Validity = { notBefore: Date; notAfter: Date };

// --- DER ---------------------------------------------------------------------

function tlv(tag: number, content: Uint8Array): Buffer {
  const n = content.length;
  let length: number[];
  if (n < 0x80) length = [n];
  else {
    const bytes: number[] = [];
    for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
    length = [0x80 | bytes.length, ...bytes];
  }
  return Buffer.concat([Buffer.from([tag, ...length]), content]);
}

const sequence = (...items: Uint8Array[]) => tlv(0x30, Buffer.concat(items));
const set = (...items: Uint8Array[]) => tlv(0x31, Buffer.concat(items));
const octetString = (content: Uint8Array) => tlv(0x04, content);
const utf8String = (text: string) => tlv(0x0c, Buffer.from(text, 'utf8'));
const boolean = (value: boolean) => tlv(0x01, Buffer.from([value ? 0xff : 0]));
/** `[n] EXPLICIT`. */
const explicit = (n: number, content: Uint8Array) => tlv(0xa0 | n, content);

function bitString(content: Uint8Array, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), content]));
}

/** A non-negative integer, big-endian. */
function integer(value: Uint8Array | number): Buffer {
  let bytes = typeof value === 'number' ? Buffer.from([value]) : Buffer.from(value);
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  bytes = bytes.subarray(start);
  if ((bytes[0] ?? 0) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(0x02, bytes);
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const out = [first * 40 + second];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  const year = date.getUTCFullYear();
  return year >= 1950 && year < 2050
    ? tlv(0x17, Buffer.from(digits.slice(2)))
    : tlv(0x18, Buffer.from(digits));
}

// --- Certificates ------------------------------------------------------------

const ecdsaWithSha256 = sequence(oid('1.2.840.10045.4.3.2'));
// RFC 8410: the parameters are absent, and Ed25519 hashes by itself.
const ed25519 = sequence(oid('1.3.101.112'));

/** The key types certificates here are signed with and issued for: those TLS peers here all accept. */
function keyType(key: KeyObject): 'ed25519' | 'p256' | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'p256';
  return undefined;
}

/** The signature algorithm a key signs certificates with, and how. */
function signer(key: KeyObject): { algorithm: Buffer; sign(tbs: Buffer): Buffer } {
  switch (keyType(key)) {
    case 'ed25519':
      return { algorithm: ed25519, sign: (tbs) => sign(null, tbs, key) };
    case 'p256':
      return { algorithm: ecdsaWithSha256, sign: (tbs) => sign('sha256', tbs, key) };
    default:
      throw new Error('certificates are signed with an Ed25519 or a P-256 key only');
  }
}

/** Whether certificates may be issued for `key`: a public key of a type `keyType` knows. */
export function isCertifiableKey(key: KeyObject): boolean {
  return key.type === 'public' && keyType(key) !== undefined;
}

const name = (commonName: string) => sequence(set(sequence(oid('2.5.4.3'), utf8String(commonName))));

function extension(id: string, critical: boolean, value: Uint8Array): Buffer {
  return sequence(oid(id), ...(critical ? [boolean(true)] : []), octetString(value));
}

/** The key identifier of RFC 5280 4.2.1.2 (1): SHA-1 of the public key's bits. */
function keyIdentifier(spki: Buffer): Buffer {
  // Ed25519's SPKI is a fixed 12-byte prefix and the 32-byte key; P-256's a
  // fixed 26-byte prefix (algorithm, bit string header) and the 65-byte point.
  const bits = spki.length === 44 ? 32 : 65;
  return createHash('sha1')
    .update(spki.subarray(spki.length - bits))
    .digest();
}

type Signer = { commonName: string; key: KeyObject; spki: Buffer };

function build(options: {
  subject: string;
  issuer: Signer | 'self';
  validity: Validity;
  spki: Buffer;
  signingKey: KeyObject;
  extensions: Buffer[];
  /** Random when absent. */
  serial?: Buffer;
}): string {
  let serial = options.serial;
  if (serial === undefined) {
    serial = randomBytes(16);
    serial[0] = (serial[0] ?? 0) & 0x7f || 0x01;
  }
  const issuerSpki = options.issuer === 'self' ? options.spki : options.issuer.spki;
  const issuerName = options.issuer === 'self' ? options.subject : options.issuer.commonName;
  const algorithm = signer(options.signingKey);
  const tbs = sequence(
    explicit(0, integer(2)),
    integer(serial),
    algorithm.algorithm,
    name(issuerName),
    sequence(time(options.validity.notBefore), time(options.validity.notAfter)),
    name(options.subject),
    options.spki,
    explicit(
      3,
      sequence(
        ...options.extensions,
        extension('2.5.29.14', false, octetString(keyIdentifier(options.spki))),
        extension('2.5.29.35', false, sequence(tlv(0x80, keyIdentifier(issuerSpki)))),
      ),
    ),
  );
  const der = sequence(tbs, algorithm.algorithm, bitString(algorithm.sign(tbs)));
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

function newKey(): { key: string; spki: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    spki: publicKey.export({ type: 'spki', format: 'der' }),
  };
}

const caExtensions = () => [
  extension('2.5.29.19', true, sequence(boolean(true), integer(0))),
  // digitalSignature, keyCertSign, cRLSign
  extension('2.5.29.15', true, bitString(Buffer.from([0x86]), 1)),
];

/** A self-signed CA that may sign end-entity certificates only (pathLen 0). */
export function createCertificateAuthority(commonName: string, validity: Validity): CertificateAndKey {
  const { key, spki } = newKey();
  const cert = build({
    subject: commonName,
    issuer: 'self',
    validity,
    spki,
    signingKey: createPrivateKey(key),
    extensions: caExtensions(),
  });
  return { cert, key };
}

/**
 * A self-signed CA for an existing Ed25519 or P-256 private key, with the serial
 * given. Built from fixed inputs with an Ed25519 key (whose signatures are
 * deterministic), it comes out byte for byte the same wherever it is built.
 */
export function certificateAuthorityForKey(
  key: KeyObject,
  commonName: string,
  serial: Buffer,
  validity: Validity,
): string {
  return build({
    subject: commonName,
    issuer: 'self',
    validity,
    spki: createPublicKey(key).export({ type: 'spki', format: 'der' }),
    signingKey: key,
    extensions: caExtensions(),
    serial,
  });
}

/** A TLS server certificate for `dnsNames`, signed by `ca`. */
export function issueServingCertificate(
  ca: CertificateAndKey,
  dnsNames: readonly string[],
  validity: Validity,
): CertificateAndKey {
  const { key, spki } = newKey();
  const cert = issueServerCertificate(
    { cert: ca.cert, key: createPrivateKey(ca.key) },
    createPublicKey({ key: spki, format: 'der', type: 'spki' }),
    dnsNames,
    validity,
  );
  return { cert, key };
}

/** A TLS server certificate for someone else's public key (P-256 or Ed25519), signed by `ca`. */
export function issueServerCertificate(
  ca: { cert: string; key: KeyObject },
  publicKey: KeyObject,
  dnsNames: readonly string[],
  validity: Validity,
): string {
  if (dnsNames.length === 0) throw new Error('a serving certificate needs at least one DNS name');
  if (!isCertifiableKey(publicKey)) throw new Error('only P-256 and Ed25519 public keys are certified');
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const caSpki = createPublicKey(ca.key).export({ type: 'spki', format: 'der' });
  // The issuer name must repeat the CA's subject byte for byte; CAs made here have a plain CN.
  const commonName = /^CN=([^\n,+=]+)$/.exec(new X509Certificate(ca.cert).subject)?.[1];
  if (commonName === undefined) throw new Error('the CA was not made by createCertificateAuthority');
  return build({
    subject: dnsNames[0] as string,
    issuer: { commonName, key: ca.key, spki: caSpki },
    validity,
    spki,
    signingKey: ca.key,
    extensions: [
      extension('2.5.29.19', true, sequence()),
      // digitalSignature
      extension('2.5.29.15', true, bitString(Buffer.from([0x80]), 7)),
      extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'))),
      extension('2.5.29.17', false, sequence(...dnsNames.map((dns) => tlv(0x82, Buffer.from(dns, 'ascii'))))),
    ],
  });
}
