import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where `npm run infra` links the binaries it built. */
export function infraBinDir(): string {
  return join(process.env.VEIL_INFRA_DIR ?? join(homedir(), '.cache', 'veil-infra'), 'bin');
}

export function infraBinary(name: 'versitygw' | 'etcd' | 'kube-apiserver' | 'kubectl' | 'helm'): string {
  const path = join(infraBinDir(), name);
  if (!existsSync(path)) {
    throw new Error(`${name} is not built: run \`npm run infra\` first (looked in ${infraBinDir()})`);
  }
  return path;
}
