// Which container port the proxy stands in front of.
import type { V1Pod } from '@kubernetes/client-node';
import { type Checked, veilAnnotations } from './annotations.ts';

export type Upstream = {
  container: string;
  containerIndex: number;
  portIndex: number;
  port: number;
  /** The port's name; only a named port can be taken over by the proxy. */
  name: string | undefined;
};

/**
 * Resolves `veil.dev/upstream-port` (a number or a name) against the ports the pod's
 * containers declare; without the annotation, the first declared port. A port the
 * pod does not declare is refused rather than guessed: the proxy would forward to
 * nothing, or the model would keep a port the proxy does not guard.
 */
export function findUpstream(pod: V1Pod, ref: number | string | undefined): Checked<Upstream> {
  const declared = declaredPorts(pod);
  const key = veilAnnotations.upstreamPort;
  if (declared.length === 0) {
    return { ok: false, message: `${key}: the pod declares no container port; declare the model's port` };
  }
  const found = ref === undefined ? declared[0] : declared.find((p) => p.port === ref || p.name === ref);
  if (found === undefined) {
    const wanted = typeof ref === 'number' ? `port ${ref}` : `a port named "${ref}"`;
    const known = declared
      .map((p) => (p.name === undefined ? `${p.port}` : `${p.port} (${p.name})`))
      .join(', ');
    return { ok: false, message: `${key}: no container of the pod declares ${wanted}; declared: ${known}` };
  }
  if (found.protocol !== 'TCP') {
    return {
      ok: false,
      message: `${key}: port ${found.port} of container "${found.container}" is ${found.protocol}; the proxy speaks HTTP over TCP`,
    };
  }
  const { protocol: _protocol, ...upstream } = found;
  return { ok: true, value: upstream };
}

function declaredPorts(pod: V1Pod): (Upstream & { protocol: string })[] {
  return (pod.spec?.containers ?? []).flatMap((container, containerIndex) =>
    (container.ports ?? []).map((port, portIndex) => ({
      container: container.name,
      containerIndex,
      portIndex,
      port: port.containerPort,
      name: port.name,
      protocol: port.protocol ?? 'TCP',
    })),
  );
}
