// The shared hash key: read from the file the injector mounts, so every sidecar
// of a workload makes the same `hash` token and input digest for the same text;
// a missing file (no Secret) still starts, on a key of the process only, and says
// so in the log and in the `veil_shared_hash_key` gauge; a key too short stops
// the start.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadHashKey } from '../../src/hashkey.ts';
import { call, type SidecarFixture, startSidecarFixture } from '../fixtures/sidecar.ts';

const EMAIL = 'pat.lee@example.net';

const hashEmails = {
  masking: {
    rules: [
      {
        name: 'emails',
        detectors: ['email' as const],
        operator: 'hash' as const,
        scopes: ['forward' as const],
      },
    ],
  },
};

/** `veil_shared_hash_key` as the admin port serves it; undefined when absent. */
async function sharedGauge(adminUrl: string): Promise<number | undefined> {
  const text = (await call(`${adminUrl}/metrics`)).text;
  const match = /^veil_shared_hash_key(?:\{[^}]*\})? (\S+)$/m.exec(text);
  return match ? Number(match[1]) : undefined;
}

/** What the model received and what the record kept when `fixture` embedded a text holding EMAIL. */
async function embedEmail(fixture: SidecarFixture): Promise<{ forwarded: string; digest: string }> {
  const before = fixture.upstreamCalls.length;
  const answer = await call(
    `${fixture.url}/v1/embeddings`,
    { model: 'm', input: `write to ${EMAIL} today` },
    { token: await fixture.token() },
  );
  assert.equal(answer.status, 200, answer.text);
  const body = fixture.upstreamCalls[before]?.body as { input: string | string[] };
  const forwarded = Array.isArray(body.input) ? (body.input[0] ?? '') : body.input;
  assert.ok(!forwarded.includes(EMAIL), 'the model never sees the address');
  const digest = fixture.records().at(-1)?.inputs?.[0];
  assert.ok(digest !== undefined && 'digest' in digest, 'inputs recorded as digests');
  return { forwarded, digest: digest.digest };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'veil-hashkey-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('loadHashKey', () => {
  it('reads a shared key as it is, without a word', async () => {
    const file = join(dir, 'shared.key');
    const bytes = randomBytes(32);
    await writeFile(file, bytes);
    const said: string[] = [];
    const loaded = await loadHashKey(file, (m) => said.push(m));
    assert.equal(loaded.shared, true);
    assert.deepEqual(loaded.key, bytes);
    assert.deepEqual(said, []);
  });

  it('without a file named, draws a key of its own, silently', async () => {
    const said: string[] = [];
    const loaded = await loadHashKey(undefined, (m) => said.push(m));
    assert.equal(loaded.shared, false);
    assert.equal(loaded.key.length, 32);
    assert.deepEqual(said, []);
  });

  it('with the named file missing, draws a key of its own and warns once, saying what breaks and how to fix it', async () => {
    const file = join(dir, 'absent', 'hash.key');
    const said: string[] = [];
    const loaded = await loadHashKey(file, (m) => said.push(m));
    assert.equal(loaded.shared, false);
    assert.equal(loaded.key.length, 32);
    assert.equal(said.length, 1);
    const [warning = ''] = said;
    assert.ok(warning.includes(file), 'names the file');
    assert.match(warning, /not match across pods or restarts/);
    assert.match(warning, /Create the hash-key Secret/);
    assert.match(warning, /restart the pods/);
    assert.ok(!warning.includes(loaded.key.toString('hex')), 'never the key');
  });

  it('refuses a key shorter than 16 bytes, naming its length and never its content', async () => {
    for (const content of ['', 'fifteen-bytes!!']) {
      const file = join(dir, `short-${content.length}.key`);
      await writeFile(file, content);
      await assert.rejects(
        loadHashKey(file, () => undefined),
        (error: Error) => {
          assert.ok(error.message.includes(file), 'names the file');
          assert.match(error.message, new RegExp(` holds ${content.length} bytes, fewer than 16`));
          if (content !== '') assert.ok(!error.message.includes(content));
          return true;
        },
      );
    }
    const exact = join(dir, 'sixteen.key');
    await writeFile(exact, randomBytes(16));
    assert.equal((await loadHashKey(exact, () => undefined)).shared, true);
  });

  it('refuses a named path it cannot read rather than falling back', async () => {
    const directory = join(dir, 'a-directory');
    await mkdir(directory);
    await assert.rejects(
      loadHashKey(directory, () => undefined),
      /cannot read the hash key .*EISDIR/,
    );
  });
});

describe('sidecars and the shared key', () => {
  const key = randomBytes(32);
  let keyFile: string;
  let shared: { forwarded: string; digest: string };

  before(async () => {
    keyFile = join(dir, 'workload.key');
    await writeFile(keyFile, key);
  });

  // One group at a time: the meter is the process's, and a gauge must read the sidecars that run.
  it('two sidecars on one key make the same token and digest, and report the key as shared', async () => {
    const fixtures = [
      await startSidecarFixture({ policy: hashEmails, config: { hashKeyFile: keyFile } }),
      await startSidecarFixture({ policy: hashEmails, config: { hashKeyFile: keyFile } }),
    ];
    try {
      const seen = [];
      for (const fixture of fixtures) {
        assert.equal(fixture.sidecar.sharedHashKey, true);
        assert.equal(await sharedGauge(fixture.adminUrl), 1);
        seen.push(await embedEmail(fixture));
      }
      const [first, second] = seen;
      assert.ok(first && second);
      assert.match(first.forwarded, /\[EMAIL:[0-9a-f]{16}\]/);
      assert.deepEqual(second, first);
      // The auditor's check: the digest is the keyed HMAC of the text sent on.
      assert.equal(
        first.digest,
        `hmac-sha256:${createHmac('sha256', key).update(first.forwarded).digest('hex')}`,
      );
      shared = first;
    } finally {
      for (const fixture of fixtures) await fixture.close();
    }
  });

  it('a sidecar whose key file is missing still serves, on a key of its own, and reports 0', async () => {
    const fixture = await startSidecarFixture({
      policy: hashEmails,
      config: { hashKeyFile: join(dir, 'no-secret', 'hash.key') },
    });
    try {
      assert.equal(fixture.sidecar.sharedHashKey, false);
      assert.equal(await sharedGauge(fixture.adminUrl), 0);
      const own = await embedEmail(fixture);
      assert.match(own.forwarded, /\[EMAIL:[0-9a-f]{16}\]/);
      assert.notEqual(own.forwarded, shared.forwarded);
      assert.notEqual(own.digest, shared.digest);
    } finally {
      await fixture.close();
    }
  });

  it('a sidecar with a short key does not start', async () => {
    const short = join(dir, 'short.key');
    await writeFile(short, randomBytes(8));
    await assert.rejects(
      startSidecarFixture({ policy: hashEmails, config: { hashKeyFile: short } }),
      /holds 8 bytes, fewer than 16/,
    );
  });
});
