// The S3 client the auditor's commands use, and the translation of its
// failures into one line an auditor can act on.
import { S3Client } from '@aws-sdk/client-s3';
import { CliError } from '../command.ts';
import { networkCode } from '../network.ts';

export type S3Target = {
  /** Absent for AWS itself. */
  endpoint: string | undefined;
  region: string | undefined;
  pathStyle: boolean;
};

/** Credentials come from the AWS SDK default chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, SSO, IMDS …). */
export function createS3Client(target: S3Target): S3Client {
  return new S3Client({
    ...(target.endpoint ? { endpoint: target.endpoint } : {}),
    region: target.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: target.pathStyle,
    maxAttempts: 3,
    // Checksums are asked for per request (ChecksumMode), so a mismatch can be kept as evidence.
    responseChecksumValidation: 'WHEN_REQUIRED',
    // Without a connection timeout an endpoint that drops packets hangs the pull forever.
    requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
  });
}

type SdkError = Error & {
  Code?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
};

const credentialCodes = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'InvalidClientTokenId',
  // S3-compatible gateways name an unknown access key their own way.
  'XAdminUserNotFound',
]);

/**
 * A CliError naming what went wrong with `bucket` at `endpoint`, after what
 * the request was `about` (an operation on one version) when given; never
 * echoes credentials.
 */
export function describeS3Error(
  error: unknown,
  bucket: string,
  endpoint: string | undefined,
  about?: string,
): CliError {
  const described = describeFailure(error, bucket, endpoint);
  return about === undefined ? described : new CliError(`${about}: ${described.message}`);
}

function describeFailure(error: unknown, bucket: string, endpoint: string | undefined): CliError {
  const where = endpoint ?? 'AWS S3';
  const e = error as SdkError;
  const code = e.Code ?? e.name;
  if (e.name === 'CredentialsProviderError' || /could not load credentials/i.test(e.message ?? '')) {
    return new CliError(
      'no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE',
    );
  }
  if (code === 'NoSuchBucket') return new CliError(`bucket "${bucket}" does not exist at ${where}`);
  if (credentialCodes.has(code)) {
    return new CliError(`${where} refused the credentials (${code}): check AWS_ACCESS_KEY_ID and its secret`);
  }
  if (code === 'AccessDenied' || e.$metadata?.httpStatusCode === 403) {
    return new CliError(`access to bucket "${bucket}" at ${where} was denied (${code})`);
  }
  const network = networkCode(error);
  if (network) return new CliError(`cannot reach ${where} (${network})`);
  if (e.name === 'TimeoutError') return new CliError(`${where} did not answer in time`);
  return new CliError(`S3 request to ${where} failed: ${code}: ${e.message}`);
}
