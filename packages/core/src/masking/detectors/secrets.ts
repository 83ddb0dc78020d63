// Credentials. Each has a distinctive literal (eyJ, PRIVATE KEY, AKIA, AIza, ghp_)
// that serves as the prefilter.
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

// The body runs to the END line; a key cut off before it (a truncated chunk) is
// masked up to where the base64 stops, so no part of it leaks.
const pemRegex =
  /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|(?![A-Za-z0-9+/=\s:,.\\-]))/g;

/** A truncated key's body may end in a line break that is not part of it. */
function acceptPem(match: RegExpExecArray): Span {
  return { start: match.index, end: match.index + match[0].trimEnd().length };
}

export const privateKey: Finder = {
  id: 'private-key',
  label: 'PRIVATE_KEY',
  mayMatch: (text) => text.includes('PRIVATE KEY'),
  find: (text) => scan(pemRegex, text, acceptPem),
  normalize: identity,
};

const awsKeyId = /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/g;
// A secret access key is 40 characters of base64 with nothing distinctive, so it
// is only recognised after a label naming it.
const awsSecret =
  /secret[_ -]?(?:access[_ -]?)?key["']?\s{0,4}[:=]\s{0,4}["']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/gi;

function acceptAwsSecret(match: RegExpExecArray): Span {
  const end = match.index + match[0].length;
  return { start: end - 40, end };
}

export const awsKey: Finder = {
  id: 'aws-key',
  label: 'AWS_KEY',
  mayMatch: (text) => text.includes('AKIA') || text.includes('ASIA') || /secret/i.test(text),
  find: (text) =>
    [...scan(awsKeyId, text, whole), ...scan(awsSecret, text, acceptAwsSecret)].sort(
      (a, b) => a.start - b.start,
    ),
  normalize: identity,
};

const gcpRegex = /(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])/g;

export const gcpKey: Finder = {
  id: 'gcp-key',
  label: 'GCP_KEY',
  mayMatch: (text) => text.includes('AIza'),
  find: (text) => scan(gcpRegex, text, whole),
  normalize: identity,
};

const githubPrefix = /gh[pousr]_|github_pat_/;
const githubRegex = /(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,251})(?!\w)/g;

export const githubToken: Finder = {
  id: 'github-token',
  label: 'GITHUB_TOKEN',
  mayMatch: (text) => text.includes('_') && githubPrefix.test(text),
  find: (text) => scan(githubRegex, text, whole),
  normalize: identity,
};
