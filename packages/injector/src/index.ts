export * from './certs/podcerts.ts';
export * from './certs/reload.ts';
export * from './certs/selfmanaged.ts';
export * from './certs/x509.ts';
export { type Controller, type ControllerOptions, startController } from './controller/controller.ts';
export type { DesiredPolicy, PodSync, PushEvent } from './controller/distributor.ts';
export {
  type ControllerKey,
  controllerIssuer,
  controllerKeyFromJwk,
  generateControllerJwk,
  loadControllerKey,
  maxTokenLifetimeSeconds,
  sidecarAudience,
} from './controller/keys.ts';
export { defaultLeaseName, type LeaderElectionOptions, LeaderElector } from './controller/leader.ts';
export { jsonLog, type Log, silentLog } from './controller/log.ts';
export { pullAudience } from './controller/pull.ts';
export { type StatusPlan, StatusWriter, type StatusWriterOptions } from './controller/statuswriter.ts';
export {
  type InjectorConfig,
  type InjectorExtras,
  injectorConfigSchema,
  parseInjectorConfig,
  type RunningInjector,
  startInjector,
} from './main.ts';
export { embeddingApis, type PodOptions, veilAnnotations, veilLabels } from './webhook/annotations.ts';
export {
  type ApprovalStampSettings,
  type ApprovalUser,
  phaseOf,
  requesterUsernames,
  reviewApprovalAdmission,
  stampApprovalStatus,
} from './webhook/approvals.ts';
export { type InjectionInput, type InjectionResult, inject, isExcludedNamespace } from './webhook/inject.ts';
export { encodePatch, type JsonPatch, podPatch } from './webhook/patch.ts';
export * from './webhook/review.ts';
export { startWebhookServer, type WebhookServer, type WebhookServerOptions } from './webhook/server.ts';
export * from './webhook/settings.ts';
export { sidecarNames, sidecarVolumeNames } from './webhook/sidecar.ts';
export * from './webhook/status.ts';
export { type ControllerTrust, trustAnnotationKeys, trustAnnotations } from './webhook/trust.ts';
