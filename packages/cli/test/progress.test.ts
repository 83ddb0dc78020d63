import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createProgress, formatBytes } from '../src/progress.ts';

function fakeOutput(isTTY: boolean) {
  const writes: string[] = [];
  return { output: { isTTY, columns: 100, write: (text: string) => writes.push(text) }, writes };
}

test('off a terminal: a plain line at start, then at most one per interval, and one at the end', () => {
  const { output, writes } = fakeOutput(false);
  let clock = 0;
  const progress = createProgress({ output, label: 'pull', now: () => clock, logIntervalMs: 1000 });
  progress.start(4, 4096);
  progress.advance(1024);
  clock = 999;
  progress.advance(1024);
  clock = 1000;
  progress.advance(1024);
  progress.advance(1024);
  progress.finish('4 downloaded, 0 already present');
  assert.deepEqual(writes, [
    'pull: 0/4 objects, 0 B/4.0 KiB (0%)\n',
    'pull: 3/4 objects, 3.0 KiB/4.0 KiB (75%)\n',
    'pull: 4/4 objects, 4.0 KiB/4.0 KiB (100%), 4 downloaded, 0 already present\n',
  ]);
  assert.ok(writes.every((line) => !line.includes('\r') && !line.includes('\x1b')));
});

test('on a terminal: one line redrawn in place at most once per interval, ended by a newline', () => {
  const { output, writes } = fakeOutput(true);
  let clock = 0;
  const progress = createProgress({ output, label: 'pull', now: () => clock, redrawIntervalMs: 100 });
  progress.start(2, 0);
  clock = 100;
  progress.advance(0);
  progress.advance(0);
  progress.finish();
  assert.equal(writes.length, 4);
  assert.ok(writes.slice(0, 3).every((w) => w.startsWith('\r\x1b[K')));
  assert.match(writes[1] ?? '', /pull \[#{20}·{20}\]  1\/2 objects  0 B\/0 B  50%/);
  assert.match(writes[2] ?? '', /2\/2 objects .* 100%/);
  assert.equal(writes[3], '\n');
});

test('abort ends a bar drawn on a terminal, and writes nothing where no line is open', () => {
  const terminal = fakeOutput(true);
  let clock = 0;
  const drawn = createProgress({ output: terminal.output, label: 'pull', now: () => clock });
  drawn.start(2, 0);
  drawn.abort();
  drawn.abort();
  // Downloads still under way when the pull failed draw nothing over its error.
  clock = 1000;
  drawn.advance(0);
  assert.equal(terminal.writes.length, 2);
  assert.equal(terminal.writes[1], '\n');

  const undrawn = fakeOutput(true);
  createProgress({ output: undrawn.output, label: 'pull' }).abort();
  const finished = fakeOutput(true);
  const done = createProgress({ output: finished.output, label: 'pull' });
  done.start(0, 0);
  done.finish();
  done.abort();
  const log = fakeOutput(false);
  const plain = createProgress({ output: log.output, label: 'pull' });
  plain.start(2, 0);
  plain.abort();
  assert.deepEqual([undrawn.writes.length, finished.writes.length, log.writes.length], [0, 3, 1]);
});

test('byte sizes are shown in binary units', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB');
});
