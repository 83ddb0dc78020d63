// Checksum and structure validators. Each takes the candidate text a detector
// found and answers whether it really is what its shape suggests.
import { Buffer } from 'node:buffer';
import { ibanLength } from './iban-lengths.ts';

/** Luhn (mod 10) check over a string of ASCII digits. */
export function luhnValid(digits: string): boolean {
  if (!/^\d{2,}$/.test(digits)) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * ISO 13616 IBAN check: known country, that country's length, and the mod-97
 * remainder 1 over the rearranged number. Accepts the compact, upper-case form.
 */
export function ibanValid(iban: string): boolean {
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(iban)) return false;
  if (ibanLength(iban.slice(0, 2)) !== iban.length) return false;
  return mod97(iban.slice(4) + iban.slice(0, 4)) === 1;
}

/** Remainder mod 97 of the number whose digits are the characters, letters as 10..35. */
export function mod97(alphanumeric: string): number {
  let remainder = 0;
  for (const ch of alphanumeric) {
    const code = ch.charCodeAt(0);
    const value = code <= 57 ? code - 48 : code - 55;
    remainder = value > 9 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97;
  }
  return remainder;
}

// Numbers the SSA voided after they were printed in advertising.
const voidedSsns = new Set(['078051120', '219099999']);

/** US SSN rules: no area 000, 666 or 900-999, no group 00, no serial 0000, not voided. */
export function ssnValid(area: string, group: string, serial: string): boolean {
  if (area === '000' || area === '666' || area.startsWith('9')) return false;
  return group !== '00' && serial !== '0000' && !voidedSsns.has(area + group + serial);
}

/** Dotted-quad IPv4: four decimal octets 0-255 (zero-padded ones, as in 010.000.000.001, too). */
export function ipv4Valid(text: string): boolean {
  const octets = text.split('.');
  return octets.length === 4 && octets.every(isOctet);
}

function isOctet(part: string): boolean {
  return /^\d{1,3}$/.test(part) && Number(part) <= 255;
}

/**
 * Parses an IPv6 address in RFC 4291 text form (full, `::`-compressed, or with a
 * trailing dotted IPv4) into its eight 16-bit groups; null when it is not one.
 * Zone ids (`%eth0`) are not part of the address and are rejected here.
 */
export function parseIPv6(text: string): number[] | null {
  if (text.length < 2 || text.length > 45) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const [head = '', tail] = halves;
  if (tail === undefined) {
    const groups = parseGroups(head, true);
    return groups?.length === 8 ? groups : null;
  }
  const left = parseGroups(head, false);
  const right = parseGroups(tail, true);
  if (left === null || right === null || left.length + right.length > 7) return null;
  const zeros = new Array<number>(8 - left.length - right.length).fill(0);
  return [...left, ...zeros, ...right];
}

function parseGroups(part: string, mayEndInIPv4: boolean): number[] | null {
  if (part === '') return [];
  const pieces = part.split(':');
  const groups: number[] = [];
  for (const [i, piece] of pieces.entries()) {
    if (/^[0-9A-Fa-f]{1,4}$/.test(piece)) {
      groups.push(Number.parseInt(piece, 16));
    } else if (mayEndInIPv4 && i === pieces.length - 1 && ipv4Valid(piece)) {
      const [a = 0, b = 0, c = 0, d = 0] = piece.split('.').map(Number);
      groups.push(a * 256 + b, c * 256 + d);
    } else {
      return null;
    }
  }
  return groups;
}

/** A JWS/JWE compact header: base64url of a JSON object carrying a string `alg`. */
export function jwtHeaderValid(segment: string): boolean {
  if (!/^[A-Za-z0-9_-]+$/.test(segment)) return false;
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return false;
  }
  return (
    typeof header === 'object' && header !== null && typeof (header as { alg?: unknown }).alg === 'string'
  );
}
