// Credentials. Each has a distinctive literal (eyJ, -----BEGIN, AKIA, AIza, ghp_)
// that serves as the prefilter. All but eyJ match in any case: a JWT's header
// must decode, which it does not once its case is changed.
import type { Finder, Span } from '../finder.ts';
import { identity, scan } from '../finder.ts';
import { jwtHeaderValid } from '../validators.ts';

const whole = (match: RegExpExecArray): Span => ({ start: match.index, end: match.index + match[0].length });

// A header segment starts with base64url of `{"`. A JWS compact token has three
// segments, its payload never empty; a JWE token has five. The token must fill
// its run of base64url and dots, so a candidate never reaches past a sixth
// segment: one reaching to the end of the run cost a pass over the rest of the
// text for every dot a rejected start was retried after.
const jwtRegex =
  /(?<![\w-])(eyJ[A-Za-z0-9_-]{2,})(?:\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|(?:\.[A-Za-z0-9_-]*){4})(\.?)(?![A-Za-z0-9_.-])/g;

/** A dot after the last segment ends the sentence ("token eyJ….eyJ….sig."), not the token. */
function acceptJwt(match: RegExpExecArray): Span | null {
  const [token, header = '', sentenceEnd = ''] = match;
  if (!jwtHeaderValid(header)) return null;
  return { start: match.index, end: match.index + token.length - sentenceEnd.length };
}

export const jwt: Finder = {
  id: 'jwt',
  label: 'JWT',
  // 'J' first: a one-character search is far cheaper than one for 'eyJ', whose 'e' is everywhere.
  mayMatch: (text) => text.includes('J') && text.includes('eyJ'),
  find: (text) => scan(jwtRegex, text, acceptJwt),
  normalize: identity,
};

// A key runs from its header to the next END line of a private key, whatever
// lies between: quotes and `+` when it is written as string concatenation in
// code, a stray character in a pasted body. The END line is looked for once per
// scan and kept, so the scan stays linear in the text; it must follow within
// maxKeyLength, so one truncated key does not swallow a document. Without it,
// a key cut off (a truncated chunk) is masked up to where its body stops, so no
// part of it leaks. Header words may be in any case and split by any white space.
const label = String.raw`\s[A-Z0-9\s]{0,40}?PRIVATE\s+KEY(?:\s+BLOCK)?-----`;
const pemHeader = new RegExp(`-----BEGIN${label}`, 'gi');
const pemEnd = new RegExp(`-----END${label}`, 'gi');
/** Base64, line breaks (escaped too) and the header fields of an encrypted key, such as `Proc-Type: 4,ENCRYPTED`. */
const pemBody = /[A-Za-z0-9+/=\s:,.\\-]*/y;
/** Well above the longest PEM or PGP private key in use (a 4096-bit RSA key is about 3.3 KiB). */
const maxKeyLength = 16 * 1024;

/** Where a key cut off before its END line ends: its body, without the line break after it. */
function truncatedEnd(text: string, bodyStart: number): number {
  pemBody.lastIndex = bodyStart;
  return bodyStart + (pemBody.exec(text)?.[0].trimEnd().length ?? 0);
}

function findPrivateKeys(text: string): Span[] {
  const spans: Span[] = [];
  // undefined until searched; null when no END line follows.
  let end: RegExpExecArray | null | undefined;
  pemHeader.lastIndex = 0;
  for (let header = pemHeader.exec(text); header !== null; header = pemHeader.exec(text)) {
    const bodyStart = header.index + header[0].length;
    // Searched again only once the END line found before lies behind: each search starts past the last.
    if (end === undefined || (end !== null && end.index < bodyStart)) {
      pemEnd.lastIndex = bodyStart;
      end = pemEnd.exec(text);
    }
    const endLine = end === null ? -1 : end.index + end[0].length;
    const stop =
      endLine >= 0 && endLine - header.index <= maxKeyLength ? endLine : truncatedEnd(text, bodyStart);
    spans.push({ start: header.index, end: stop });
    pemHeader.lastIndex = stop;
  }
  return spans;
}

export const privateKey: Finder = {
  id: 'private-key',
  label: 'PRIVATE_KEY',
  mayMatch: (text) => text.includes('-----'),
  find: findPrivateKeys,
  // The key hashes alike whatever the case and spacing of its BEGIN and END lines.
  normalize: (value) =>
    value.replace(/-----(?:BEGIN|END)\s[^-]*-----/gi, (line) => line.toUpperCase().replace(/\s+/g, ' ')),
};

const awsKeyId = /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/gi;
const awsKeyIdShape = /^(?:AKIA|ASIA)[A-Z0-9]{16}$/i;
// A secret access key is 40 characters of base64 with nothing distinctive, so it
// is only recognised after a label naming it.
const awsSecret =
  /secret[_ -]?(?:access[_ -]?)?key["']?\s{0,4}[:=]\s{0,4}["']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/gi;

/**
 * Key ids are upper case, and uncased models read one written in lower case as
 * the key, so that is found too; with a digit, since "asiaticlionsanctuary" is
 * words. Mixed case ("AsiaPacificSalesData") is a name.
 */
function acceptAwsKeyId(match: RegExpExecArray): Span | null {
  const id = match[0];
  if (id === id.toUpperCase()) return whole(match);
  return id === id.toLowerCase() && /\d/.test(id) ? whole(match) : null;
}

function acceptAwsSecret(match: RegExpExecArray): Span {
  const end = match.index + match[0].length;
  return { start: end - 40, end };
}

export const awsKey: Finder = {
  id: 'aws-key',
  label: 'AWS_KEY',
  mayMatch: (text) => /AKIA|ASIA|secret/i.test(text),
  find: (text) =>
    [...scan(awsKeyId, text, acceptAwsKeyId), ...scan(awsSecret, text, acceptAwsSecret)].sort(
      (a, b) => a.start - b.start,
    ),
  // Key ids are upper case, so one read in lower case is the same key; a secret is not.
  normalize: (value) => (awsKeyIdShape.test(value) ? value.toUpperCase() : value),
};

// Fixed prefixes match in any case: uncased models read `aiza…` and `GHP_…` as
// the key, and the rest of it is still there to be used.
const gcpRegex = /(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])/gi;

export const gcpKey: Finder = {
  id: 'gcp-key',
  label: 'GCP_KEY',
  mayMatch: (text) => /AIza/i.test(text),
  find: (text) => scan(gcpRegex, text, whole),
  // Only the prefix: the rest of a key is case-sensitive, and another case of it another key.
  normalize: (value) => `AIza${value.slice(4)}`,
};

const githubPrefix = /gh[pousr]_|github_pat_/i;
const githubRegex = /(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,251})(?!\w)/gi;

export const githubToken: Finder = {
  id: 'github-token',
  label: 'GITHUB_TOKEN',
  mayMatch: (text) => text.includes('_') && githubPrefix.test(text),
  find: (text) => scan(githubRegex, text, whole),
  normalize: (value) => value.replace(githubPrefix, (prefix) => prefix.toLowerCase()),
};
