// CustomResourceDefinitions generated from the zod schemas, so the API server
// validates exactly what the controller and the sidecar do (less what OpenAPI
// cannot say: refinements such as RE2 checks stay with zod).
import { z } from 'zod';
import { approvalSpecSchema, approvalStatusSchema } from '../approvals/schema.ts';
import { policySpecSchema, policyStatusSchema } from './schema.ts';

export const GROUP = 'veil.dev';
export const VERSION = 'v1alpha1';

type JsonSchema = { [key: string]: unknown };

/** Kubernetes wants structural schemas: no additionalProperties beside properties, no $schema. */
function structural(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(structural);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === '$schema') continue;
    if (key === 'additionalProperties' && value === false) continue;
    out[key] = structural(value);
  }
  return out;
}

function openApi(schema: z.ZodType): JsonSchema {
  return structural(
    z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' }),
  ) as JsonSchema;
}

interface CrdOptions {
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: string[];
  readonly spec: z.ZodType;
  readonly status: z.ZodType;
  readonly columns: { name: string; type: string; jsonPath: string; description?: string }[];
}

function crd(options: CrdOptions): JsonSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${options.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        kind: options.kind,
        listKind: `${options.kind}List`,
        plural: options.plural,
        singular: options.singular,
        shortNames: options.shortNames,
        categories: ['veil'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            ...options.columns,
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: openApi(options.spec),
                status: openApi(options.status),
              },
            },
          },
        },
      ],
    },
  };
}

export function embeddingPolicyCrd(): JsonSchema {
  return crd({
    kind: 'EmbeddingPolicy',
    plural: 'embeddingpolicies',
    singular: 'embeddingpolicy',
    shortNames: ['embpol'],
    spec: policySpecSchema,
    status: policyStatusSchema,
    columns: [
      { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
      {
        name: 'In sync',
        type: 'string',
        jsonPath: '.status.sync',
        description: 'Pods enforcing this version / pods selected',
      },
      {
        name: 'Hash',
        type: 'string',
        jsonPath: '.status.contentHash',
        description: 'Content hash of the enforced spec',
      },
    ],
  });
}

export function embeddingApprovalCrd(): JsonSchema {
  return crd({
    kind: 'EmbeddingApproval',
    plural: 'embeddingapprovals',
    singular: 'embeddingapproval',
    shortNames: ['embapr'],
    spec: approvalSpecSchema,
    status: approvalStatusSchema,
    columns: [
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Requester', type: 'string', jsonPath: '.spec.requester.subject' },
      { name: 'Rule', type: 'string', jsonPath: '.spec.rule' },
      { name: 'Inputs', type: 'integer', jsonPath: '.spec.request.inputCount' },
    ],
  });
}

/** Every CRD Veil installs, by the file name it is kept under in crds/. */
export function allCrds(): Record<string, JsonSchema> {
  return {
    'embeddingpolicies.veil.dev.yaml': embeddingPolicyCrd(),
    'embeddingapprovals.veil.dev.yaml': embeddingApprovalCrd(),
  };
}
