// The path that names one approval: /v1/approvals/<namespace>/<name>.
import { z } from 'zod';

const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
  .max(63);

export const approvalParamsSchema = z.object({ namespace: dnsLabel, name: dnsLabel });
