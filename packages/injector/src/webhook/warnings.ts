// What an operator should hear of once, at start, about the injection settings:
// choices that are valid but refuse many pods, or leave a door the settings
// could close.
import { isIP } from 'node:net';
import { unsetGraceRefused } from './conflicts.ts';
import type { InjectionSettings } from './settings.ts';

export function settingsWarnings(settings: InjectionSettings): string[] {
  return [unsetGraceRefused(settings), shortS3Host(settings)].filter((w) => w !== undefined);
}

/**
 * Cluster DNS tries a name of fewer than five dots under the pod's own
 * namespace first: `minio.storage` is asked as `minio.storage.<namespace>.svc…`,
 * which a namespace's editors can answer with a Service named `storage` of
 * their own. A name of three labels or more (`minio.storage.svc`) does not
 * parse as such a query, nor does one ending in a dot.
 */
function shortS3Host(settings: InjectionSettings): string | undefined {
  const endpoint = settings.s3?.endpoint;
  if (endpoint === undefined) return undefined;
  const host = new URL(endpoint).hostname;
  if (isIP(host.replace(/^\[|\]$/g, '')) !== 0 || host === 'localhost' || host.endsWith('.'))
    return undefined;
  if (host.split('.').length >= 3) return undefined;
  return `s3.endpoint host ${host} has fewer than three labels: cluster DNS asks it under each pod's own namespace first, where a Service of that namespace could answer; name it with three labels or more (a Service as <name>.<namespace>.svc) or end it with a dot`;
}
