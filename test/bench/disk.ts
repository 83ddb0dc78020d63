// The disk's own price of durability, beside scenario C: appends of a record's
// size to a file in the bench's temporary directory (the sidecars' spools are
// there too), each made durable by fdatasync before the next, at the
// scenario's request rate. No code that waits for the disk can record faster
// than this floor: a recording target below its p99 is out of reach on this disk.
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Samples } from './histogram.ts';

export interface SyncFloorPlan {
  readonly rate: number;
  readonly seconds: number;
  /** The size of each append. */
  readonly bytes: number;
}

/** Each append's time until durable, in ms. */
export async function syncFloor(dir: string, plan: SyncFloorPlan): Promise<Samples> {
  const path = join(dir, 'sync-floor.dat');
  const file = await open(path, 'a');
  const samples = new Samples();
  const record = Buffer.alloc(plan.bytes, 'x');
  const interval = 1000 / plan.rate;
  const end = performance.now() + plan.seconds * 1000;
  try {
    for (let next = performance.now(); next < end; next += interval) {
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      const started = performance.now();
      await file.write(record);
      await file.datasync();
      samples.add(performance.now() - started);
    }
  } finally {
    await file.close();
    await rm(path, { force: true });
  }
  return samples;
}
