export { type ControlPlane, startControlPlane, type User } from './controlplane.ts';
export { infraBinary, infraBinDir } from './infra.ts';
export { type CertFiles, createCa, issueCert } from './pki.ts';
export { freePort } from './ports.ts';
export { type Managed, startProcess, waitFor } from './process.ts';
export { type S3Server, startS3 } from './s3.ts';
