// The sidecar process: configuration from the environment the injector writes,
// then serve until SIGTERM or SIGINT, and close within a grace period.
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_AUDIT_CLOSE_GRACE_SECONDS, exportSigningKey, generateSigningKey } from '@veil/core';
import { configFromEnv, type SidecarConfig } from './config.ts';
import { type RunningSidecar, requestDrainMs, type SidecarOptions, startSidecar } from './sidecar.ts';
import { shutdownTelemetry } from './telemetry.ts';

/** What closing takes besides the drain and the recorder's grace: the other closers, and the spool's own close. */
const closeMarginMs = 3_000;

/**
 * How long a close may take before the process exits anyway: the data port's
 * drain (twice requestDrainMs at most), then the audit recorder's own close
 * grace, and a margin. By default 27 s, under the pod's default 30 s
 * termination grace, so the kubelet never has to kill; a longer recorder grace
 * moves it along, so that its closing manifest is never cut short here.
 */
function shutdownGraceMs(config: SidecarConfig): number {
  const auditGraceMs = (config.auditCloseGraceSeconds ?? DEFAULT_AUDIT_CLOSE_GRACE_SECONDS) * 1000;
  return 2 * requestDrainMs + auditGraceMs + closeMarginMs;
}

// Without a bucket, evidence stays in the pod: on its writable state volume, never
// in the working directory (read-only in the image).
const env = { ...process.env };
if (!env.VEIL_S3_BUCKET && !env.VEIL_AUDIT_DIR && env.VEIL_STATE_DIR) {
  env.VEIL_AUDIT_DIR = join(env.VEIL_STATE_DIR, 'evidence');
}

// In a pod, the kube-apiserver serves service-account issuer discovery and keys with
// the cluster CA, and to authenticated service accounts only. Both go to the
// in-cluster issuer names alone: the pod's token is its API-server credential.
const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';
const inClusterIssuers = ['https://kubernetes.default.svc.cluster.local', 'https://kubernetes.default.svc'];
function inClusterAuth(): SidecarOptions['authOptions'] {
  if (!existsSync(`${serviceAccountDir}/ca.crt`) || !existsSync(`${serviceAccountDir}/token`))
    return undefined;
  const ca = readFileSync(`${serviceAccountDir}/ca.crt`, 'utf8');
  // Projected tokens rotate: read anew for each request.
  const token = async () => (await readFile(`${serviceAccountDir}/token`, 'utf8')).trim();
  return {
    issuerCa: Object.fromEntries(inClusterIssuers.map((issuer) => [issuer, ca])),
    serviceAccountCredentials: Object.fromEntries(inClusterIssuers.map((issuer) => [issuer, token])),
  };
}

// The injector points VEIL_SIGNING_KEY_FILE at an in-memory volume that is empty
// when the pod starts: the first incarnation creates the key, later ones reuse it.
async function ensureSigningKey(file: string | undefined): Promise<void> {
  if (!file || existsSync(file)) return;
  const jwk = JSON.stringify(exportSigningKey(generateSigningKey()));
  await writeFile(file, jwk, { mode: 0o600, flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
}

function fail(error: unknown): never {
  console.error(`veil-sidecar: ${(error as Error).message}`);
  process.exit(1);
}

let config: SidecarConfig;
try {
  config = configFromEnv(env);
} catch (error) {
  fail(error);
}
const closeWithinMs = shutdownGraceMs(config);

async function start(): Promise<RunningSidecar> {
  await ensureSigningKey(env.VEIL_SIGNING_KEY_FILE);
  return startSidecar(config, { authOptions: inClusterAuth() });
}

let stopping = false;
async function stop(signal: NodeJS.Signals, starting: Promise<RunningSidecar>): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`veil-sidecar: ${signal}, closing`);
  // From the signal on, the start included: one that never finishes (a volume
  // that hangs) must not hold the exit past the deadline either.
  setTimeout(() => {
    console.error(`veil-sidecar: not closed after ${closeWithinMs} ms, exiting`);
    process.exit(1);
  }, closeWithinMs);
  // A signal during the start waits for it: what it opened (the audit stream
  // above all) is then closed as usual. A failed start exits by itself.
  const sidecar = await starting;
  try {
    await sidecar.close();
    console.log('veil-sidecar: closed');
    process.exitCode = 0;
  } catch (error) {
    console.error(`veil-sidecar: close failed: ${(error as Error).message}`);
    process.exitCode = 1;
  }
  // Last, so the spans of the close itself go out too; within the deadline still.
  await shutdownTelemetry();
  // Keep-alive handles may linger: the process is done.
  process.exit();
}

const starting: Promise<RunningSidecar> = start().catch(fail);
// In the same tick as the start: no signal is left to Node's default handling,
// which would end the process with the audit stream open.
process.once('SIGTERM', (signal) => void stop(signal, starting));
process.once('SIGINT', (signal) => void stop(signal, starting));
const sidecar = await starting;
console.log(`veil-sidecar: proxy ${sidecar.url}, admin ${sidecar.adminUrl}`);
