export * from './approvals/decisions.ts';
export * from './approvals/lifecycle.ts';
export * from './approvals/schema.ts';
export * from './evidence/index.ts';
export * from './masking/index.ts';
export * from './policy/crd.ts';
export * from './policy/hash.ts';
export * from './policy/schema.ts';
