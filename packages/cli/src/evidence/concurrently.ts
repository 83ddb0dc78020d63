// Many objects, few at a time: a pull or a load of tens of thousands of
// versions must neither open more files than the process may (EMFILE) nor
// hold more requests in flight than an S3 endpoint answers well.

/** Like Promise.all over `items.map(work)`, with at most `limit` at a time; results in input order. */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    // After one failure the others stop taking work: the failure is reported at once.
    while (next < items.length && !failed) {
      const index = next++;
      try {
        results[index] = await work(items[index] as T);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
