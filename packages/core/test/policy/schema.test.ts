import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { embeddingPolicySchema, loopbackKeySources, policyHash, policySpecSchema } from '@veil/core';
import { parse } from 'yaml';

const example = join(import.meta.dirname, '..', '..', '..', '..', 'examples', 'policy.yaml');

test('examples/policy.yaml is a valid EmbeddingPolicy that sets every top-level field', async () => {
  const raw = parse(await readFile(example, 'utf8'));
  const policy = embeddingPolicySchema.parse(raw);
  for (const field of Object.keys(policySpecSchema.shape))
    assert.ok(field in raw.spec, `example lacks spec.${field}`);
  assert.ok(policy.spec.masking.rules.length > 0);
  for (const field of Object.keys(policySpecSchema.shape.approvals.unwrap().shape))
    assert.ok(field in raw.spec.approvals, `example lacks spec.approvals.${field}`);
});

test('an empty spec takes the documented defaults', () => {
  const spec = policySpecSchema.parse({});
  assert.equal(spec.limits.maxInputsPerRequest, 256);
  assert.equal(spec.audit.inputs, 'digest');
  assert.deepEqual(spec.access.rules, []);
});

test('one caller may have ten approvals Pending unless the policy says otherwise, from 1 to 1000', () => {
  assert.equal(policySpecSchema.parse({}).approvals.maxPendingPerCaller, 10);
  assert.equal(policySpecSchema.parse({ approvals: { rules: [] } }).approvals.maxPendingPerCaller, 10);
  const paths = (maxPendingPerCaller: unknown) =>
    policySpecSchema
      .safeParse({ approvals: { maxPendingPerCaller } })
      .error?.issues.map((i) => i.path.join('.'));
  assert.equal(paths(1), undefined);
  assert.equal(paths(1000), undefined);
  for (const refused of [0, 1001, 2.5, '10'])
    assert.deepEqual(paths(refused), ['approvals.maxPendingPerCaller'], String(refused));
});

test('a batch may hold up to 16 MiB, what a sidecar can cut within its memory', () => {
  const paths = (maxBytes: unknown) =>
    policySpecSchema.safeParse({ audit: { batch: { maxBytes } } }).error?.issues.map((i) => i.path.join('.'));
  assert.equal(policySpecSchema.parse({}).audit.batch.maxBytes, 8 * 1024 * 1024);
  assert.equal(paths(1024), undefined);
  assert.equal(paths(16 * 1024 * 1024), undefined);
  for (const refused of [1023, 16 * 1024 * 1024 + 1, 256 * 1024 * 1024])
    assert.deepEqual(paths(refused), ['audit.batch.maxBytes'], String(refused));
});

test('problems carry field paths', () => {
  const result = policySpecSchema.safeParse({
    limits: { maxInputsPerRequest: 0 },
    access: { rules: [{ name: 'r', models: ['*'] }] },
    masking: {
      rules: [
        { name: 'm', patterns: [{ name: 'p', regex: '(a)\\1' }], operator: 'redact', scopes: ['forward'] },
      ],
    },
  });
  assert.equal(result.success, false);
  const paths = result.error?.issues.map((i) => i.path.join('.'));
  assert.ok(paths?.includes('limits.maxInputsPerRequest'));
  assert.ok(paths?.includes('access.rules.0'), 'a rule naming nobody');
  assert.ok(paths?.includes('masking.rules.0.patterns.0.regex'), 'RE2 rejects backreferences');
});

test('plain http issuers are refused unless on loopback', () => {
  const issuer = (url: string) =>
    policySpecSchema.safeParse({ authentication: { oidc: [{ issuer: url, audiences: ['veil'] }] } }).success;
  assert.equal(issuer('https://login.example.com'), true);
  assert.equal(issuer('http://127.0.0.1:8082'), true);
  assert.equal(issuer('http://login.example.com'), false);
});

test('the keys read over plain http on loopback are named by the field they come from, without query', () => {
  const sources = (authentication: object) =>
    loopbackKeySources(policySpecSchema.parse({ authentication }).authentication);
  assert.deepEqual(
    sources({
      oidc: [
        { issuer: 'https://login.example.com', audiences: ['veil'] },
        { issuer: 'http://127.0.0.1:8082', audiences: ['veil'] },
        { issuer: 'https://idp.example.com', audiences: ['veil'], jwksUri: 'http://[::1]:9000/keys?p=a' },
      ],
      serviceAccountTokens: { issuer: 'http://localhost:6443' },
    }),
    [
      {
        path: 'authentication.oidc.1.issuer',
        issuer: 'http://127.0.0.1:8082',
        url: 'http://127.0.0.1:8082/',
      },
      {
        path: 'authentication.oidc.2.jwksUri',
        issuer: 'https://idp.example.com',
        url: 'http://[::1]:9000/keys',
      },
      {
        path: 'authentication.serviceAccountTokens.issuer',
        issuer: 'http://localhost:6443',
        url: 'http://localhost:6443/',
      },
    ],
  );
  // Keys from https: the loopback issuer is only compared to `iss`.
  assert.deepEqual(
    sources({
      oidc: [{ issuer: 'http://127.0.0.1:8082', audiences: ['veil'], jwksUri: 'https://idp.example.com/k' }],
    }),
    [],
  );
  assert.deepEqual(sources({ oidc: [{ issuer: 'https://localhost:8443', audiences: ['veil'] }] }), []);
});

test('issuer URLs carry no credentials, query or fragment, key set URLs no credentials or fragment, refused at their field', () => {
  const problems = (authentication: object) =>
    policySpecSchema
      .safeParse({ authentication })
      .error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  const oidc = (fields: object) =>
    problems({ oidc: [{ issuer: 'https://idp.example.com', audiences: ['veil'], ...fields }] });
  const credentials = 'must not carry a username or password: credentials would be copied into audit records';
  const query = 'must not have a query or fragment';
  const fragment = 'must not have a fragment';
  assert.deepEqual(oidc({ issuer: 'https://idp.example.com/realms/ml?tenant=a' }), [
    `authentication.oidc.0.issuer: ${query}`,
  ]);
  assert.deepEqual(oidc({ issuer: 'https://idp.example.com/realms/ml#a' }), [
    `authentication.oidc.0.issuer: ${query}`,
  ]);
  assert.deepEqual(oidc({ issuer: 'https://idp.example.com/realms/ml?' }), [
    `authentication.oidc.0.issuer: ${query}`,
  ]);
  assert.deepEqual(oidc({ issuer: 'http://svc:s3cr3t@127.0.0.1:38041' }), [
    `authentication.oidc.0.issuer: ${credentials}`,
  ]);
  assert.deepEqual(oidc({ issuer: 'https://svc@idp.example.com' }), [
    `authentication.oidc.0.issuer: ${credentials}`,
  ]);
  // Azure AD B2C names its key set by a query.
  assert.equal(oidc({ jwksUri: 'https://idp.example.com/keys?p=b2c_1_signin' }), undefined);
  assert.deepEqual(oidc({ jwksUri: 'https://idp.example.com/keys#k' }), [
    `authentication.oidc.0.jwksUri: ${fragment}`,
  ]);
  assert.deepEqual(oidc({ jwksUri: 'https://u:p@idp.example.com/keys' }), [
    `authentication.oidc.0.jwksUri: ${credentials}`,
  ]);
  assert.equal(
    oidc({ issuer: 'https://idp.example.com/realms/ml', jwksUri: 'https://idp.example.com/keys' }),
    undefined,
  );
  const serviceAccounts = (fields: object) => problems({ serviceAccountTokens: fields });
  assert.deepEqual(serviceAccounts({ issuer: 'https://u:p@kubernetes.default.svc' }), [
    `authentication.serviceAccountTokens.issuer: ${credentials}`,
  ]);
  assert.deepEqual(
    serviceAccounts({
      issuer: 'https://kubernetes.default.svc?x',
      jwksUri: 'https://kubernetes.default.svc/keys',
    }),
    [`authentication.serviceAccountTokens.issuer: ${query}`],
  );
  assert.deepEqual(serviceAccounts({ jwksUri: 'https://kubernetes.default.svc/keys#' }), [
    `authentication.serviceAccountTokens.jwksUri: ${fragment}`,
  ]);
});

test('the content hash ignores spelling: defaults applied and key order do not matter', () => {
  const a = policySpecSchema.parse({ limits: { vectorsPerMinute: 10, maxInputsPerRequest: 256 } });
  const b = policySpecSchema.parse({ limits: { maxInputsPerRequest: 256, vectorsPerMinute: 10 } });
  assert.equal(policyHash(a), policyHash(b));
  assert.notEqual(policyHash(a), policyHash(policySpecSchema.parse({ limits: { vectorsPerMinute: 11 } })));
});

test('access and approval rule names are unique', () => {
  const approval = { when: {}, approvers: { groups: ['ml-approvers'] } };
  const result = policySpecSchema.safeParse({
    access: {
      rules: [
        { name: 'readers', groups: ['ml'] },
        { name: 'readers', action: 'deny', groups: ['interns'] },
      ],
    },
    approvals: {
      rules: [
        { name: 'bulk', ...approval },
        { name: 'other', ...approval },
        { name: 'bulk', ...approval, approvers: { groups: ['anyone'] } },
      ],
    },
  });
  assert.deepEqual(
    result.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`),
    ['access.rules.1.name: duplicate rule name', 'approvals.rules.2.name: duplicate rule name'],
  );
});

test('each issuer appears once, across OIDC and service-account tokens', () => {
  const oidc = { issuer: 'https://login.example.com', audiences: ['veil'] };
  const paths = (authentication: object) =>
    policySpecSchema.safeParse({ authentication }).error?.issues.map((i) => i.path.join('.'));
  assert.deepEqual(paths({ oidc: [oidc, { ...oidc, audiences: ['other'] }] }), [
    'authentication.oidc.1.issuer',
  ]);
  assert.deepEqual(paths({ oidc: [oidc], serviceAccountTokens: { issuer: oidc.issuer } }), [
    'authentication.serviceAccountTokens.issuer',
  ]);
  assert.equal(paths({ oidc: [oidc], serviceAccountTokens: {} }), undefined);
});

test('groupsClaim names a top-level claim: a URL may hold dots, a nested path may not', () => {
  const problems = (groupsClaim: string) =>
    policySpecSchema
      .safeParse({
        authentication: { oidc: [{ issuer: 'https://login.example.com', audiences: ['veil'], groupsClaim }] },
      })
      .error?.issues.map((i) => i.path.join('.'));
  assert.deepEqual(problems('realm_access.roles'), ['authentication.oidc.0.groupsClaim']);
  assert.deepEqual(problems('resource_access.veil.roles'), ['authentication.oidc.0.groupsClaim']);
  assert.equal(problems('groups'), undefined);
  assert.equal(problems('cognito:groups'), undefined);
  assert.equal(problems('https://veil.dev/groups'), undefined);
});

test('a service-account issuer without jwksUri is an https URL to discover keys from', () => {
  const problems = (serviceAccountTokens: object) =>
    policySpecSchema
      .safeParse({ authentication: { serviceAccountTokens } })
      .error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  const refused = [
    'authentication.serviceAccountTokens.issuer: must be an https URL (plain http only on loopback) to discover keys from; or set jwksUri',
  ];
  assert.deepEqual(problems({ issuer: 'kubernetes/serviceaccount' }), refused);
  assert.deepEqual(problems({ issuer: 'http://10.0.0.1' }), refused);
  assert.deepEqual(problems({ issuer: 'http://localhost:1@evil.example' }), refused);
  assert.equal(problems({}), undefined);
  assert.equal(problems({ issuer: 'https://oidc.eks.eu-west-1.amazonaws.com/id/ABC' }), undefined);
  assert.equal(problems({ issuer: 'http://127.0.0.1:6443' }), undefined);
  const jwksUri = 'https://kubernetes.default.svc.cluster.local/openid/v1/jwks';
  assert.equal(problems({ issuer: 'kubernetes/serviceaccount', jwksUri }), undefined);
});

test('a response field is refused, by name, when it can match nothing or reaches vectors', () => {
  const problems = (field: string) =>
    policySpecSchema
      .safeParse({
        masking: {
          rules: [
            {
              name: 'r',
              detectors: ['email'],
              operator: 'redact',
              scopes: ['response'],
              responseFields: [field],
            },
          ],
        },
      })
      .error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  for (const accepted of ['texts', 'meta.api_version', 'data.text', 'results.document-text'])
    assert.equal(problems(accepted), undefined, accepted);
  for (const unmatchable of ['data.0.text', 'texts[0]', 'a..b', '.texts', 'texts.', '', 'a b', '0'])
    assert.deepEqual(
      problems(unmatchable),
      [
        `masking.rules.0.responseFields.0: ${JSON.stringify(unmatchable)} can match no field: a path is field names joined by dots, each a letter or _ then letters, digits, _ or -, with no index (arrays are crossed item by item)`,
      ],
      unmatchable,
    );
  // OpenAI's data[].embedding, Cohere's embeddings.base64 (strings), Ollama's embedding(s).
  for (const vectors of [
    'data',
    'data.embedding',
    'embeddings',
    'embeddings.base64',
    'embedding',
    'embedding.x',
  ])
    assert.match(
      problems(vectors)?.join('\n') ?? '',
      new RegExp(
        `^masking\\.rules\\.0\\.responseFields\\.0: "${vectors.replace('.', '\\.')}" reaches vectors`,
      ),
      vectors,
    );
});
