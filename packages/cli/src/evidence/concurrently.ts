// Many objects, few at a time: a pull or a load of tens of thousands of
// versions must neither open more files than the process may (EMFILE) nor
// hold more requests in flight than an S3 endpoint answers well.

/**
 * Like Promise.all over `items.map(work)`, with at most `limit` at a time;
 * results in input order. After a failure no further item is started, and the
 * first error is thrown only once every item already started has settled: a
 * caller cleaning up after the failure (removing a temporary directory) must
 * not race work still writing into what it removes.
 */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const index = next++;
      try {
        results[index] = await work(items[index] as T);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
  return results;
}
