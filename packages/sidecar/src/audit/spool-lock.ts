// One process a spool. Two appending to the same segments interleave their
// frames; each then finds the other's records damaged and ships neither, so
// answered requests would go unrecorded. The lock is a listening Unix socket
// named after the directory: the kernel drops it with its process, however
// that process ends, so a crash never leaves a stale lock to clear by hand.
// On Linux the name lives in the abstract namespace (no file), which is a
// network namespace's: the containers of one pod, or the processes of one
// host, see it; another pod does not, which is why a spool is one pod's own
// volume and never shared. Elsewhere it is a socket file in the temporary
// directory, replaced when nothing answers on it.
import { createHash } from 'node:crypto';
import { stat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Another live process holds the spool: refused, never shared. */
export class SpoolInUseError extends Error {
  override name = 'SpoolInUseError';
}

export interface SpoolLock {
  release(): Promise<void>;
}

const abstractNamespace = process.platform === 'linux';

/** Takes the lock on the spool directory `dir` (which must exist), or throws `SpoolInUseError`. */
export async function lockSpool(dir: string): Promise<SpoolLock> {
  const name = await lockName(dir);
  let server = await listen(name);
  if (server === undefined) {
    if (await answers(name)) {
      throw new SpoolInUseError(
        `the audit spool ${dir} is in use by another process: each sidecar needs a spool of its own`,
      );
    }
    // A socket file its process left behind (an abstract name never outlives it).
    if (!abstractNamespace) await unlink(name).catch(() => undefined);
    server = await listen(name);
    if (server === undefined)
      throw new SpoolInUseError(`the audit spool ${dir} is being opened by another process`);
  }
  const held = server;
  return {
    async release() {
      await new Promise<void>((resolve) => held.close(() => resolve()));
      if (!abstractNamespace) await unlink(name).catch(() => undefined);
    },
  };
}

/** The same directory reached by another path (a symlink, the volume mounted twice) gets the same name. */
async function lockName(dir: string): Promise<string> {
  const { dev, ino } = await stat(dir, { bigint: true });
  const id = createHash('sha256').update(`${dev}:${ino}`).digest('hex').slice(0, 32);
  return abstractNamespace ? `\0veil-spool-${id}` : join(tmpdir(), `veil-spool-${id}.sock`);
}

/** The listening server, or undefined when the name is taken. */
function listen(name: string): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    // A peer that checks whether the lock is held connects and is let go at once.
    const server = createServer((socket) => socket.destroy());
    const failed = (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') resolve(undefined);
      else reject(error);
    };
    server.once('error', failed);
    server.listen(name, () => {
      server.off('error', failed);
      // A failed accept (out of descriptors) leaves the lock held: nothing to do about it.
      server.on('error', () => undefined);
      // The lock must not keep the process alive on its own.
      server.unref();
      resolve(server);
    });
  });
}

/** Whether a live process listens on `name`. */
function answers(name: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(name);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
