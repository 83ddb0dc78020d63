import { z } from 'zod';

const decisionSchema = z.object({
  approver: z.string().min(1),
  decision: z.enum(['approve', 'deny']),
  reason: z.string(),
  time: z.string().min(1),
});

/** The controller's view of one approval; unknown fields are ignored. */
export const approvalViewSchema = z.object({
  namespace: z.string().min(1),
  name: z.string().min(1),
  phase: z.enum(['Pending', 'Approved', 'Denied', 'Expired']),
  expiresAt: z.string().min(1),
  requestedAt: z.string().min(1).optional(),
  decidedAt: z.string().min(1).optional(),
  usedAt: z.string().min(1).optional(),
  decisions: z.array(decisionSchema).default([]),
});
export type ApprovalView = z.infer<typeof approvalViewSchema>;
