// An EmbeddingApproval spec for the tests of the stamping rules (here) and of the
// webhook that applies them (injector): a bulk request of alice's, two approvers.
import { type ApprovalSpec, approvalSpecSchema } from '../../src/index.ts';

/** The clock of these tests: an hour before the spec expires. */
export const now = new Date('2030-01-01T12:00:00.000Z');

export function approvalSpec(overrides: Partial<ApprovalSpec> = {}): ApprovalSpec {
  return approvalSpecSchema.parse({
    requester: { issuer: 'https://idp.example.com', subject: 'alice', groups: ['ml'] },
    policy: 'default',
    rule: 'bulk',
    pod: { namespace: 'ml', name: 'embed-0' },
    request: {
      api: 'openai',
      model: 'text-embedding-3-small',
      inputCount: 500,
      bytes: 9000,
      digest: 'sha256:ab',
    },
    approvers: { groups: ['approvers'], count: 2 },
    expiresAt: '2030-01-01T13:00:00.000Z',
    ...overrides,
  });
}
