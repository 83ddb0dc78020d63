// IPv4 dotted quads. Version strings are the common look-alike: "v1.2.3.4",
// "1.2.3.4-beta", "1.2.3" and "version 1.2.3.4" are not addresses. A bare
// "1.2.3.4" in prose is, since nothing tells it apart.
import type { Finder, Span } from '../finder.ts';
import { scan } from '../finder.ts';
import { ipv4Valid } from '../validators.ts';

const candidateRegex = /(?<![\w.-])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w+-]|\.\d)/g;
const versionLabel = /(?:version|release|build|ver\.?)\W{0,3}$/i;

function accept(match: RegExpExecArray): Span | null {
  if (!ipv4Valid(match[0])) return null;
  const before = match.input.slice(Math.max(0, match.index - 12), match.index);
  if (versionLabel.test(before)) return null;
  return { start: match.index, end: match.index + match[0].length };
}

/** Octets as numbers: "010.000.000.001" is the address 10.0.0.1 and hashes as it does. */
const normalizeIpv4 = (value: string): string =>
  value
    .split('.')
    .map((octet) => String(Number(octet)))
    .join('.');

export const ipv4: Finder = {
  id: 'ipv4',
  label: 'IPV4',
  mayMatch: (_text, features) => features.dots >= 3,
  find: (text) => scan(candidateRegex, text, accept),
  normalize: normalizeIpv4,
};
