import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  appendFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  truncate,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import {
  frameLine,
  Spool,
  SpoolCorruptError,
  SpoolFullError,
  type SpoolOptions,
} from '../../src/audit/spool.ts';
import { SpoolInUseError } from '../../src/audit/spool-lock.ts';
import { openFilesUnder } from './helpers.ts';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'veil-spool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const line = (seq: number) => `{"seq":${seq},"pad":"${'x'.repeat(80)}"}`;

async function appendInTurn(spool: Spool, from: number, count: number): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = from; i < from + count; i++) seqs.push((await spool.append(line(i))).seq);
  return seqs;
}

async function segments(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.seg')).sort();
}

async function readAll(spool: Spool, from = 0): Promise<string[]> {
  return (await spool.readFrom(from, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)).map((e) =>
    e.bytes.toString(),
  );
}

test('seqs are contiguous from 0 and continue after a restart', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir });
  assert.deepEqual(await appendInTurn(spool, 0, 3), [0, 1, 2]);
  await spool.close();
  const reopened = await Spool.open({ dir });
  t.after(() => reopened.close());
  assert.deepEqual(reopened.recovery, { records: 3, truncatedBytes: 0 });
  assert.deepEqual(await appendInTurn(reopened, 3, 2), [3, 4]);
  assert.deepEqual(await readAll(reopened), [0, 1, 2, 3, 4].map(line));
});

test('a line framed by the caller is kept as the same line, and takes its frame length in the spool', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir });
  t.after(() => spool.close());
  const text = `{"seq":0,"name":"Zoë ✓ 🙂"}`;
  const frame = frameLine(text);
  assert.equal(frame.length, 8 + Buffer.byteLength(text));
  assert.deepEqual(await spool.append(frame), { seq: 0 });
  assert.deepEqual(await spool.append(line(1)), { seq: 1 });
  assert.deepEqual(await readAll(spool), [text, line(1)]);
  assert.equal(spool.stats().bytes, frame.length + frameLine(line(1)).length);
  assert.equal((await stat(join(dir, (await segments(dir))[0] ?? ''))).size, spool.stats().bytes);
});

test('readFrom pages by record count and by bytes, always making progress', async (t) => {
  const spool = await Spool.open({ dir: await tempDir(t), segmentBytes: 300 });
  t.after(() => spool.close());
  await appendInTurn(spool, 0, 10);
  const size = Buffer.byteLength(line(0));
  assert.deepEqual(
    (await spool.readFrom(2, 3, Number.MAX_SAFE_INTEGER)).map((e) => e.seq),
    [2, 3, 4],
  );
  assert.deepEqual(
    (await spool.readFrom(7, 100, size * 2)).map((e) => e.seq),
    [7, 8],
  );
  assert.deepEqual(
    (await spool.readFrom(4, 100, 1)).map((e) => e.seq),
    [4],
  );
  assert.deepEqual(await spool.readFrom(10, 100, 1_000_000), []);
});

test('readFrom hands out a batch of more records than a call takes arguments', async (t) => {
  const spool = await Spool.open({ dir: await tempDir(t) });
  t.after(() => spool.close());
  const count = 150_000;
  await Promise.all(Array.from({ length: count }, (_, i) => spool.append(`${i}`)));
  const entries = await spool.readFrom(0, count, Number.MAX_SAFE_INTEGER);
  assert.equal(entries.length, count);
  assert.equal(entries.at(-1)?.bytes.toString(), `${count - 1}`);
});

test('appends made while a sync is in flight share the next sync', async (t) => {
  const spool = await Spool.open({ dir: await tempDir(t) });
  t.after(() => spool.close());
  const burst = await Promise.all(Array.from({ length: 1000 }, (_, i) => spool.append(line(i))));
  assert.deepEqual(
    burst.map((r) => r.seq),
    Array.from({ length: 1000 }, (_, i) => i),
  );
  assert.equal(spool.stats().syncs, 1);

  const first = spool.append(line(1000));
  const later = await new Promise<Promise<{ seq: number }>[]>((resolve) => {
    setImmediate(() => resolve(Array.from({ length: 100 }, (_, i) => spool.append(line(1001 + i)))));
  });
  await Promise.all([first, ...later]);
  assert.ok(spool.stats().syncs <= 3, `${spool.stats().syncs} syncs for 1101 appends`);
  assert.equal(spool.stats().nextSeq, 1101);
});

test('a record that is not urgent joins the next sync, or starts one itself when none comes', async (t) => {
  const spool = await Spool.open({ dir: await tempDir(t) });
  t.after(() => spool.close());
  // Alone, it is made durable by the late sync.
  assert.deepEqual(await spool.append(line(0), { urgent: false }), { seq: 0 });
  assert.equal(spool.stats().syncs, 1);
  // (A sync still running takes a new record at once: let that one end first.)
  await new Promise((resolve) => setImmediate(resolve));

  // Queued behind an urgent append a moment later, it rides that one's sync.
  const late = spool.append(line(1), { urgent: false });
  await new Promise((resolve) => setImmediate(resolve));
  const urgent = spool.append(line(2));
  assert.deepEqual(await Promise.all([late, urgent]), [{ seq: 1 }, { seq: 2 }]);
  assert.equal(spool.stats().syncs, 2);

  // Close makes a waiting one durable rather than leaving it behind.
  const last = spool.append(line(3), { urgent: false });
  await spool.close();
  assert.deepEqual(await last, { seq: 3 });
  assert.equal(spool.stats().syncs, 3);
});

test('a torn tail is cut off on open and every whole record is kept', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir });
  await appendInTurn(spool, 0, 10);
  await spool.close();
  const [segment] = await segments(dir);
  const path = join(dir, segment as string);
  await truncate(path, (await stat(path)).size - 3);

  const reopened = await Spool.open({ dir });
  t.after(() => reopened.close());
  assert.equal(reopened.recovery.records, 9);
  assert.equal(reopened.recovery.truncatedBytes, Buffer.byteLength(line(9)) + 8 - 3);
  assert.equal((await reopened.append('after the crash')).seq, 9);
  assert.deepEqual(await readAll(reopened), [
    ...Array.from({ length: 9 }, (_, i) => line(i)),
    'after the crash',
  ]);
});

test('a last record with a bad checksum, a partial header or trailing garbage is dropped', async (t) => {
  const cases: [string, (path: string) => Promise<void>][] = [
    [
      'flipped payload byte',
      async (path) => {
        const bytes = await readFile(path);
        bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 0xff;
        await writeFile(path, bytes);
      },
    ],
    ['partial header', (path) => appendFile(path, Buffer.from([5, 0, 0]))],
    [
      'garbage frame',
      (path) => appendFile(path, Buffer.from([4, 0, 0, 0, 1, 2, 3, 4, 0x61, 0x62, 0x63, 0x64])),
    ],
  ];
  for (const [name, damage] of cases) {
    const dir = await tempDir(t);
    const spool = await Spool.open({ dir });
    await appendInTurn(spool, 0, 4);
    await spool.close();
    await damage(join(dir, (await segments(dir))[0] as string));
    const reopened = await Spool.open({ dir });
    const kept = name === 'flipped payload byte' ? 3 : 4;
    assert.equal(reopened.recovery.records, kept, name);
    assert.ok(reopened.recovery.truncatedBytes > 0, name);
    assert.deepEqual(
      await readAll(reopened),
      Array.from({ length: kept }, (_, i) => line(i)),
      name,
    );
    assert.equal((await reopened.append('next')).seq, kept, name);
    await reopened.close();
  }
});

test('a record damaged after it became durable fails its checksum when read, and is not handed out', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir });
  t.after(() => spool.close());
  await appendInTurn(spool, 0, 4);
  const path = join(dir, (await segments(dir))[0] as string);
  const bytes = await readFile(path);
  const third = 2 * (8 + Buffer.byteLength(line(0)));
  bytes[third + 12] = (bytes[third + 12] ?? 0) ^ 0x01;
  await writeFile(path, bytes);

  await assert.rejects(readAll(spool), SpoolCorruptError);
  await assert.rejects(spool.readFrom(2, 1, 1_000), /record 2 .* fails its checksum/);
  assert.deepEqual(
    (await spool.readFrom(0, 2, 1_000)).map((e) => e.bytes.toString()),
    [line(0), line(1)],
  );
});

test('damage before the last segment is refused, not guessed at', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir, segmentBytes: 300 });
  await appendInTurn(spool, 0, 10);
  await spool.close();
  const [first] = await segments(dir);
  const path = join(dir, first as string);
  await truncate(path, (await stat(path)).size - 1);
  await assert.rejects(Spool.open({ dir, segmentBytes: 300 }), SpoolCorruptError);
});

/** Every segment file's bytes, by name: what an open that refuses must leave as it was. */
async function segmentBytes(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of await segments(dir)) files.set(name, await readFile(join(dir, name)));
  return files;
}

const frameBytes = (seq: number) => Buffer.byteLength(line(seq)) + 8;

test('damage in the last segment with whole records after it is refused, and no byte of it changes', async (t) => {
  const recordThree = 3 * frameBytes(0);
  const cases: [string, (bytes: Buffer) => void][] = [
    [
      'flipped payload bit',
      (bytes) => {
        bytes[recordThree + 20] = (bytes[recordThree + 20] ?? 0) ^ 0x01;
      },
    ],
    // A wrong length cannot be skipped by: the records after it are found all the same.
    [
      'damaged length',
      (bytes) => {
        bytes[recordThree + 1] = 0x7f;
      },
    ],
    [
      'zeroed record',
      (bytes) => {
        bytes.fill(0, recordThree, recordThree + frameBytes(3));
      },
    ],
  ];
  for (const [name, damage] of cases) {
    const dir = await tempDir(t);
    const spool = await Spool.open({ dir });
    await appendInTurn(spool, 0, 10);
    await spool.close();
    const path = join(dir, (await segments(dir))[0] as string);
    const bytes = await readFile(path);
    damage(bytes);
    await writeFile(path, bytes);
    const before = await segmentBytes(dir);

    await assert.rejects(Spool.open({ dir }), (error: Error) => {
      assert.ok(error instanceof SpoolCorruptError, name);
      assert.match(
        error.message,
        new RegExp(
          `^00000000000000000000\\.seg is damaged at byte ${recordThree} of ${bytes.length}, with 6 whole records after the damage`,
        ),
        name,
      );
      assert.match(
        error.message,
        /move the contents of its spool volume aside \(keep them for the auditor\)/,
        name,
      );
      return true;
    });
    assert.deepEqual(await segmentBytes(dir), before, name);
  }
});

test('a torn last frame is cut, whether the file ends in it or in zeros or garbage after it, and the sequence goes on', async (t) => {
  const cases: [string, Buffer][] = [
    ['partial last frame', Buffer.alloc(0)],
    ['partial last frame then zeros', Buffer.alloc(8192)],
    // About one spot in 256 of it reads as a length that fits the file: each
    // must not cost a checksum over megabytes, or the open never ends.
    ['partial last frame then random bytes', randomBytes(16 * 1024 * 1024)],
  ];
  for (const [name, after] of cases) {
    const dir = await tempDir(t);
    const spool = await Spool.open({ dir });
    await appendInTurn(spool, 0, 10);
    await spool.close();
    const path = join(dir, (await segments(dir))[0] as string);
    const whole = 9 * frameBytes(0);
    await truncate(path, whole + 30);
    await appendFile(path, after);

    const reopened = await Spool.open({ dir });
    assert.deepEqual(reopened.recovery, { records: 9, truncatedBytes: 30 + after.length }, name);
    assert.equal((await stat(path)).size, whole, name);
    assert.equal((await reopened.append(line(9))).seq, 9, name);
    assert.deepEqual(
      await readAll(reopened),
      Array.from({ length: 10 }, (_, i) => line(i)),
      name,
    );
    await reopened.close();
  }
});

test('an open refused because the segments miss shipped records leaves every segment as it was', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir });
  await appendInTurn(spool, 0, 10);
  await spool.release(8);
  await spool.close();
  // Torn-looking, but inside records already shipped: not a crash, and nothing to cut.
  const path = join(dir, (await segments(dir))[0] as string);
  await truncate(path, 7 * frameBytes(0) + 30);
  const before = await segmentBytes(dir);

  await assert.rejects(
    Spool.open({ dir }),
    /the segments do not cover the records after the shipped watermark/,
  );
  assert.deepEqual(await segmentBytes(dir), before);
});

test('segments rotate by size and reads cross them', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir, segmentBytes: 300 });
  t.after(() => spool.close());
  await appendInTurn(spool, 0, 10);
  const names = await segments(dir);
  assert.ok(names.length >= 3, names.join());
  assert.equal(names[0], '00000000000000000000.seg');
  assert.deepEqual(
    await readAll(spool, 1),
    Array.from({ length: 9 }, (_, i) => line(i + 1)),
  );
});

test('a segment stays open between reads of it, and no deleted segment stays open', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir, segmentBytes: 300 });
  await appendInTurn(spool, 0, 12);
  // Open: the segment appended to, and the one read.
  const open = () => openFilesUnder(dir);
  const [first] = await segments(dir);
  const active = (await segments(dir)).at(-1) as string;
  for (let seq = 0; seq < 3; seq++) {
    assert.deepEqual((await spool.readFrom(seq, 1, 1_000))[0]?.bytes.toString(), line(seq));
  }
  assert.deepEqual(await open(), [join(dir, active), join(dir, first as string)].sort());
  await spool.release(6);
  assert.ok(!(await segments(dir)).includes(first as string));
  assert.deepEqual(await open(), [join(dir, active)]);
  assert.deepEqual((await spool.readFrom(7, 1, 1_000))[0]?.bytes.toString(), line(7));
  await spool.close();
  assert.deepEqual(await open(), []);
});

test('release persists the watermark and deletes only fully shipped segments', async (t) => {
  const dir = await tempDir(t);
  const options: SpoolOptions = { dir, segmentBytes: 300 };
  const spool = await Spool.open(options);
  await appendInTurn(spool, 0, 12);
  const before = await segments(dir);
  await spool.release(6);
  const after = await segments(dir);
  assert.ok(after.length < before.length);
  // The segment holding seq 7 is still there.
  assert.deepEqual((await spool.readFrom(7, 1, 1_000))[0]?.bytes.toString(), line(7));
  await assert.rejects(spool.readFrom(0, 1, 1_000), /released/);
  await assert.rejects(spool.release(12), RangeError);
  assert.equal(spool.stats().waiting, 5);
  assert.equal(spool.stats().shippedSeq, 6);
  await spool.close();

  const reopened = await Spool.open(options);
  t.after(() => reopened.close());
  assert.equal(reopened.stats().shippedSeq, 6);
  assert.equal(reopened.recovery.records, 5);
  assert.equal((await reopened.append(line(12))).seq, 12);
});

test('a shipped segment whose deletion fails still takes its room, and the next release deletes it', async (t) => {
  const dir = await tempDir(t);
  const spool = await Spool.open({ dir, segmentBytes: 300 });
  t.after(() => spool.close());
  await appendInTurn(spool, 0, 12);
  const bytes = spool.stats().bytes;
  const names = await segments(dir);
  const [first, second] = names.map((name) => join(dir, name));
  const kept = await readFile(first as string);
  // A directory in its place: unlink refuses it, as a failing disk would.
  await rm(first as string);
  await mkdir(first as string);
  await assert.rejects(spool.release(6), { code: 'EISDIR' });
  assert.equal(spool.stats().bytes, bytes, 'the segment still on disk still takes its room');

  await rm(first as string, { recursive: true });
  await writeFile(first as string, kept);
  const secondSize = (await stat(second as string)).size;
  await spool.release(7);
  assert.deepEqual(await segments(dir), names.slice(2));
  assert.equal(spool.stats().bytes, bytes - kept.length - secondSize);
});

test('a full spool refuses appends and drops nothing it took', async (t) => {
  const dir = await tempDir(t);
  const frame = Buffer.byteLength(line(0)) + 8;
  const spool = await Spool.open({ dir, segmentBytes: frame * 2, capacityBytes: frame * 6 });
  t.after(() => spool.close());
  const taken = await appendInTurn(spool, 0, 6);
  assert.equal(spool.room(), 0);
  await assert.rejects(spool.append(line(6)), SpoolFullError);
  assert.deepEqual(await readAll(spool), taken.map(line));

  await spool.release(3);
  assert.equal(spool.room(), frame * 4, 'the two segments released are free again');
  assert.equal((await spool.append(line(6))).seq, 6);
});

test('stats report bytes, waiting records and the age of the oldest unshipped one', async (t) => {
  let clock = 1_000_000;
  const spool = await Spool.open({ dir: await tempDir(t), now: () => clock });
  t.after(() => spool.close());
  assert.equal(spool.stats().oldestUnshippedAgeMs, null);
  await spool.append(line(0));
  clock += 500;
  await spool.append(line(1));
  clock += 1500;
  const stats = spool.stats();
  assert.equal(stats.waiting, 2);
  assert.equal(stats.bytes, 2 * (Buffer.byteLength(line(0)) + 8));
  assert.equal(stats.oldestUnshippedAgeMs, 2000);
  await spool.release(0);
  assert.equal(spool.stats().oldestUnshippedAgeMs, 1500);
  await spool.release(1);
  assert.equal(spool.stats().oldestUnshippedAgeMs, null);
});

test('commit times stay bounded when records come one at a time and none ship, and no age reads younger than it is', async (t) => {
  let clock = 1_000_000;
  const spool = await Spool.open({ dir: await tempDir(t), now: () => clock });
  t.after(() => spool.close());
  const records = 10_000;
  const spacingMs = 150;
  for (let seq = 0; seq < records; seq++) {
    await spool.append(line(seq));
    clock += spacingMs;
  }
  const { commitTimes, oldestUnshippedAgeMs } = spool.stats();
  assert.ok(commitTimes <= 4096, `${commitTimes} commit times kept for ${records} records`);
  assert.equal(oldestUnshippedAgeMs, records * spacingMs, 'the oldest age stays exact');
  for (const seq of [1, 4097, 7777, records - 1]) {
    const trueAge = (records - seq) * spacingMs;
    const age = spool.committedAgeMs(seq) ?? Number.NaN;
    assert.ok(age >= trueAge && age <= records * spacingMs, `record ${seq}: ${age} ms, truly ${trueAge}`);
  }
});

test('ages are measured on a clock that never steps back, not on the wall clock', async (t) => {
  const wall = Date.now;
  let step = 0;
  t.mock.method(Date, 'now', () => wall() + step);
  let monotonic = performance.now();
  t.mock.method(performance, 'now', () => monotonic);
  const spool = await Spool.open({ dir: await tempDir(t) });
  t.after(() => spool.close());
  await spool.append(line(0));
  // An hour back, as a time sync may set it, while 200 ms go by: apart by more
  // than the resolution of commit times, so each record keeps its own.
  step = -3_600_000;
  monotonic += 200;
  await spool.append(line(1));
  monotonic += 300;
  assert.equal(spool.stats().oldestUnshippedAgeMs, 500);
  assert.equal(spool.committedAgeMs(1), 300);
});

test('records found on open are as old as their segment, whatever clock the spool counts on', async (t) => {
  const dir = await tempDir(t);
  const first = await Spool.open({ dir });
  await appendInTurn(first, 0, 2);
  await first.close();
  const minuteAgo = new Date(Date.now() - 60_000);
  await utimes(join(dir, (await segments(dir))[0] as string), minuteAgo, minuteAgo);
  const reopened = await Spool.open({ dir, now: () => 5_000 });
  t.after(() => reopened.close());
  const age = reopened.stats().oldestUnshippedAgeMs ?? 0;
  assert.ok(age >= 60_000 && age < 70_000, `the oldest record is ${age} ms old`);
  assert.equal(reopened.committedAgeMs(1), age);
});

test('a spool open in one process is refused to another until it ends, however it ends', async (t) => {
  const dir = await tempDir(t);
  const spoolModule = new URL('../../src/audit/spool.ts', import.meta.url).href;
  const holder = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { Spool } = await import(${JSON.stringify(spoolModule)});
       const spool = await Spool.open({ dir: process.argv[1] });
       await spool.append('{"from":"holder"}');
       process.stdout.write('open');
       setInterval(() => undefined, 1000);`,
      dir,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => holder.kill('SIGKILL'));
  // A holder that fails to start ends the wait too, rather than hanging the test.
  const opened = await Promise.race([
    once(holder.stdout, 'data').then(([data]) => String(data)),
    once(holder, 'exit').then(([code]) => `exited with ${code}`),
  ]);
  assert.equal(opened, 'open');
  await assert.rejects(Spool.open({ dir }), (error: Error) => {
    assert.ok(error instanceof SpoolInUseError);
    assert.match(error.message, /in use by another process/);
    return true;
  });
  // The same directory by another path is the same spool.
  const alias = join(await tempDir(t), 'alias');
  await symlink(dir, alias);
  await assert.rejects(Spool.open({ dir: alias }), SpoolInUseError);

  // A crash leaves no lock behind: the kernel drops it with the process.
  holder.kill('SIGKILL');
  await once(holder, 'exit');
  const spool = await Spool.open({ dir });
  t.after(() => spool.close());
  assert.deepEqual(await readAll(spool), ['{"from":"holder"}']);
});

test('a spool is refused to a second opener in the same process until closed', async (t) => {
  const dir = await tempDir(t);
  const first = await Spool.open({ dir });
  await assert.rejects(Spool.open({ dir }), SpoolInUseError);
  await first.close();
  const second = await Spool.open({ dir });
  await second.close();
});

test('an unreadable watermark is refused', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'shipped'), 'not json');
  await assert.rejects(Spool.open({ dir }), SpoolCorruptError);
});

test('a closed spool takes no more appends', async (t) => {
  const spool = await Spool.open({ dir: await tempDir(t) });
  const pending = spool.append(line(0));
  await spool.close();
  assert.equal((await pending).seq, 0);
  await assert.rejects(spool.append(line(1)), /closed/);
  assert.equal(spool.room(), 0);
});

test('a write that fails leaves none of its records for the next process to find', async (t) => {
  const dir = await tempDir(t);
  const spoolModule = new URL('../../src/audit/spool.ts', import.meta.url).href;
  const padded = (seq: number) => JSON.stringify({ seq, pad: 'x'.repeat(3000) });
  // A write past the file size limit fails (EFBIG) once it has written what
  // fits: the first records of the group are whole in the file, as a disk
  // that fills up leaves them.
  const writer = spawn(
    '/bin/sh',
    [
      '-c',
      'ulimit -f 128 && exec "$0" "$@"',
      process.execPath,
      '--input-type=module',
      '-e',
      `const { Spool } = await import(${JSON.stringify(spoolModule)});
       const spool = await Spool.open({ dir: process.argv[1] });
       const padded = (seq) => JSON.stringify({ seq, pad: 'x'.repeat(3000) });
       let acknowledged = 0;
       let refusal;
       for (let group = 0; refusal === undefined && group < 100; group++) {
         const appends = Array.from({ length: 8 }, (_, i) => spool.append(padded(group * 8 + i)));
         const results = await Promise.allSettled(appends);
         acknowledged += results.filter((result) => result.status === 'fulfilled').length;
         refusal = results.find((result) => result.status === 'rejected')?.reason;
       }
       const after = await spool.append(padded(-1)).then(() => 'taken', (error) => error.name);
       const failed = spool.failed();
       await spool.close();
       process.stdout.write(JSON.stringify({ acknowledged, refused: refusal?.name, cause: refusal?.cause?.code, after, failed }));`,
      dir,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  writer.stdout.on('data', (data) => {
    output += String(data);
  });
  await once(writer, 'close');
  const { acknowledged, ...failure } = JSON.parse(output);
  assert.deepEqual(failure, {
    refused: 'SpoolFailedError',
    cause: 'EFBIG',
    after: 'SpoolFailedError',
    failed: true,
  });
  assert.ok(acknowledged > 0);

  const reopened = await Spool.open({ dir });
  t.after(() => reopened.close());
  assert.deepEqual(reopened.recovery, { records: acknowledged, truncatedBytes: 0 });
  assert.equal(reopened.failed(), false, 'a new process recovers and records again');
  assert.deepEqual(
    await readAll(reopened),
    Array.from({ length: acknowledged }, (_, seq) => padded(seq)),
  );
});

test('a record being written still takes its room: no window lets appends overfill the spool', async (t) => {
  const dir = await tempDir(t);
  const frame = Buffer.byteLength(line(0)) + 8;
  const spool = await Spool.open({ dir, segmentBytes: frame * 2, capacityBytes: frame * 2 });
  t.after(() => spool.close());
  let written = false;
  const first = spool.append(line(0)).then(() => {
    written = true;
  });
  // Look at every turn of the event loop while the write and its fsync are under way.
  const seen = new Set<number>();
  while (!written) {
    seen.add(spool.room());
    await new Promise((resolve) => setImmediate(resolve));
  }
  await first;
  assert.deepEqual([...seen], [frame]);
  assert.equal(spool.room(), frame);
});

test('room, bytes from a seq and commit times tell the shipper what is due', async (t) => {
  let clock = 5_000;
  const dir = await tempDir(t);
  const frame = Buffer.byteLength(line(0)) + 8;
  const spool = await Spool.open({
    dir,
    segmentBytes: frame * 2,
    capacityBytes: frame * 10,
    now: () => clock,
  });
  t.after(() => spool.close());
  assert.equal(spool.room(), frame * 10);
  await appendInTurn(spool, 0, 3);
  clock += 100;
  await Promise.all([spool.append(line(3)), spool.append(line(4))]);
  assert.equal(spool.room(), frame * 5);
  assert.equal(spool.bytesFrom(0), frame * 5);
  assert.equal(spool.bytesFrom(3), frame * 2);
  assert.equal(spool.bytesFrom(5), 0);
  assert.equal(spool.committedAgeMs(2), 100);
  assert.equal(spool.committedAgeMs(3), 0);
  assert.equal(spool.committedAgeMs(4), 0);
  assert.equal(spool.committedAgeMs(5), undefined);
  // Commits closer together than 100 ms share the first one's time.
  clock += 40;
  await spool.append(line(5));
  assert.equal(spool.committedAgeMs(5), 40);
  await spool.release(3);
  assert.equal(spool.committedAgeMs(3), undefined);
  assert.equal(spool.committedAgeMs(4), 40);
  await spool.close();
  assert.equal(spool.room(), 0);
});
