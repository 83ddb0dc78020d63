// Builds the labelled masking corpus (corpus.json beside this file). Seeded, so
// the output is the same on every run; corpus.test.ts checks the committed file
// against it. Regenerate with: node packages/core/test/testdata/masking/generate.ts
//
// Checksums (Luhn, mod-97) are computed here independently of the detectors, so
// the corpus is an oracle and not a copy of the code under test.
import { Buffer } from 'node:buffer';
import { writeFileSync } from 'node:fs';
import type { DetectorName } from '../../../src/policy/schema.ts';

export interface CorpusSpan {
  detector: DetectorName;
  start: number;
  end: number;
  value: string;
}

export interface CorpusEntry {
  tag: string;
  text: string;
  spans: CorpusSpan[];
}

type Part = string | { detector: DetectorName; value: string };

function entry(tag: string, parts: Part[]): CorpusEntry {
  let text = '';
  const spans: CorpusSpan[] = [];
  for (const part of parts) {
    if (typeof part === 'string') {
      text += part;
    } else {
      spans.push({
        detector: part.detector,
        start: text.length,
        end: text.length + part.value.length,
        value: part.value,
      });
      text += part.value;
    }
  }
  return { tag, text, spans };
}

/** mulberry32: small, seedable, good enough for test data. */
function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = rng(20_240_611);
const int = (min: number, max: number): number => min + Math.floor(random() * (max - min + 1));
const pick = <T>(items: readonly T[]): T => items[int(0, items.length - 1)] as T;
const chars = (alphabet: string, length: number): string =>
  Array.from({ length }, () => alphabet.charAt(int(0, alphabet.length - 1))).join('');
const DIGITS = '0123456789';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const ALNUM = `${UPPER}abcdefghijklmnopqrstuvwxyz${DIGITS}`;
const HEX = '0123456789abcdef';
const digits = (length: number): string => chars(DIGITS, length);
const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** Places a value in a sentence: `{}` marks where. */
function frame(tag: string, template: string, detector: DetectorName | null, value: string): CorpusEntry {
  const [before = '', after = ''] = template.split('{}');
  return entry(tag, [before, detector === null ? value : { detector, value }, after]);
}

// ---- checksums -------------------------------------------------------------

function luhnCheckDigit(payload: string): string {
  let sum = 0;
  for (let i = 0; i < payload.length; i++) {
    let d = Number(payload.charAt(payload.length - 1 - i));
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

function bigMod97(alphanumeric: string): number {
  const expanded = [...alphanumeric].map((c) => String(Number.parseInt(c, 36))).join('');
  return Number(BigInt(expanded) % 97n);
}

function ibanOf(country: string, bban: string): string {
  const check = 98 - bigMod97(`${bban}${country}00`);
  return `${country}${pad(check, 2)}${bban}`;
}

const groupsOf = (value: string, size: number, separator: string): string =>
  (value.match(new RegExp(`.{1,${size}}`, 'g')) ?? []).join(separator);

// ---- positives -------------------------------------------------------------

const firstNames = [
  'alice',
  'bob',
  'carol',
  'dmitri',
  'eve',
  'fatima',
  'giulia',
  'hiro',
  'ines',
  'jonas',
  'kemal',
];
const lastNames = ['smith', 'nguyen', 'mueller', 'garcia', 'okafor', 'rossi', 'tanaka', 'dubois', 'kowalski'];
const domains = [
  'example.com',
  'example.org',
  'mail.example.co.uk',
  'corp-example.de',
  'example.io',
  'cs.uni-example.edu',
  'eu.mail.example.net',
];

function emails(): CorpusEntry[] {
  const templates = [
    'Send the signed copy to {}.',
    'From: Jane Doe <{}>',
    'Contact: {}, or call reception.',
    'mailto:{}',
    'Please loop in {} (cc) before Friday',
    '{} wrote: the build is green again',
    'user={}&plan=pro',
  ];
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 32; i++) {
    const first = pick(firstNames);
    const last = pick(lastNames);
    const local = pick([
      `${first}.${last}`,
      `${first}_${last}`,
      `${first.charAt(0)}.${last}${int(1, 99)}`,
      `${first}+${pick(['news', 'billing', 'test'])}`,
      `${first}${last}`,
    ]);
    out.push(frame('email', pick(templates), 'email', `${local}@${pick(domains)}`));
  }
  out.push(frame('email', 'Escalate to {} now', 'email', 'John.Doe@Example.COM'));
  out.push(frame('email', 'support address: {}', 'email', 'help-desk%eu@support.example.travel'));
  out.push(
    entry('email', [
      'To: ',
      { detector: 'email', value: 'ops@example.com' },
      ', ',
      { detector: 'email', value: 'sre.oncall@example.org' },
    ]),
  );
  return out;
}

function nanp(): string {
  return `${int(2, 9)}${digits(2)}|${int(2, 9)}${digits(2)}|${digits(4)}`;
}

function phones(): CorpusEntry[] {
  const usFormats = [
    (a: string, e: string, l: string) => `(${a}) ${e}-${l}`,
    (a: string, e: string, l: string) => `${a}-${e}-${l}`,
    (a: string, e: string, l: string) => `${a}.${e}.${l}`,
    (a: string, e: string, l: string) => `${a} ${e} ${l}`,
    (a: string, e: string, l: string) => `1-${a}-${e}-${l}`,
    (a: string, e: string, l: string) => `+1 ${a} ${e} ${l}`,
    (a: string, e: string, l: string) => `+1-${a}-${e}-${l}`,
    (a: string, e: string, l: string) => `+1 (${a}) ${e}-${l}`,
    (a: string, e: string, l: string) => `(${a})${e}-${l}`,
  ];
  const templates = [
    'Call me at {}.',
    'Phone: {}',
    'reach the front desk on {} between 9 and 5',
    'Tel.: {} (mobile)',
    'her number is {}, ask for the night shift',
  ];
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 16; i++) {
    const [a = '', e = '', l = ''] = nanp().split('|');
    out.push(frame('phone-us', pick(templates), 'phone', pick(usFormats)(a, e, l)));
  }
  const international = [
    '+44 20 7946 0958',
    '+44 (0)20 7946 0958',
    '+49 30 901820',
    '+49 (0)30 12345678',
    '+33 1 23 45 67 89',
    '+33 6 12 34 56 78',
    '+31 20 123 4567',
    '+39 06 1234 5678',
    '+34 612 345 678',
    '+61 2 9876 5432',
    '+81 3-1234-5678',
    '+91 98765 43210',
    '+353 1 234 5678',
    '+41 44 668 18 00',
    '+4915112345678',
  ];
  for (const value of international) out.push(frame('phone-international', pick(templates), 'phone', value));
  const national = [
    '020 7946 0958',
    '(020) 7946 0958',
    '030 12345678',
    '030-12345678',
    '01 23 45 67 89',
    '06 12 34 56 78',
    '0171 1234567',
    '06-12345678',
    '0800 123 4567',
  ];
  for (const value of national) out.push(frame('phone-national', pick(templates), 'phone', value));
  return out;
}

function validSsn(): [string, string, string] {
  let area = int(1, 899);
  if (area === 666) area = 667;
  return [pad(area, 3), pad(int(1, 99), 2), pad(int(1, 9999), 4)];
}

function ssns(): CorpusEntry[] {
  const templates = [
    'SSN {} on file',
    'Employee SSN: {}',
    "the applicant's social security number is {}.",
    'ssn={}&dob=1980',
    'verify {} against the W-2',
  ];
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 24; i++) {
    const [a, g, s] = validSsn();
    out.push(frame('ssn', pick(templates), 'ssn', i % 6 === 5 ? `${a} ${g} ${s}` : `${a}-${g}-${s}`));
  }
  const labelled = ['SSN: {}', 'SSN#{}', 'Social Security No. {}', 'social security number: {}'];
  for (let i = 0; i < 6; i++) {
    const [a, g, s] = validSsn();
    out.push(frame('ssn-bare-labelled', pick(labelled), 'ssn', `${a}${g}${s}`));
  }
  return out;
}

interface CardBrand {
  prefixes: readonly string[];
  length: number;
  grouping: readonly number[];
}

const brands: readonly CardBrand[] = [
  { prefixes: ['4'], length: 16, grouping: [4, 4, 4, 4] },
  { prefixes: ['4'], length: 13, grouping: [4, 4, 4, 1] },
  { prefixes: ['4'], length: 19, grouping: [4, 4, 4, 4, 3] },
  { prefixes: ['51', '52', '53', '54', '55', '2221', '2720'], length: 16, grouping: [4, 4, 4, 4] },
  { prefixes: ['34', '37'], length: 15, grouping: [4, 6, 5] },
  { prefixes: ['6011', '65'], length: 16, grouping: [4, 4, 4, 4] },
  { prefixes: ['3528', '3589'], length: 16, grouping: [4, 4, 4, 4] },
  { prefixes: ['36', '300'], length: 14, grouping: [4, 6, 4] },
  { prefixes: ['62'], length: 16, grouping: [4, 4, 4, 4] },
];

function cardNumber(brand: CardBrand): string {
  const prefix = pick(brand.prefixes);
  const payload = prefix + digits(brand.length - prefix.length - 1);
  return payload + luhnCheckDigit(payload);
}

function formatCard(number: string, grouping: readonly number[], separator: string): string {
  if (separator === '') return number;
  const groups: string[] = [];
  let at = 0;
  for (const size of grouping) {
    groups.push(number.slice(at, at + size));
    at += size;
  }
  return groups.join(separator);
}

const cardTemplates = [
  'Card number: {}',
  'charged to {} on Friday',
  'pay with {} exp 12/27',
  'cc={}&cvv=123',
  'The customer read out {} twice.',
];

function cards(): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 36; i++) {
    const brand = brands[i % brands.length] as CardBrand;
    const value = formatCard(cardNumber(brand), brand.grouping, pick(['', ' ', '-', ' ']));
    out.push(frame('payment-card', pick(cardTemplates), 'payment-card', value));
  }
  return out;
}

const bbans: Readonly<Record<string, () => string>> = {
  DE: () => digits(18),
  FR: () => digits(23),
  GB: () => chars(UPPER, 4) + digits(14),
  NL: () => chars(UPPER, 4) + digits(10),
  ES: () => digits(20),
  IT: () => chars(UPPER, 1) + digits(22),
  BE: () => digits(12),
  CH: () => digits(17),
  AT: () => digits(16),
  PL: () => digits(24),
  SE: () => digits(20),
  NO: () => digits(11),
  DK: () => digits(14),
  IE: () => chars(UPPER, 4) + digits(14),
  PT: () => digits(21),
  LU: () => digits(3) + chars(UPPER + DIGITS, 13),
  MT: () => chars(UPPER, 4) + digits(5) + chars(UPPER + DIGITS, 18),
  AE: () => digits(19),
  BR: () => `${digits(23)}C1`,
};

function validIban(): string {
  const country = pick(Object.keys(bbans));
  return ibanOf(country, (bbans[country] as () => string)());
}

const ibanTemplates = [
  'IBAN: {}',
  'Please wire the deposit to {} by Monday.',
  'beneficiary account {} (EUR)',
  'iban={}&bic=DEUTDEFF',
  'Refund goes to {}, reference 4471',
];

function ibans(): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 33; i++) {
    const iban = validIban();
    out.push(frame('iban', pick(ibanTemplates), 'iban', i % 2 === 0 ? groupsOf(iban, 4, ' ') : iban));
  }
  out.push(frame('iban', 'IBAN {} EUR', 'iban', 'DE89370400440532013000'));
  out.push(frame('iban', 'Account: {}', 'iban', 'GB82 WEST 1234 5698 7654 32'));
  return out;
}

const octet = (): number => int(0, 255);

function ipv4s(): CorpusEntry[] {
  const templates = [
    'server at {}',
    'connection from {}:8443 refused',
    'ip={}&port=22',
    'blocked {}.',
    'allow {}/24 in the firewall',
    'ping {} -c 3',
  ];
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 22; i++) {
    out.push(frame('ipv4', pick(templates), 'ipv4', `${int(1, 223)}.${octet()}.${octet()}.${int(1, 254)}`));
  }
  out.push(
    entry('ipv4', [
      'X-Forwarded-For: ',
      { detector: 'ipv4', value: '203.0.113.195' },
      ', ',
      { detector: 'ipv4', value: '70.41.3.18' },
    ]),
  );
  out.push(frame('ipv4', 'GET http://{}/admin', 'ipv4', '10.0.0.1'));
  out.push(
    entry('ipv4', [
      'dns ',
      { detector: 'ipv4', value: '8.8.4.4' },
      ' and ',
      { detector: 'ipv4', value: '1.1.1.1' },
    ]),
  );
  return out;
}

function ipv6s(): CorpusEntry[] {
  const fixed = [
    '2001:db8::1',
    '2001:0db8:85a3:0000:0000:8a2e:0370:7334',
    'fe80::1ff:fe23:4567:890a',
    '::1',
    '::ffff:192.0.2.128',
    '2001:db8:0:0:1:0:0:1',
    '2001:DB8::8:800:200C:417A',
    'ff02::2',
    '2606:4700:4700::1111',
    '64:ff9b::198.51.100.7',
    '2001:db8:85a3::8a2e:370:7334',
    'fd12:3456:789a:1::1',
  ];
  const templates = [
    'https://[{}]:443/health',
    'addr {}',
    'route via {}.',
    'client {} connected',
    'AAAA record: {}',
  ];
  const out = fixed.map((value) => frame('ipv6', pick(templates), 'ipv6', value));
  for (let i = 0; i < 13; i++) {
    const groups = Array.from({ length: 8 }, () => chars(HEX, int(1, 4)));
    const value =
      i % 2 === 0 ? groups.join(':') : `${groups.slice(0, 3).join(':')}::${groups.slice(6).join(':')}`;
    out.push(frame('ipv6', pick(templates), 'ipv6', value));
  }
  out.push(frame('ipv6', 'link-local {}%eth0 is up', 'ipv6', 'fe80::a00:27ff:fe4e:66a1'));
  return out;
}

const base64url = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');

function jwts(): CorpusEntry[] {
  const headers = [
    '{"alg":"HS256","typ":"JWT"}',
    '{"alg":"RS256","kid":"k1","typ":"JWT"}',
    '{"typ":"JWT","alg":"ES256"}',
    '{"alg":"EdDSA"}',
  ];
  const templates = [
    'Authorization: Bearer {}',
    'token={}&x=1',
    '"id_token": "{}"',
    'the cookie session={} expired',
    'paste this: {}.',
  ];
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 19; i++) {
    const payload = `{"sub":"user${int(1, 9999)}","iat":${1_700_000_000 + int(0, 9_999_999)},"role":"${pick(['admin', 'viewer'])}"}`;
    const value = `${base64url(pick(headers))}.${base64url(payload)}.${chars(`${ALNUM}-_`, pick([43, 86]))}`;
    out.push(frame('jwt', pick(templates), 'jwt', value));
  }
  const unsigned = `${base64url('{"alg":"none"}')}.${base64url('{"sub":"42"}')}.`;
  out.push(frame('jwt', 'legacy token {} still accepted?', 'jwt', unsigned));
  return out;
}

function pemBody(lines: number, newline: string): string {
  const body = Array.from({ length: lines }, () => chars(`${ALNUM}+/`, 64));
  return body.join(newline) + newline + chars(`${ALNUM}+/`, int(8, 60)) + pick(['', '=', '==']);
}

function privateKeys(): CorpusEntry[] {
  const kinds = ['RSA ', 'EC ', 'OPENSSH ', 'ENCRYPTED ', '', 'DSA '];
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 10; i++) {
    const kind = kinds[i % kinds.length] as string;
    const newline = i === 7 ? '\\n' : '\n';
    const value = `-----BEGIN ${kind}PRIVATE KEY-----${newline}${pemBody(int(3, 8), newline)}${newline}-----END ${kind}PRIVATE KEY-----`;
    out.push(
      frame(
        'private-key',
        pick(['key.pem:\n{}\n', 'here is the key {} done', '"key": "{}"']),
        'private-key',
        value,
      ),
    );
  }
  const pgp = `-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n${pemBody(4, '\n')}\n-----END PGP PRIVATE KEY BLOCK-----`;
  out.push(frame('private-key', 'export:\n{}', 'private-key', pgp));
  const truncated = `-----BEGIN RSA PRIVATE KEY-----\n${pemBody(5, '\n')}`;
  out.push(frame('private-key', 'chunk 3 of 4: {}', 'private-key', truncated));
  // Fixed bodies: drawing them would change every value generated after them.
  const body = [
    'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj',
    'MZEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu',
    'NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ',
  ];
  const concatenated = ['-----BEGIN PRIVATE KEY-----', ...body, '-----END PRIVATE KEY-----']
    .map((line) => `"${line}\\n"`)
    .join(' +\n  ');
  out.push(frame('private-key', 'const key =\n  "{}";', 'private-key', concatenated.slice(1, -3)));
  const spaced = `-----BEGIN RSA PRIVATE  KEY-----\n${body.join('\n')}\n-----END RSA PRIVATE  KEY-----`;
  out.push(frame('private-key', 'pasted:\n{}\n', 'private-key', spaced));
  return out;
}

function awsKeys(): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  const idTemplates = [
    'aws_access_key_id = {}',
    'AccessKeyId: {}',
    'export AWS_ACCESS_KEY_ID={}',
    'key {} leaked in CI',
  ];
  for (let i = 0; i < 12; i++) {
    const value = `${pick(['AKIA', 'ASIA'])}${chars(UPPER + DIGITS, 16)}`;
    out.push(frame('aws-key-id', pick(idTemplates), 'aws-key', value));
  }
  const secretTemplates = [
    'aws_secret_access_key = {}',
    'AWS_SECRET_ACCESS_KEY={}',
    '"SecretAccessKey": "{}"',
    "secret_key: '{}'",
  ];
  for (let i = 0; i < 8; i++) {
    const value = chars(`${ALNUM}/+`, 40);
    out.push(frame('aws-secret', pick(secretTemplates), 'aws-key', value));
  }
  return out;
}

function gcpKeys(): CorpusEntry[] {
  const templates = [
    'key={}',
    '"api_key": "{}"',
    'https://maps.example.com/api?key={}&q=berlin',
    'GOOGLE_API_KEY={}',
  ];
  return Array.from({ length: 15 }, () =>
    frame('gcp-key', pick(templates), 'gcp-key', `AIza${chars(`${ALNUM}-_`, 35)}`),
  );
}

function githubTokens(): CorpusEntry[] {
  const templates = [
    'GITHUB_TOKEN={}',
    'git clone https://{}@github.com/acme/app',
    'token: {}',
    'use {} for the bot',
  ];
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 15; i++) {
    const value = `${pick(['ghp', 'gho', 'ghu', 'ghs', 'ghr'])}_${chars(ALNUM, 36)}`;
    out.push(frame('github-token', pick(templates), 'github-token', value));
  }
  for (let i = 0; i < 5; i++) {
    const value = `github_pat_${chars(ALNUM, 22)}_${chars(ALNUM, 59)}`;
    out.push(frame('github-token', pick(templates), 'github-token', value));
  }
  return out;
}

// ---- hard negatives ----------------------------------------------------------

function invalidCards(): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 27; i++) {
    const brand = brands[i % brands.length] as CardBrand;
    const valid = cardNumber(brand);
    const last = Number(valid.slice(-1));
    const wrong = valid.slice(0, -1) + String((last + int(1, 9)) % 10);
    const value = formatCard(wrong, brand.grouping, pick(['', ' ', '-']));
    out.push(frame('payment-card-bad-luhn', pick(cardTemplates), null, value));
  }
  return out;
}

function invalidIbans(): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 27; i++) {
    const valid = validIban();
    let wrong: string;
    if (i % 2 === 0) {
      const check = (Number(valid.slice(2, 4)) + int(1, 80)) % 97;
      wrong = `${valid.slice(0, 2)}${pad(check < 2 ? check + 2 : check, 2)}${valid.slice(4)}`;
    } else {
      const at = int(4, valid.length - 1);
      const ch = valid.charAt(at);
      const swapped = /\d/.test(ch) ? String((Number(ch) + int(1, 9)) % 10) : ch === 'Z' ? 'A' : 'Z';
      wrong = valid.slice(0, at) + swapped + valid.slice(at + 1);
    }
    out.push(
      frame('iban-bad-checksum', pick(ibanTemplates), null, i % 3 === 0 ? wrong : groupsOf(wrong, 4, ' ')),
    );
  }
  return out;
}

function invalidSsns(): CorpusEntry[] {
  const values = [
    '000-12-3456',
    '666-12-3456',
    '900-12-3456',
    '987-65-4321',
    '999-99-9999',
    '123-00-4567',
    '123-45-0000',
    '000-00-0000',
    '666 45 6789',
    '912 34 5678',
    '078-00-1120',
    '456-78-0000',
    '955-12-3344',
    '001-00-0001',
    '321-54-0000',
  ];
  return values.map((value) => frame('ssn-invalid', 'SSN {} on file', null, value));
}

/** Text that looks like data to a careless detector, none of it personal. */
const lookalikes: Readonly<Record<string, readonly string[]>> = {
  'product-code': [
    'Upgrade the C4 cluster and move logs to S3.',
    'We benchmarked the M2 and the A17 chips.',
    'Part no. X7-2200-B ships in May.',
    'SKU AB-1234-XY is out of stock.',
    'Print it on A4, not US Letter.',
    'The Galaxy S23 and Pixel 8 both passed.',
    'Replace filter F-150-22 every 3 months.',
    'Model T800 firmware 2.1 is current.',
    'Use the ECS task def app-web:142.',
    'Order the LX-4400 with the 220V plug.',
    'The EC2 instance type m5.xlarge fits.',
    'Check bolts M8x1.25 and M10x1.5.',
    'Part 3M-2091 adhesive, 50 ml.',
    'Rack R12-U24 in hall B3.',
    'Use CAT6 cable, 305 m box.',
  ],
  'order-number': [
    'Order #123456789 has shipped.',
    'Order ORD-2024-000123 was refunded.',
    'PO 4500012345 approved by finance.',
    'Invoice INV-2024-0042 is overdue.',
    'Ticket JIRA-10452 blocks the release.',
    'Case number 00012345 closed.',
    'Your confirmation code is 8XK2QF.',
    'Reservation 2024-05-17-0042 confirmed.',
    'Order #415-555-2671 is ready for pickup.',
    'RMA 700-123-4567 received.',
    'Ref 2024/03/0017 filed.',
    'Batch 20240315-07 passed QA.',
    'Account no. 100-200-3000 archived.',
    'Claim 12-3456789-01 denied.',
    'Lot 48213-775 recalled.',
    'Your order number is 112-4433221-7788990.',
    'Customer ID 000123456.',
    'Shipment 1001-2002-3003 delayed.',
    'Invoice 2024-000-1234 paid.',
    'Serial SN 7734-99812-001 registered.',
  ],
  date: [
    'Due 2024-01-15.',
    'Signed 15/01/2024 in Paris.',
    'Valid until 01.02.2024.',
    'Meeting on Jan 5, 2024.',
    'Created 2024-01-15T10:30:00Z by cron.',
    'Build 20240115 is stable.',
    'Effective 05-11-2023.',
    'Logged 12/31/1999 23:59:59 PST.',
    'From 2023-12-01 to 2024-02-29.',
    'Born 1985-07-23.',
    'Week 2024-W03 sprint review.',
    'Expires 03/2027.',
    'Timestamp 1700000000 (Unix).',
    'Q3 2024 results on 2024-10-24.',
    'Dated 05 11 2023, filed 06 11 2023.',
    'Between 1999 and 2024 prices rose.',
    'Posted 2024.01.15 10:30.',
    'Updated 20240115T103000Z.',
    'Renewal 2025-12-31 23:59.',
    'DOB 07/23/1985.',
  ],
  time: [
    'Standup at 10:30.',
    'Elapsed 10:30:45.',
    'Latency p99 23:59:59.999 window.',
    'Offset +05:30 from UTC.',
    'Race time 2:03:59.',
    'Video at 1:02:33:12 timecode.',
    'Open 09:00-17:30 Mon-Fri.',
    'Flight departs 06:45, lands 11:20.',
    'TZ UTC+01:00.',
    'Timer 00:00:10 left.',
  ],
  uuid: [],
  version: [
    'Upgrade to v1.2.3 now.',
    'Requires 1.2.3 or later.',
    'Released 1.2.3-beta today.',
    'Tagged 1.2.3.4-rc1.',
    'version 1.2.3.4 fixes it.',
    'Node 24.11.0 and npm 11.6.2.',
    'Windows 10.0.19045.3803 patched.',
    'Chrome/120.0.6099.109 Safari/537.36',
    'Python 3.12.1 is required.',
    'release 2.0.0.1 is out',
    'Bump lodash from 4.17.20 to 4.17.21.',
    'kernel 6.8.0-45-generic',
    'Build 1.0.0+20240115 signed.',
    'OpenSSL 3.0.13 30 Jan 2024',
    'Firmware v2.4.10.3 installed.',
    'libc 2.39-0ubuntu8.3',
    'API v2 and v3.1 supported.',
    'Angular 17.3.12, TypeScript 5.4.5',
    'Semver ^1.2.3 || ~2.0.0',
    'ver. 4.2.0.11 hotfix',
  ],
  isbn: [
    'ISBN 978-0-306-40615-7',
    'ISBN-10 0-306-40615-2',
    'ISBN 9780306406157 in stock',
    'See 978 0 306 40615 7 p. 42',
    'ISBN: 978-1-4028-9462-6',
    'ISBN 0-19-852663-6 (paperback)',
    'ISBN 978-3-16-148410-0',
    'ISSN 0317-8471',
    'ISBN 9781402894626',
    'ISBN-13: 978-0-596-52068-7',
    'ISBN 0 306 40615 2',
    'ISMN 979-0-2600-0043-8',
    'ISBN 978-88-515-2159-2',
    'ISBN 1-56619-909-3',
    'EAN 4006381333931 on the label',
  ],
  hash: [],
  price: [
    'Total $1,299.99 incl. tax.',
    'Now €45,00 instead of €60,00.',
    'Budget USD 1,000,000 approved.',
    'Lunch was £12.50.',
    'Price: 4111.11 EUR',
    'Save 15% on orders over $250.',
    'CHF 1’250.– per month',
    'Market cap $2.1T, P/E 31.4',
    'Invoice total 12 345,67 €',
    'Salary 85.000 EUR brutto',
    'Costs rose 3.2% to ¥120,000.',
    'Bid 99.95, ask 100.05.',
    'Fee of $0.30 + 2.9% per charge',
    'Discounted from $49.99 to $39.99',
    'Revenue 1 234 567 EUR in 2023',
  ],
  tracking: [
    'UPS 1Z999AA10123456784 out for delivery.',
    'FedEx tracking 123456789012.',
    'USPS 9400 1000 0000 0000 0000 00 delivered.',
    'USPS 9400100000000000000000 in transit.',
    'DHL JD014600003828502271 at hub.',
    'Royal Mail AB123456789GB signed for.',
    'FedEx 7489 1234 5678 ground.',
    'Parcel 00340434161094042557 (SSCC).',
    'Tracking 420 90210 9205 5000 0000 0000 00',
    'DPD 01234567890123 out today.',
    'Container MSCU 123456 7 arrived.',
    'AWB 176-12345675 on flight LH400.',
    'Waybill 9261 2903 1234 5678 90',
    'Bill of lading MAEU123456789.',
    'USPS 9205 5000 0000 0000 0000 00',
  ],
  other: [
    'Call std::vector<int>::size() once.',
    'Use Foo::Bar::Baz in Ruby.',
    'Aspect ratio 16:9, 24 fps.',
    'Located at 48.8566, 2.3522.',
    'The score was 3-2 after extra time.',
    'Address 256.300.1.1 is invalid.',
    'Mask 1.2.3 only.',
    'Pi is about +3.14159265.',
    'Number 123-456-7890 is not assigned.',
    'Dial 555-0100 for the demo.',
    'ZIP 90210-1234.',
    'MAC 00:1A:2B:3C:4D:5E on eth0.',
    'Colour #FF5733 with 80% alpha.',
    'HTTP 404 then 503 after 30s.',
    'Ping @alice and @bob-dev in #ops.',
    'Decorate with @Component({selector}).',
    'Tokens like eyJub3RKU09O.eyJ4Ijox.sig are not JWTs.',
    'eyJhbGciOiJIUzI1NiJ9 alone is just a header.',
    'AKIA1234 is too short for a key id.',
    'ghp_short is not a token.',
    'AIzaShortKey is not a key.',
    '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----',
    '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----',
    'secret_key: changeme',
    'The secret key is in the vault, not here.',
    'Matrix [[1.0, 2.0], [3.0, 4.0]]',
    'Run 1,2,3,4,5,6,7,8,9 in order.',
    'Grid ref TQ 30045 80512',
    'Tel Aviv and Tel-Aviv are the same.',
    'Use 10.5.3 and 192.168 ranges.',
    'Temperature 21.5.1 sensor',
    'Dimensions 120x80x40 cm',
    'a@b alone is not an address',
    'Email me at john dot doe at example dot com',
    'C++ uses ::operator new.',
    'Version 2001:db8 is not an address.',
    'LaTeX \\section{Intro} and \\cite{knuth84}',
    'Bank code 37040044, account 532013000.',
    'Sort code 20-00-00, account 55779911.',
  ],
};

function generatedLookalikes(): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 15; i++) {
    const uuid = `${chars(HEX, 8)}-${chars(HEX, 4)}-4${chars(HEX, 3)}-${pick(['8', '9', 'a', 'b'])}${chars(HEX, 3)}-${chars(HEX, 12)}`;
    out.push(frame('uuid', pick(['request id {}', 'trace {} failed', 'uuid={}']), null, uuid));
  }
  for (let i = 0; i < 20; i++) {
    const hash = chars(HEX, pick([7, 12, 40, 64]));
    out.push(
      frame('hash', pick(['commit {} fixed it', 'sha256:{}', 'checksum {} ok', 'merged in {}']), null, hash),
    );
  }
  return out;
}

const proseWords = [
  'the',
  'model',
  'returns',
  'vectors',
  'for',
  'each',
  'input',
  'and',
  'we',
  'store',
  'them',
  'in',
  'a',
  'small',
  'index',
  'team',
  'meeting',
  'notes',
  'quarterly',
  'report',
  'shows',
  'growth',
  'across',
  'regions',
  'customer',
  'support',
  'latency',
  'improved',
  'after',
  'migration',
  'to',
  'new',
  'cluster',
  'please',
  'review',
  'draft',
];

function prose(): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  for (let i = 0; i < 40; i++) {
    const words = Array.from({ length: int(8, 30) }, () => pick(proseWords));
    if (i % 3 === 0) words.splice(int(0, words.length), 0, String(int(2, 2030)));
    if (i % 4 === 0) words.splice(int(0, words.length), 0, `${int(1, 99)}.${int(0, 9)}%`);
    out.push(entry('prose', [`${words.join(' ')}.`]));
  }
  return out;
}

/**
 * Real-world spellings that are hard for the detectors: they keep the recall
 * figure honest.
 */
function hardPositives(): CorpusEntry[] {
  const cases: [DetectorName, string, string][] = [
    ['email', 'Reply to {} today', "sean.o'brien@example.ie"],
    ['email', '"{}"', 'quoted@example.com'],
    ['phone', 'Moscow office {}', '+7 (495) 123-45-67'],
    ['phone', 'UK mobile {}', '07700 900123'],
    ['phone', 'Call {} now', '+1.415.555.2671'],
    ['phone', 'Germany: {}', '0049 30 12345678'],
    ['phone', 'Brussels {}', '02 123 45 67'],
    ['ssn', 'her SSN is {}', '219099998'],
    ['payment-card', '1001 {} 12/27', '4111111111111111'],
    ['payment-card', 'qty 2 {}', '4111 1111 1111 1111'],
    ['iban', 'iban: {}', 'de89 3704 0044 0532 0130 00'],
    ['ipv4', 'legacy host {}', '010.000.000.001'],
    [
      'jwt',
      'encrypted {}',
      'eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ',
    ],
    ['aws-key', 'SecretAccessKey={}', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
  ];
  return cases.map(([detector, template, value]) => frame(`hard-${detector}`, template, detector, value));
}

/**
 * Values grouped with Unicode spaces, dashes or invisible characters, as
 * locale-formatted documents write them, or written in full-width forms, as
 * Japanese and Chinese documents do; the model's tokenizer reads them as the
 * plain value.
 */
function unicodeSpellings(): CorpusEntry[] {
  const cases: [DetectorName, string, string][] = [
    ['payment-card', 'Carte bancaire : {}', '4111\u00a01111\u00a01111\u00a01111'],
    ['payment-card', 'Carte : {} exp. 12/27', '5500\u202f0000\u202f0000\u202f0004'],
    ['payment-card', 'card {} on file', '4012\u20098888\u20098888\u20091881'],
    ['payment-card', 'pay with {}', '4012\u200b8888\u200b8888\u200b1881'],
    ['payment-card', 'Amex {}', '3782\u00a0822463\u00a010005'],
    ['ssn', 'SSN {}', '123\u00a045\u00a06789'],
    ['ssn', 'her number is {}', '536\u201390\u20134127'],
    ['iban', 'IBAN : {}', 'FR76\u00a03000\u00a06000\u00a00112\u00a03456\u00a07890\u00a0189'],
    ['iban', 'Konto {}', 'DE89\u202f3704\u202f0044\u202f0532\u202f0130\u202f00'],
    ['phone', 'Tél. : {}', '01\u00a023\u00a045\u00a067\u00a089'],
    ['phone', 'UK office {}', '+44\u00a020\u00a07946\u00a00958'],
    ['phone', 'call {} now', '(415)\u00a0555\u20110132'],
    ['email', 'write to {}', 'john\u200b@example.com'],
    ['email', 'mail {} today', 'alice.smith@exa\u00admple.org'],
    ['aws-key', 'key {}', 'AKIA\u200bIOSFODNN7EXAMPLE'],
    ['ssn', '社会保障番号 {}', '\uff15\uff13\uff16\uff0d\uff19\uff10\uff0d\uff14\uff11\uff12\uff17'],
    ['payment-card', 'カード番号：{}', '\uff14\uff11\uff11\uff11\u3000\uff11\uff11\uff11\uff11\u3000\uff11\uff11\uff11\uff11\u3000\uff11\uff11\uff11\uff11'],
    ['email', 'メール：{}', '\uff4a\uff4f\uff48\uff4e\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d'],
    ['phone', '電話 {}', '\uff0b\uff14\uff14 \uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18'],
  ];
  return cases.map(([detector, template, value]) => frame(`unicode-${detector}`, template, detector, value));
}

/**
 * Characters tokenizers delete (U+FFFD from a bad decoding, private-use glyphs
 * of a PDF extraction), or read as a space (tabs, line breaks), inside a value.
 */
function deletedAndBrokenSpellings(): CorpusEntry[] {
  const cases: [DetectorName, string, string][] = [
    ['payment-card', 'card {} on file', '5500\ufffd0000\ufffd0000\ufffd0004'],
    ['email', 'write to {}', 'anna\ufffd@example.org'],
    ['iban', 'IBAN {}', 'DE89\ufffd3704\ufffd0044\ufffd0532\ufffd0130\ufffd00'],
    ['phone', 'UK office {}', '+44\ufffd20\ufffd7946\ufffd0958'],
    ['payment-card', 'extracted: {}', '4012\ue0008888\ue0008888\ue0001881'],
    ['aws-key', 'key {}', 'AKIA\ufffdIOSFODNN7EXAMPLE'],
    ['payment-card', 'card on file: {}', '4111 1111\n1111 1111'],
    ['iban', 'IBAN: {}', 'DE89 3704 0044\n0532 0130 00'],
    ['payment-card', 'Karte\t{}', '4111\t1111\t1111\t1111'],
    ['ssn', 'SSN\n{}', '536\n90\n4127'],
    ['phone', 'Tel.\t{}', '+44\t20\t7946\t0958'],
    ['payment-card', 'card {} exp 12/27', '3782 822463\r\n10005'],
  ];
  return cases.map(([detector, template, value]) => frame(`unicode-${detector}`, template, detector, value));
}

/** Values in characters NFKC folds to ASCII: mathematical, circled, small forms. */
function nfkcSpellings(): CorpusEntry[] {
  const cases: [DetectorName, string, string][] = [
    ['payment-card', 'card {}', '𝟒𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏 𝟏𝟏𝟏𝟏'],
    ['ssn', 'SSN {}', '𝟓𝟑𝟔-𝟗𝟎-𝟒𝟏𝟐𝟕'],
    ['ssn', 'her number is {}', '①②③-④⑤-⑥⑦⑧⑨'],
    ['email', 'contact {}', 'john\ufe6bexample.com'],
    ['email', 'mail {} today', 'alice.smith@example\ufe52org'],
  ];
  return cases.map(([detector, template, value]) => frame(`unicode-${detector}`, template, detector, value));
}

/** Numbers that locale formatting groups with the same characters, and no personal data. */
function unicodeLookalikes(): CorpusEntry[] {
  return [
    'Montant : 1\u202f234\u00a0567,89\u00a0€',
    'Population\u00a0: 12\u00a0345\u00a0678 habitants en 2021',
    'Années 2019\u20132024, pages 123\u2013145',
    'ISBN 978\u20110\u2011306\u201140615\u20117',
    'Zeitraum 01.01.2024\u2009\u2013\u200931.12.2024',
    'Invoice\u00a0No.\u00a04471\u00a02290\u00a01183',
    'Preis: 1\u00a0299,00\u00a0€ inkl. MwSt.',
    'Temperature \u221212\u00a0°C at 06:30',
    '注文番号：\uff14\uff14\uff17\uff11\uff0d\uff12\uff12\uff19\uff10',
    '価格：\uff11\uff0c\uff12\uff19\uff18円（税込）、型番 \uff23\uff14',
    'Scores:\n12\n45\n7\n31',
    'Years:\n2019\n2020\n2021\n2022',
    'Lot numbers:\n4471\n2290\n1183\n5521',
    'Rooms\t101\t102\t103\t104',
    'id\tcount\tyear\n1042\t17\t2021\n1043\t9\t2022',
    'Totals\r\n1200\r\n3400\r\n5600',
    'Page 12\n34 56\n78 90',
    'Invoice 4471\n2290 1183 items',
    'Caf\ufffd au lait, 12\ufffd50 EUR',
    'E = mc² and x³ + y³ = z³',
    'footnotes¹² and ³⁴',
    'Step ① then ② then ③',
    '𝐁𝐨𝐥𝐝 heading 𝟐𝟎𝟐𝟒',
    'H₂O and CO₂ at 25 °C',
    'Area 1200 m² for 3456 €',
  ].map((text) => entry('unicode-lookalike', [text]));
}

/** Addresses with letters of other scripts, or a punycode top-level label. */
function internationalEmails(): CorpusEntry[] {
  const cases: [string, string][] = [
    ['Schreiben Sie an {}.', 'anna@müller.de'],
    ['mail {} today', 'ivan@example.xn--p1ai'],
    ['From: {}', 'jöhn.smith@example.com'],
    ['почта: {}.', 'иван@пример.рф'],
    ['请联系{}谢谢', 'support@example.com'],
    ['Contacto: {}', 'josé.garcía@correo.es'],
  ];
  return cases.map(([template, value]) => frame('email-international', template, 'email', value));
}

/** Secrets whose fixed prefix is in another case: uncased models read them as the secret. */
function otherCaseSecrets(): CorpusEntry[] {
  const cases: [DetectorName, string, string][] = [
    ['aws-key', 'aws_access_key_id = {}', 'akia2e0a8f3b244c9986'],
    ['github-token', 'TOKEN={}', 'GHP_K7d1Qm2Zx9Lp4Rt6Vw8Yb0Nc3Fh5Jg7Sa1De'],
    ['gcp-key', 'key={}', 'aizaSyD4nq0TB8a1x2E3r4T5y6U7i8O9p0AsDfG'],
    [
      'private-key',
      'key.pem:\n{}\n',
      '-----begin ec private key-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oTNX1yB6PpW9oAoGCCqGSM49\n-----end ec private key-----',
    ],
  ];
  return cases.map(([detector, template, value]) => frame(`case-${detector}`, template, detector, value));
}

/**
 * Combining marks after a digit, a space or punctuation, which join nothing
 * (tokenizers that strip accents drop them), and a character left out where a
 * group break was.
 */
function markSpellings(): CorpusEntry[] {
  const cases: [DetectorName, string, string][] = [
    ['payment-card', 'card {} on file', '4111\u03011111 1111 1111'],
    ['payment-card', 'Karte {} gültig bis 12/27', '5500\u0300 0000\u0300 0000\u0300 0004'],
    ['payment-card', 'pay with {}', '4012\u200b8888 8888 1881'],
    ['ssn', 'SSN {} on file', '536-90\u0301-4127'],
    ['iban', 'IBAN {}', 'DE89 3704\u0308 0044 0532 0130 00'],
    ['phone', 'UK office {}', '+44 20\u0301 7946 0958'],
    ['email', 'write to {}', 'john@\u0301example.com'],
    ['aws-key', 'key {} leaked', 'AKIAIOSFODNN7\u0301EXAMPLE'],
    ['ipv4', 'server at {}', '192.168.\u03011.20'],
  ];
  return cases.map(([detector, template, value]) => frame(`mark-${detector}`, template, detector, value));
}

/** Card numbers grouped by dashes between spaces, as typeset text writes them. */
function spacedDashCards(): CorpusEntry[] {
  const cases: [string, string][] = [
    ['Card number: {}', '4111 - 1111 - 1111 - 1111'],
    ['charged to {} on Friday', '5500 \u2013 0000 \u2013 0000 \u2013 0004'],
    ['Amex {}', '3782 - 822463 - 10005'],
  ];
  return cases.map(([template, value]) => frame('payment-card-spaced-dash', template, 'payment-card', value));
}

const withLuhn = (payload: string): string => payload + luhnCheckDigit(payload);

/**
 * Values after a label and '#', '.', '-', '_' or '/'; split by runs of white
 * space, which tokenizers read as one; dashes that NFKC folds to a dash read as
 * '-'; and the issuers RuPay, Troy and UATP.
 */
function labelledAndSpacedSpellings(): CorpusEntry[] {
  const cases: [DetectorName, string, string][] = [
    ['ssn', 'SSN#{} on file', '536-90-4127'],
    ['ssn', 'SS#{}', '123-45-6789'],
    ['ssn', 'Employee SSN #{}', '219-09-9998'],
    ['ssn', 'SSN {} on file', '123  45  6789'],
    ['ssn', 'her number is {}', '123\ufe5845\ufe586789'],
    ['ssn', 'SSN {}', '536\u207b90\u208b4127'],
    ['payment-card', 'Card #{}', '4111111111111111'],
    ['payment-card', 'Acct#{} on file', '4111 1111 1111 1111'],
    ['payment-card', 'Card No.{}', '5500000000000004'],
    ['payment-card', 'card-{}', '4012888888881881'],
    ['payment-card', 'cc_{}&cvv=123', '4111111111111111'],
    ['payment-card', 'GET /card/{} HTTP/1.1', '4111000000000008'],
    ['payment-card', 'charged to {} on Friday', '4111  0000  0000  0008'],
    ['payment-card', 'Carte : {}', '5500\u00a0 0000\u00a0 0000\u00a0 0004'],
    ['payment-card', 'card {}', '4111\ufe581111\ufe581111\ufe581111'],
    ['payment-card', 'RuPay {}', groupsOf(withLuhn('810000000000000'), 4, ' ')],
    ['payment-card', 'RuPay card {}', groupsOf(withLuhn('508500000000123'), 4, ' ')],
    ['payment-card', 'Troy {}', groupsOf(withLuhn('979200000000001'), 4, ' ')],
    ['payment-card', 'UATP {}', formatCard(withLuhn('12340000000001'), [4, 5, 6], ' ')],
    ['iban', 'IBAN: {}', 'DE89  3704  0044 0532 0130 00'],
    ['iban', 'Account: {}', 'GB82\u00a0 WEST 1234 5698 7654 32'],
  ];
  return cases.map(([detector, template, value]) => frame(`labelled-spaced-${detector}`, template, detector, value));
}

/**
 * Phone numbers with an extension or the international 00 prefix, and SSNs
 * right after a label and '-', '/', '_' or '.', as cards are found after one.
 */
function extensionsAndLabelledSsns(): CorpusEntry[] {
  const cases: [DetectorName, string, string][] = [
    ['phone', 'Call {} today', '415-555-0100x123'],
    ['phone', 'Desk: {}.', '(415) 555-0134 ext. 12'],
    ['phone', 'Office {} (reception)', '+44 20 7946 0958 x204'],
    ['phone', 'Berlin: {}', '0049 30 901820'],
    ['phone', 'from Europe dial {}', '001 415 555 0100'],
    ['ssn', 'SSN-{} on file', '536-90-4127'],
    ['ssn', 'GET /SSN/{} HTTP/1.1', '123-45-6789'],
    ['ssn', 'ssn_{}&dob=1980', '536904127'],
  ];
  return cases.map(([detector, template, value]) => frame(`extension-label-${detector}`, template, detector, value));
}

/** Addresses whose local part is in a script written without spaces. */
function unspacedEmails(): CorpusEntry[] {
  const cases: [string, string][] = [
    ['联系：{}。', '用户@例子.广告'],
    ['メール {} まで', 'ユーザー@例え.テスト'],
    ['ติดต่อ {} ครับ', 'ผู้ใช้@ตัวอย่าง.ไทย'],
    ['宛先：{}', '二ノ宮@黒川.日本'],
    ['邮箱 {}', '张伟2024@163.com'],
  ];
  return cases.map(([template, value]) => frame('email-unspaced', template, 'email', value));
}

/** Look-alikes a careful reader would still not call personal data. */
function hardNegatives(): CorpusEntry[] {
  return [
    'Lottery draw: 07 12 15 22 31 45 bonus 9',
    'SSN 078-05-1120 was printed on sample wallet cards in 1938.',
    'Population 1 234 567 890 in 2025',
    'Call 1-800-FLOWERS for delivery',
    'Tx hash 0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060',
    'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq is a bitcoin address',
    'Coordinates 40.7128 N, 74.0060 W',
    '-----\nNever paste your private key here.\n-----',
    'Paste the -----BEGIN CERTIFICATE----- block, never the private key, then -----END CERTIFICATE-----.',
    'Table AsiaPacificSalesData, column asiaticlionsanctuary',
    'See docs/ghp_readme and AIZA notes',
    'Übergröße@Lager, siehe Größe 42@Müller-Laden',
    'Москва@2024 и Питер@весна',
    '見積もり@本社、価格@東京',
    'café@home-office, naïve@work',
    'E-Mail: müller at beispiel dot de',
    '単価＠１００円．合計：４００円',
    '単価@120円.送料@500円.',
    '渋谷@カフェ。最高',
    'Meet me @ the cafe.Then we go',
    'Rooms 1\ufe0f\u20e3 2\ufe0f\u20e3 3\ufe0f\u20e3 4\ufe0f\u20e3',
    'Lot 4471\u0301 2290\u0301 1183\u0301 5521',
    'Tie\u0302\u0301ng Vie\u0323\u0302t 2024, pho\u031b\u0309 12 50',
    'Budget 4000 - 1500 - 250 - 99 = 2151',
    'Card 4111 - 1111 - 1111 - 1112 fails Luhn',
    'Net 500 - 25 - 1200 = -725',
    'Score 3 - 2 - 1 after extra time',
    // Numbers after '#', '.' or '-' with no card or SSN label before it.
    'Order #1234-56-7890 shipped',
    'Ticket #536-90-4127 reopened',
    'Upgrade to v4.111.111 today',
    'SKU-4111111111111112 is out of stock',
    'Invoice #4111 1111 1111 1112 paid',
    'ratio 0.4111111111111111 of the total',
    'Lot  4471  2290  1183  5521',
    'Tracking 1234 5678 9012 3452',
    'Serial 1234567890123',
    'Timestamp 1000000000009 ms',
    // 00 and a number that is no country code: an account or order number.
    'Account 0012 3456 7890 closed',
    'Ref 0099 1234 5678 attached',
    'Part no. 0042-1234-5678 in stock',
  ].map((text) => entry('hard-negative', [text]));
}

export function buildCorpus(): CorpusEntry[] {
  const positives = [
    ...emails(),
    ...phones(),
    ...ssns(),
    ...cards(),
    ...ibans(),
    ...ipv4s(),
    ...ipv6s(),
    ...jwts(),
    ...privateKeys(),
    ...awsKeys(),
    ...gcpKeys(),
    ...githubTokens(),
    ...hardPositives(),
    ...unicodeSpellings(),
    ...deletedAndBrokenSpellings(),
    ...nfkcSpellings(),
    ...otherCaseSecrets(),
    ...internationalEmails(),
    ...markSpellings(),
    ...spacedDashCards(),
    ...unspacedEmails(),
    ...labelledAndSpacedSpellings(),
    ...extensionsAndLabelledSsns(),
  ];
  const fixedLookalikes = Object.entries(lookalikes).flatMap(([tag, texts]) =>
    texts.map((t) => entry(tag, [t])),
  );
  const negatives = [
    ...invalidCards(),
    ...invalidIbans(),
    ...invalidSsns(),
    ...fixedLookalikes,
    ...generatedLookalikes(),
    ...prose(),
    ...hardNegatives(),
    ...unicodeLookalikes(),
  ];
  return [...positives, ...negatives];
}

// Unicode spaces, dashes, invisible and private-use characters, U+FFFD, small and full-width forms, combining marks of symbols and Latin, written as escapes so a reader of the file sees them.
const unseen =
  /[\u0085\u00a0\u00ad\u0300-\u036f\u2000-\u2015\u2024\u2028-\u202f\u205f-\u206f\u20d0-\u20ff\u2212\u3000\ue000-\uf8ff\ufe00-\ufe0f\ufe50-\ufe6b\ufeff\uff01-\uff5e\ufffd]/g;
const escaped = (ch: string): string => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;

export function serializeCorpus(corpus: readonly CorpusEntry[]): string {
  return `[\n${corpus.map((e) => JSON.stringify(e).replace(unseen, escaped)).join(',\n')}\n]\n`;
}

if (import.meta.main) {
  writeFileSync(new URL('./corpus.json', import.meta.url), serializeCorpus(buildCorpus()));
}
