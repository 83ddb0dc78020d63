// Room kept on the spool volume for the writes that let shipping free it. Once
// the volume is full (the node's disk, or a volume smaller than the spool's
// capacity), a new process must still rewrite the shipper state to register
// its stream, and every upload ends with a state and a watermark write before
// it deletes anything. A file of zeros the spool creates when it opens holds
// that room; a write that meets ENOSPC deletes it and tries again, and it is
// made again once the volume has room for it twice over.
import { open, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { tempPathOf } from '../files.ts';

/** The spool volume has no room for a write shipping needs, even with its reserve given up. */
export class SpoolNoSpaceError extends Error {
  override name = 'SpoolNoSpaceError';
}

/** Whether a step may give up the reserve: only one that leads to an upload, which frees room. */
export type ReserveUse = 'may-spend' | 'keep';

export const reserveName = 'reserve';
const chunkBytes = 64 * 1024;

export class SpaceReserve {
  readonly #path: string;
  readonly bytes: number;
  #held = false;

  private constructor(dir: string, bytes: number) {
    this.#path = join(dir, reserveName);
    this.bytes = bytes;
  }

  /** Keeps `bytes` in `dir` when the volume has room for them; opening never fails for want of room. */
  static async open(dir: string, bytes: number): Promise<SpaceReserve> {
    const reserve = new SpaceReserve(dir, bytes);
    await reserve.#fill();
    return reserve;
  }

  /** False once given up and not made again: cuts then keep small enough to fit in the room it left. */
  get held(): boolean {
    return this.#held;
  }

  /** Whether the volume has less free room than the reserve would take. */
  static async low(dir: string, bytes: number): Promise<boolean> {
    return (await freeBytes(dir)) < bytes;
  }

  /** Made again once the volume has room for it twice over: shipping freed what it took. */
  async refill(): Promise<void> {
    if (this.#held || (await freeBytes(join(this.#path, '..'))) < 2 * this.bytes) return;
    await this.#fill();
  }

  /**
   * Runs `write` (of `file`, for `step`); when it meets ENOSPC and `use` allows,
   * gives the reserve up and runs it once more. A failure for room names the step and the file.
   */
  async write<T>(step: string, file: string, use: ReserveUse, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      await unlinkQuietly(tempPathOf(file));
      if (use === 'keep') throw noSpace(step, file, error, 'shipping retries it once uploads free room');
      if (!(await this.#spend())) throw noSpace(step, file, error, noRoomLeft);
    }
    try {
      return await write();
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      await unlinkQuietly(tempPathOf(file));
      throw noSpace(step, file, error, noRoomLeft);
    }
  }

  async #spend(): Promise<boolean> {
    if (!this.#held) return false;
    await unlinkQuietly(this.#path);
    this.#held = false;
    return true;
  }

  /** Zeros written out, not a sparse file: only written blocks hold room. */
  async #fill(): Promise<void> {
    try {
      const file = await open(this.#path, 'w', 0o600);
      try {
        const zeros = Buffer.alloc(Math.min(chunkBytes, this.bytes));
        for (let written = 0; written < this.bytes; written += zeros.length) {
          await file.write(zeros, 0, Math.min(zeros.length, this.bytes - written));
        }
        await file.sync();
      } finally {
        await file.close();
      }
      this.#held = true;
    } catch (error) {
      // A file size limit (EFBIG) keeps a reserve from being made as surely as a full volume.
      if (!isNoSpace(error) && (error as NodeJS.ErrnoException).code !== 'EFBIG') throw error;
      await unlinkQuietly(this.#path);
      this.#held = false;
    }
  }
}

const noRoomLeft =
  'its reserve is given up already: free room on the volume, or give the volume more room than the spool capacity';

function noSpace(step: string, file: string, cause: unknown, then: string): SpoolNoSpaceError {
  return new SpoolNoSpaceError(`the spool volume has no space left to ${step} (${file}); ${then}`, { cause });
}

async function freeBytes(dir: string): Promise<number> {
  const { bavail, bsize } = await statfs(dir);
  return bavail * bsize;
}

/** The volume full, or the user's quota on it. */
function isNoSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

async function unlinkQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}
