// The built-in detectors, by policy name.
import type { DetectorName } from '../policy/schema.ts';
import { email } from './detectors/email.ts';
import { iban } from './detectors/iban.ts';
import { ipv4 } from './detectors/ipv4.ts';
import { ipv6 } from './detectors/ipv6.ts';
import { paymentCard } from './detectors/payment-card.ts';
import { phone } from './detectors/phone.ts';
import { awsKey, gcpKey, githubToken, jwt, privateKey } from './detectors/secrets.ts';
import { ssn } from './detectors/ssn.ts';
import type { Finder } from './finder.ts';

export const detectors: Readonly<Record<DetectorName, Finder>> = {
  email,
  phone,
  ssn,
  'payment-card': paymentCard,
  iban,
  ipv4,
  ipv6,
  jwt,
  'private-key': privateKey,
  'aws-key': awsKey,
  'gcp-key': gcpKey,
  'github-token': githubToken,
};

/**
 * Which detector of a rule names overlapping matches: secrets first, then the
 * checksummed and more specific kinds, so a token inside a URL's user part is a
 * github-token, digits inside an IBAN are the IBAN, and 012-34-5678 is an SSN
 * before it is a European phone number.
 */
export const detectorPriority: readonly DetectorName[] = [
  'private-key',
  'jwt',
  'aws-key',
  'gcp-key',
  'github-token',
  'iban',
  'payment-card',
  'ssn',
  'email',
  'ipv6',
  'ipv4',
  'phone',
];
