import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { infraBinary } from './infra.ts';
import { freePort } from './ports.ts';
import { type Managed, startProcess, waitFor } from './process.ts';

export interface S3Server {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly dataDir: string;
  client(): S3Client;
  /** Stops the server but keeps its data, for outage tests. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and removes its data. */
  destroy(): Promise<void>;
}

/**
 * A real S3 server with versioning and Object Lock: Versity's gateway over a
 * fresh POSIX directory on a free loopback port, with root credentials.
 */
export async function startS3(): Promise<S3Server> {
  const dir = await mkdtemp(join(tmpdir(), 'veil-s3-'));
  const dataDir = join(dir, 'data');
  await mkdir(dataDir);
  await mkdir(join(dir, 'versions'));
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const credentials = { accessKeyId: 'veil-test-root', secretAccessKey: 'veil-test-root-secret' };
  const bin = infraBinary('versitygw');
  let server: Managed | undefined;

  async function start(): Promise<void> {
    server = startProcess(
      'versitygw',
      bin,
      [
        '--port',
        `127.0.0.1:${port}`,
        '--access',
        credentials.accessKeyId,
        '--secret',
        credentials.secretAccessKey,
        '--quiet',
        'posix',
        '--versioning-dir',
        join(dir, 'versions'),
        dataDir,
      ],
      join(dir, 'server.log'),
    );
    const running = server;
    await waitFor('S3 server', async () => {
      if (running.child.exitCode !== null)
        throw new Error(`exited with ${running.child.exitCode}; see ${dir}/server.log`);
      // Any HTTP answer (403 for an unsigned request) means it is serving.
      const response = await fetch(`${endpoint}/`);
      return response.status > 0;
    });
  }

  await start();
  return {
    endpoint,
    region: 'us-east-1',
    credentials,
    dataDir,
    client: () => new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials }),
    async stop() {
      await server?.stop();
    },
    start,
    async destroy() {
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
