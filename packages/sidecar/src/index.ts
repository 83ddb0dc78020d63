export type {
  ApprovalsClient,
  ApprovalView,
  OpenApproval,
  UseRefusalReason,
  UseResult,
} from './approvals/client.ts';
export type { AuditDraft, AuditSink } from './audit/sink.ts';
export { SpoolInUseError } from './audit/spool-lock.ts';
export { createDevKeyring, generateDevSigningKey, signWithDevKey, startDevIssuer } from './auth/devissuer.ts';
export { configFromEnv, type SidecarConfig, type SidecarConfigInput, sidecarConfigSchema } from './config.ts';
export { startDemoModel } from './demo/model.ts';
export { type RunningSidecar, type SidecarOptions, startSidecar } from './sidecar.ts';
