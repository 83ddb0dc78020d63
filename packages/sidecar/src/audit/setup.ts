// The audit recorder as the sidecar's configuration asks for it: S3 when a
// bucket is named, else the local evidence directory; batch and retention
// settings from the policy in force.
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  auditSchema,
  DEFAULT_AUDIT_CLOSE_GRACE_SECONDS,
  DEFAULT_SPOOL_CAPACITY_BYTES,
  importSigningKey,
  type SigningKey,
} from '@veil/core';
import { evidenceStoreWarnings, type SidecarConfig } from '../config.ts';
import type { ActivePolicy } from '../policy/active.ts';
import type { Telemetry } from '../telemetry.ts';
import { DirEvidenceStore } from './dirstore.ts';
import { AuditRecorder } from './recorder.ts';
import type { ShippingSettings } from './shipper.ts';
import type { EvidenceStore } from './store.ts';
import { newIncarnation } from './stream.ts';

const defaultAuditDir = '.veil/audit';
const dayMs = 86_400_000;
/** Within the sidecar's own shutdown grace, itself within the pod's default 30 s. */
/** What applies while no valid policy is loaded. */
const defaultAudit = auditSchema.parse({});

export type AuditDeps = {
  telemetry: Telemetry;
  policy: () => ActivePolicy | undefined;
};

/** The recorder, and what removes its spool gauges when it is closed. */
export type OpenedAudit = { recorder: AuditRecorder; dropGauges: () => void };

export async function openAuditRecorder(config: SidecarConfig, deps: AuditDeps): Promise<OpenedAudit> {
  const store = await evidenceStore(config);
  let recorder: AuditRecorder;
  try {
    recorder = await AuditRecorder.open({
      spoolDir: spoolDirOf(config),
      capacityBytes: config.spoolCapacityBytes,
      identity: { cluster: config.cluster, pod: config.pod, incarnation: newIncarnation() },
      signingKey: config.signingKeyFile ? await readSigningKey(config.signingKeyFile) : undefined,
      store,
      settings: lastKnownSettings(config, deps.policy),
      closeGraceMs: (config.auditCloseGraceSeconds ?? DEFAULT_AUDIT_CLOSE_GRACE_SECONDS) * 1000,
      log: logLine,
    });
  } catch (error) {
    store.close();
    throw error;
  }
  logLine(streamKeyLine(recorder.stream, recorder.keyId), 'info');
  const capacityBytes = config.spoolCapacityBytes ?? DEFAULT_SPOOL_CAPACITY_BYTES;
  return { recorder, dropGauges: registerGauges(deps.telemetry, recorder, capacityBytes) };
}

// The AWS SDK is loaded only for a bucket: `veil dev` and local evidence do
// without its start-up time and memory.
async function evidenceStore(config: SidecarConfig): Promise<EvidenceStore> {
  if (!config.s3Bucket) return new DirEvidenceStore(config.auditDir ?? defaultAuditDir);
  for (const warning of evidenceStoreWarnings(config)) logLine(warning);
  const { S3EvidenceStore } = await import('./s3store.ts');
  return new S3EvidenceStore({
    bucket: config.s3Bucket,
    prefix: config.s3Prefix,
    endpoint: config.s3Endpoint,
    region: config.s3Region,
    forcePathStyle: config.s3ForcePathStyle,
    log: logLine,
  });
}

/** Beside the evidence directory (`veil dev` keeps both under its state folder). */
function spoolDirOf(config: SidecarConfig): string {
  return config.spoolDir ?? join(dirname(resolve(config.auditDir ?? defaultAuditDir)), 'spool');
}

/**
 * The settings of the policy in force; while none is loaded (not yet, or
 * revoked), those of the last one this process had, so records answered under
 * it are not locked for the schema's default instead.
 */
function lastKnownSettings(
  config: SidecarConfig,
  policy: () => ActivePolicy | undefined,
): () => ShippingSettings {
  let last: ActivePolicy['spec']['audit'] | undefined;
  return () => {
    last = policy()?.spec.audit ?? last;
    const audit = last ?? defaultAudit;
    if (config.retentionSeconds !== undefined) {
      return { batch: audit.batch, retentionMs: config.retentionSeconds * 1000 };
    }
    return {
      batch: audit.batch,
      retentionMs: audit.retentionDays * dayMs,
      retentionKnown: last !== undefined,
    };
  };
}

async function readSigningKey(file: string): Promise<SigningKey> {
  try {
    return importSigningKey(JSON.parse(await readFile(file, 'utf8')));
  } catch {
    // The content is a secret: say where, never what.
    throw new Error(`${file} does not hold an Ed25519 private JWK`);
  }
}

function registerGauges(telemetry: Telemetry, recorder: AuditRecorder, capacityBytes: number): () => void {
  const drops = [
    telemetry.gauge('veil_audit_spool_bytes', 'Bytes in the audit spool', () => recorder.stats().spoolBytes),
    // Beside the spool's fill, so an alert can be a fraction rather than a number per pod.
    telemetry.gauge(
      'veil_audit_spool_capacity_bytes',
      'Bytes the audit spool may hold: with veil_audit_spool_bytes, how full it is',
      () => capacityBytes,
    ),
    telemetry.gauge(
      'veil_audit_records_waiting',
      'Durable audit records the evidence store has not acknowledged',
      () => recorder.stats().recordsWaiting,
    ),
    telemetry.gauge(
      'veil_audit_oldest_unshipped_age_seconds',
      'Age of the oldest audit record not yet shipped',
      () => recorder.stats().oldestUnshippedAgeSeconds,
    ),
    telemetry.gauge(
      'veil_audit_shipping_failures',
      'Consecutive failed attempts to ship audit evidence; 0 while shipping works',
      () => recorder.stats().failures,
    ),
    telemetry.gauge(
      'veil_audit_store_conflict',
      'Whether shipping is stuck on an evidence key that already holds other bytes (1): retrying cannot resolve it',
      () => (recorder.stats().conflict ? 1 : 0),
    ),
    telemetry.gauge(
      'veil_audit_store_not_locked',
      'Whether shipping is stuck on an evidence key holding its bytes without the COMPLIANCE lock asked for (1): an operator must lock or remove it',
      () => (recorder.stats().notLocked ? 1 : 0),
    ),
    telemetry.gauge(
      'veil_audit_store_misconfigured',
      'Whether the evidence store refuses uploads for its set-up (1): no Object Lock on the bucket, no such bucket, or credentials refused; the log names which',
      () => (recorder.stats().misconfigured ? 1 : 0),
    ),
  ];
  return () => {
    for (const drop of drops) drop();
  };
}

/**
 * Where an auditor can learn a stream's key apart from the bucket, whose
 * genesis manifest registers it: a log line of the pod that made it. The line
 * ends with the trusted-keys entry itself, for every incarnation of the pod.
 */
export function streamKeyLine(stream: string, keyId: string): string {
  const podStreams = `${stream.slice(0, stream.lastIndexOf('/'))}/*`;
  return `audit stream ${stream} signs with key ${keyId}; trusted-keys line: ${keyId} ${podStreams}`;
}

function logLine(message: string, level: 'info' | 'warn' | 'error' = 'warn'): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, message })}\n`);
}
