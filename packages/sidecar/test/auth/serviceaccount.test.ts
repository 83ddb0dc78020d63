// Kubernetes projected service-account tokens, with the local issuer standing
// in for the API server's service-account issuer.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { authenticationSchema, type PolicySpec } from '@veil/core';
import type { JWTPayload } from 'jose';
import { type Authenticator, createAuthenticator } from '../../src/auth/authenticator.ts';
import { startTestIssuer, type TestIssuer } from '../fixtures/issuer.ts';
import { AUDIENCE, bearer } from './config.ts';

const SIDECAR_TOKEN = 'sidecar-own-projected-token';

function projectedClaims(apiServer: TestIssuer, namespace: string, account: string): JWTPayload {
  return {
    iss: apiServer.issuer,
    aud: ['veil'],
    sub: `system:serviceaccount:${namespace}:${account}`,
    jti: 'd1f0c3a4-5b6c-4d7e-8f90-a1b2c3d4e5f6',
    'kubernetes.io': {
      namespace,
      node: { name: 'worker-1', uid: '2b7e1f4a-0000-4000-8000-000000000001' },
      pod: { name: 'indexer-7d9f8', uid: '2b7e1f4a-0000-4000-8000-000000000002' },
      serviceaccount: { name: account, uid: '2b7e1f4a-0000-4000-8000-000000000003' },
    },
  };
}

describe('service-account tokens', () => {
  let apiServer: TestIssuer;
  let idp: TestIssuer;
  let auth: Authenticator;

  before(async () => {
    apiServer = await startTestIssuer({ algorithm: 'RS256' });
    idp = await startTestIssuer();
    const config = authenticationSchema.parse({
      oidc: [{ issuer: idp.issuer, audiences: [AUDIENCE] }],
      serviceAccountTokens: { issuer: apiServer.issuer },
    });
    auth = createAuthenticator(config, {
      serviceAccountCredentials: { [apiServer.issuer]: () => SIDECAR_TOKEN },
    });
  });

  after(async () => {
    await auth.close();
    await apiServer.stop();
    await idp.stop();
  });

  it('maps a projected token to the identity the API server would give', async () => {
    const token = await apiServer.mint(projectedClaims(apiServer, 'team-a', 'embedder'));
    const result = await auth.authenticate(bearer(token));
    assert.deepEqual(result, {
      ok: true,
      identity: {
        issuer: apiServer.issuer,
        subject: 'system:serviceaccount:team-a:embedder',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:team-a'],
        kind: 'serviceaccount',
      },
    });
  });

  it('presents the sidecar credential to the service-account issuer only', async () => {
    await auth.authenticate(bearer(await apiServer.mint(projectedClaims(apiServer, 'team-a', 'embedder'))));
    await auth.authenticate(bearer(await idp.mint({ sub: 'alice', aud: AUDIENCE })));
    assert.ok(apiServer.requests.discovery >= 1 && apiServer.requests.jwks >= 1);
    assert.deepEqual(new Set(apiServer.requests.authorizations), new Set([`Bearer ${SIDECAR_TOKEN}`]));
    assert.ok(idp.requests.authorizations.length >= 2);
    assert.deepEqual(new Set(idp.requests.authorizations), new Set([undefined]));
  });

  it('refuses a token for the API server audience (a replayed default token)', async () => {
    const token = await apiServer.mint({
      ...projectedClaims(apiServer, 'team-a', 'embedder'),
      aud: ['https://kubernetes.default.svc.cluster.local'],
    });
    const result = await auth.authenticate(bearer(token));
    assert.equal(result.ok ? 'ok' : result.reason, 'wrong_audience');
  });

  it('refuses a token whose subject disagrees with its kubernetes.io claim', async () => {
    const token = await apiServer.mint({
      ...projectedClaims(apiServer, 'team-a', 'embedder'),
      sub: 'system:serviceaccount:kube-system:admin',
    });
    const result = await auth.authenticate(bearer(token));
    assert.equal(result.ok ? 'ok' : result.reason, 'invalid_claims');
  });

  it('refuses a token without the kubernetes.io claim', async () => {
    const token = await apiServer.mint({
      ...projectedClaims(apiServer, 'team-a', 'embedder'),
      'kubernetes.io': undefined,
    });
    const result = await auth.authenticate(bearer(token));
    assert.equal(result.ok ? 'ok' : result.reason, 'invalid_claims');
  });

  it('refuses a token without expiry, as legacy secret-based tokens are', async () => {
    const token = await apiServer.mint({
      ...projectedClaims(apiServer, 'team-a', 'embedder'),
      exp: undefined,
    });
    const result = await auth.authenticate(bearer(token));
    assert.equal(result.ok ? 'ok' : result.reason, 'invalid_claims');
  });

  it('reads keys from a configured jwksUri without discovery', async () => {
    const own = await startTestIssuer();
    const config = authenticationSchema.parse({
      serviceAccountTokens: { issuer: own.issuer, audiences: ['veil'], jwksUri: own.jwksUri },
    });
    const direct = createAuthenticator(config);
    try {
      const result = await direct.authenticate(bearer(await own.mint(projectedClaims(own, 'ns', 'sa'))));
      assert.equal(result.ok ? result.identity.subject : result.reason, 'system:serviceaccount:ns:sa');
      assert.deepEqual([own.requests.discovery, own.requests.jwks], [0, 1]);
    } finally {
      await direct.close();
      await own.stop();
    }
  });
});

describe('the sidecar credential', () => {
  const inCluster = 'https://kubernetes.default.svc.cluster.local';
  const credentials = () => SIDECAR_TOKEN;

  it('is not sent to a service-account issuer the policy names but the sidecar does not vouch for', async () => {
    const outside = await startTestIssuer({ algorithm: 'RS256' });
    const auth = createAuthenticator(
      authenticationSchema.parse({ serviceAccountTokens: { issuer: outside.issuer } }),
      { serviceAccountCredentials: { [inCluster]: credentials } },
    );
    try {
      const result = await auth.authenticate(
        bearer(await outside.mint(projectedClaims(outside, 'ns', 'sa'))),
      );
      assert.equal(result.ok ? result.identity.subject : result.reason, 'system:serviceaccount:ns:sa');
      assert.deepEqual([outside.requests.discovery, outside.requests.jwks], [1, 1]);
      assert.deepEqual(outside.requests.authorizations, [undefined, undefined]);
    } finally {
      await auth.close();
      await outside.stop();
    }
  });

  it("is sent to the jwks_uri the issuer's own discovery names, as the kube-apiserver names its advertised address", async () => {
    const keys = await startTestIssuer({ algorithm: 'RS256' });
    const issuer = await startDiscoveryStandIn(keys.jwksUri);
    const auth = createAuthenticator(
      authenticationSchema.parse({ serviceAccountTokens: { issuer: issuer.url } }),
      { serviceAccountCredentials: { [issuer.url]: credentials } },
    );
    try {
      const token = await keys.mint({ ...projectedClaims(keys, 'ns', 'sa'), iss: issuer.url });
      const result = await auth.authenticate(bearer(token));
      assert.equal(result.ok ? result.identity.subject : result.reason, 'system:serviceaccount:ns:sa');
      assert.deepEqual(issuer.authorizations, [`Bearer ${SIDECAR_TOKEN}`]);
      assert.deepEqual(keys.requests.authorizations, [`Bearer ${SIDECAR_TOKEN}`]);
    } finally {
      await auth.close();
      await issuer.close();
      await keys.stop();
    }
  });

  it('that cannot be read leaves the keys unavailable, and the record says why', async () => {
    const keys = await startTestIssuer({ algorithm: 'RS256' });
    const unreadable = () => {
      throw new Error('the projected token file is missing');
    };
    const auth = createAuthenticator(
      authenticationSchema.parse({ serviceAccountTokens: { issuer: keys.issuer } }),
      { serviceAccountCredentials: { [keys.issuer]: unreadable } },
    );
    try {
      const result = await auth.authenticate(bearer(await keys.mint(projectedClaims(keys, 'ns', 'sa'))));
      assert.ok(!result.ok);
      assert.equal(result.reason, 'jwks_unavailable');
      assert.match(result.detail, /the credential could not be read: the projected token file is missing/);
    } finally {
      await auth.close();
      await keys.stop();
    }
  });

  it('is not sent to a jwksUri on another origin that only the policy names', async () => {
    const keys = await startTestIssuer({ algorithm: 'RS256' });
    const auth = createAuthenticator(
      authenticationSchema.parse({ serviceAccountTokens: { issuer: inCluster, jwksUri: keys.jwksUri } }),
      { serviceAccountCredentials: { [inCluster]: credentials } },
    );
    try {
      const token = await keys.mint({ ...projectedClaims(keys, 'ns', 'sa'), iss: inCluster });
      const result = await auth.authenticate(bearer(token));
      assert.equal(result.ok ? result.identity.subject : result.reason, 'system:serviceaccount:ns:sa');
      assert.deepEqual(keys.requests.authorizations, [undefined]);
    } finally {
      await auth.close();
      await keys.stop();
    }
  });
});

/** An issuer whose discovery names keys served elsewhere; records the Authorization header it sees. */
async function startDiscoveryStandIn(jwksUri: string) {
  const authorizations: (string | undefined)[] = [];
  const server = createServer((request, response) => {
    authorizations.push(request.headers.authorization);
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ issuer: url, jwks_uri: jwksUri }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    authorizations,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('authentication configuration', () => {
  it('rejects a service-account issuer that cannot be discovered and has no jwksUri, even past the schema', () => {
    for (const issuer of ['kubernetes/serviceaccount', 'http://10.0.0.1']) {
      const config: PolicySpec['authentication'] = {
        oidc: [],
        clockSkewSeconds: 30,
        serviceAccountTokens: { issuer, audiences: ['veil'] },
      };
      assert.throws(() => createAuthenticator(config), /serviceAccountTokens.*or set jwksUri/s);
    }
  });

  it('rejects an issuer configured twice, even in a configuration built past the schema', () => {
    const issuer = 'https://idp.example.com';
    // The policy schema refuses this too; the authenticator must not rely on it.
    const config = {
      ...authenticationSchema.parse({ oidc: [{ issuer, audiences: ['a'] }] }),
      serviceAccountTokens: authenticationSchema.parse({ serviceAccountTokens: { issuer } })
        .serviceAccountTokens,
    };
    assert.throws(() => createAuthenticator(config), /configured twice/);
  });
});
