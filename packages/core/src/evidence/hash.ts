import { createHash } from 'node:crypto';

/** SHA-256 of `bytes`, lower-case hex: the digest spelling of evidence format v1. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** SHA-256 of `bytes`, base64: the spelling S3 uses for `x-amz-checksum-sha256`. */
export function sha256Base64(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('base64');
}
