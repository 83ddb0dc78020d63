// IPv6 addresses, full or compressed, optionally ending in a dotted IPv4. The
// regex only finds hex-and-colon runs; the RFC 4291 parser decides. Runs without
// a digit ("Foo::Bar", "std::cafe") are scope operators, not addresses.
import type { Finder, Span } from '../finder.ts';
import { scanAround } from '../finder.ts';
import { parseIPv6 } from '../validators.ts';

const candidateRegex = /(?<![\w:.])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]{1,44}/y;
const hexDigit = /[0-9A-Fa-f]/;

function accept(match: RegExpExecArray): Span | null {
  let value = match[0].replace(/\.+$/, '');
  if (value.endsWith(':') && !value.endsWith('::')) value = value.slice(0, -1);
  const end = match.index + value.length;
  if (!/\d/.test(value) || /\w/.test(match.input.charAt(end))) return null;
  return parseIPv6(value) === null ? null : { start: match.index, end };
}

export const ipv6: Finder = {
  id: 'ipv6',
  label: 'IPV6',
  // Uncompressed, eight groups take seven colons, or six when the last two are a dotted IPv4.
  mayMatch: (_text, features) =>
    features.doubleColon || features.colons >= 7 || (features.colons >= 6 && features.dots >= 3),
  find: (text) => scanAround(text, ':', hexDigit, 4, candidateRegex, accept),
  // Canonical groups, so 2001:db8::1 and 2001:0DB8:0:0:0:0:0:1 hash alike.
  normalize: (value) =>
    parseIPv6(value)
      ?.map((group) => group.toString(16))
      .join(':') ?? value,
};
