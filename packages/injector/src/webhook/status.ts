// The `veil.dev/status` annotation: what the injector added to a pod, for operators
// (`kubectl get pod -o yaml`) and for the controller finding injected pods.
import { z } from 'zod';
import { embeddingApis } from './annotations.ts';
import { portNumber } from './names.ts';

export const injectionStatusSchema = z
  .object({
    version: z.string(),
    image: z.string(),
    mode: z.enum(['native-sidecar', 'container']),
    initContainers: z.array(z.string()).describe('Init containers added'),
    containers: z.array(z.string()).describe('Containers added'),
    volumes: z.array(z.string()).describe('Volumes added'),
    policy: z.string(),
    api: z.enum(embeddingApis),
    upstream: z.object({ container: z.string(), port: portNumber, name: z.string().nullable() }).strict(),
    portTakeover: z
      .object({ name: z.string(), renamedTo: z.string(), proxyPort: portNumber })
      .strict()
      .nullable()
      .describe(
        'null when the upstream port has no name: Services must then target the proxy port by number',
      ),
    bootstrapPolicy: z.boolean().describe('Whether a policy was written into the pod at admission'),
  })
  .strict();

export type InjectionStatus = z.infer<typeof injectionStatusSchema>;
