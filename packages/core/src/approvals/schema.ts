// The EmbeddingApproval resource: a held request waiting for people. The
// controller creates it; approvers decide through its status, and an admission
// webhook stamps each decision with the API server's own view of who made it.
import { z } from 'zod';
import { apiDialects } from '../evidence/record.ts';

const subject = z.string().min(1).max(512);

/** The longest masked summary an approval keeps. */
export const MAX_APPROVAL_SUMMARY = 2048;

export const approvalPhases = ['Pending', 'Approved', 'Denied', 'Expired'] as const;

/**
 * The dialects a request can be held in: approval rules apply to embedding
 * requests, never to a passthrough route or a request no dialect read. The
 * name reaches approvers' notifications, so it is one of these, not free text.
 */
const approvalApiSchema = z.enum(apiDialects).exclude(['passthrough', 'unknown']);

export const approvalSpecSchema = z
  .object({
    requester: z
      .object({ issuer: subject, subject, groups: z.array(z.string().min(1)).default([]) })
      .strict()
      .describe('The authenticated caller whose request is held'),
    policy: z.string().min(1).max(253),
    rule: z.string().min(1).max(63),
    ruleHash: z
      .string()
      .regex(/^sha256:[0-9a-f]{64}$/)
      .optional()
      .describe(
        'Hash of the rule when the approval was opened: a use under another version of the rule is refused',
      ),
    pod: z.object({ namespace: z.string().min(1), name: z.string().min(1) }).strict(),
    request: z
      .object({
        api: approvalApiSchema,
        model: z.string().min(1),
        inputCount: z.number().int().min(0),
        bytes: z.number().int().min(0),
        operation: z.string().optional(),
        digest: z.string().min(1).describe('Digest binding the approval to this exact payload'),
        summary: z.string().max(MAX_APPROVAL_SUMMARY).optional().describe('Masked preview; never raw inputs'),
      })
      .strict(),
    approvers: z
      .object({ groups: z.array(z.string().min(1)).min(1), count: z.number().int().min(1).max(10) })
      .strict(),
    expiresAt: z.iso.datetime(),
    singleUse: z.boolean().default(true),
  })
  .strict();

/**
 * The spec as the CLI shows a stored approval: as strict, except that a spec
 * key it does not know is dropped, so an approval a newer controller opened
 * (with a field it added, as it added ruleHash) can still be listed and shown.
 * Whatever acts on an approval (the controller using it, the webhook stamping
 * a decision) reads it with approvalSpecSchema: a field it cannot check may be
 * a condition of the approval, so it fails closed.
 */
export const storedApprovalSpecSchema = z.object(approvalSpecSchema.shape);

export const approvalDecisionSchema = z
  .object({
    approver: subject,
    groups: z.array(z.string()).default([]),
    decision: z.enum(['approve', 'deny']),
    reason: z.string().min(1).max(1024),
    time: z.iso.datetime(),
  })
  .strict();

export const approvalStatusSchema = z
  .object({
    phase: z.enum(approvalPhases).default('Pending'),
    decisions: z.array(approvalDecisionSchema).default([]),
    decidedAt: z.iso.datetime().optional(),
    usedAt: z.iso.datetime().optional(),
    message: z.string().max(1024).optional(),
  })
  .strict();

export type ApprovalSpec = z.infer<typeof approvalSpecSchema>;
export type ApprovalStatus = z.infer<typeof approvalStatusSchema>;
export type ApprovalDecision = z.infer<typeof approvalDecisionSchema>;
