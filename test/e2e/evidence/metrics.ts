/** A gauge the sidecar serves on its admin port, read as Prometheus text; undefined until reported. */
export async function readGauge(adminUrl: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : undefined;
}

/** Polls the gauge until `done` holds for its value. */
export async function waitForGauge(
  adminUrl: string,
  name: string,
  done: (value: number) => boolean,
): Promise<void> {
  for (;;) {
    const value = await readGauge(adminUrl, name);
    if (value !== undefined && done(value)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
