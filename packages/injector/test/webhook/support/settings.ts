import type { InjectionSettingsInput } from '../../../src/webhook/settings.ts';

/** The injector settings every webhook test starts from. */
export const testSettings: InjectionSettingsInput = {
  sidecarImage: 'registry.example.com/veil/veil-sidecar:0.1.0',
  sidecarVersion: '0.1.0',
  injectorNamespace: 'veil-system',
  controllerUrl: 'https://veil-injector.veil-system.svc:8444',
  approvalsUrl: 'https://veil-injector.veil-system.svc:8445',
  cluster: 'test-cluster',
  s3: {
    bucket: 'veil-evidence',
    region: 'eu-west-1',
    endpoint: 'https://minio.veil-system.svc:9000',
    forcePathStyle: true,
    credentialsSecret: { name: 'veil-s3' },
  },
};
