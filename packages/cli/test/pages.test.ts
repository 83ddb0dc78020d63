// The paging of `veil evidence pull`'s listing, driven by hand-written pages:
// pure control flow, so no server is needed to show where it stops.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CliError } from '../src/command.ts';
import { type ListMarkers, pagesOf, type VersionPage } from '../src/evidence/pull.ts';

/** A page source answering each request with the next page, recording the markers asked for. */
function source(pages: readonly VersionPage[]) {
  const asked: ListMarkers[] = [];
  const fetchPage = async (markers: ListMarkers): Promise<VersionPage> => {
    asked.push(markers);
    const page = pages[asked.length - 1];
    if (!page) throw new Error(`page ${asked.length} was asked for, beyond the listing`);
    return page;
  };
  return { asked, fetchPage };
}

const version = (key: string) => ({ Key: key, VersionId: `v-${key}` });

async function collect(fetchPage: (markers: ListMarkers) => Promise<VersionPage>): Promise<string[]> {
  const keys: string[] = [];
  for await (const page of pagesOf(fetchPage)) keys.push(...(page.Versions ?? []).map((v) => v.Key ?? ''));
  return keys;
}

test('each page is asked for after the markers of the one before, until one is not truncated', async () => {
  const { asked, fetchPage } = source([
    { IsTruncated: true, Versions: [version('a')], NextKeyMarker: 'a', NextVersionIdMarker: 'v-a' },
    { IsTruncated: true, Versions: [version('b')], NextKeyMarker: 'a', NextVersionIdMarker: 'v-b' },
    { IsTruncated: false, Versions: [version('c')] },
  ]);
  assert.deepEqual(await collect(fetchPage), ['a', 'b', 'c']);
  assert.deepEqual(asked, [
    { keyMarker: undefined, versionIdMarker: undefined },
    { keyMarker: 'a', versionIdMarker: 'v-a' },
    // The same key with another version marker still advances: a key with many versions.
    { keyMarker: 'a', versionIdMarker: 'v-b' },
  ]);
});

test('a truncated page that names no marker to continue from is refused, not taken as the end', async () => {
  const { fetchPage } = source([
    { IsTruncated: true, Versions: [version('a')] },
    { IsTruncated: false, Versions: [version('b')] },
  ]);
  await assert.rejects(collect(fetchPage), (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(
      error.message,
      'the bucket listing is cut short: page 1 says more follows but names no NextKeyMarker to continue from',
    );
    return true;
  });
});

test('a truncated page naming no version marker is refused: continuing after the key would skip its older versions', async () => {
  const { asked, fetchPage } = source([
    { IsTruncated: true, Versions: [version('a')], NextKeyMarker: 'a' },
    { IsTruncated: false, Versions: [version('b')] },
  ]);
  await assert.rejects(collect(fetchPage), (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(
      error.message,
      'the bucket listing is cut short: page 1 says more follows but names no NextVersionIdMarker to continue from',
    );
    return true;
  });
  assert.equal(asked.length, 1);
});

test('a page naming the markers it was asked with again is refused, not asked for forever', async () => {
  const same = { NextKeyMarker: 'a', NextVersionIdMarker: 'v-a' };
  const { asked, fetchPage } = source([
    { IsTruncated: true, Versions: [version('a')], ...same },
    { IsTruncated: true, Versions: [version('a')], ...same },
    { IsTruncated: true, Versions: [version('a')], ...same },
  ]);
  await assert.rejects(collect(fetchPage), (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(
      error.message,
      'the bucket listing does not advance: page 2 names the same NextKeyMarker and NextVersionIdMarker as the page before',
    );
    return true;
  });
  assert.equal(asked.length, 2);
});
