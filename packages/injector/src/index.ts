export * from './certs/reload.ts';
export { embeddingApis, type PodOptions, veilAnnotations, veilLabels } from './webhook/annotations.ts';
export { type InjectionInput, type InjectionResult, inject, isExcludedNamespace } from './webhook/inject.ts';
export { encodePatch, type JsonPatch, podPatch } from './webhook/patch.ts';
export * from './webhook/review.ts';
export { startWebhookServer, type WebhookServer, type WebhookServerOptions } from './webhook/server.ts';
export * from './webhook/settings.ts';
export { sidecarNames, sidecarVolumeNames } from './webhook/sidecar.ts';
export * from './webhook/status.ts';
