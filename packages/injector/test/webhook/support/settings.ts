import type { InjectionSettingsInput } from '../../../src/webhook/settings.ts';
import type { ControllerTrust } from '../../../src/webhook/trust.ts';

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

/** The injector's identity in webhook tests: the only user that may change a pod's trust annotations. */
export const injectorUsername = 'system:serviceaccount:veil-system:veil-injector';

/** The controller's key and CA bundle as the webhook tests' injector holds them. */
export const testTrust: ControllerTrust = {
  publicJwk: {
    kty: 'OKP',
    crv: 'Ed25519',
    x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo',
    kid: 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k',
    alg: 'EdDSA',
    use: 'sig',
  },
  caBundle: '-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n',
};
