// Callers for the evidence tests: each request names its own model, a marker
// the audit record keeps, so a test can match every answer to its record.
import { Agent, request } from 'undici';

export type Answer = {
  marker: string;
  /** Undefined when no response came (the connection failed or the sidecar died). */
  status: number | undefined;
  body: string;
};

export type LoadOptions = {
  url: string;
  token: string;
  /** Concurrent callers. */
  workers: number;
  /** Markers are `<prefix>-<n>`. */
  prefix: string;
  /** Checked before each request; the callers stop once it is true. */
  stop: () => boolean;
  /** A caller also stops after a request with no response (the sidecar is gone). */
  stopOnNoResponse?: boolean;
  onAnswer?: (answer: Answer) => void;
};

export async function runLoad(options: LoadOptions): Promise<Answer[]> {
  const agent = new Agent({ connections: options.workers });
  const answers: Answer[] = [];
  let next = 0;
  const worker = async () => {
    while (!options.stop()) {
      const answer = await send(agent, options, `${options.prefix}-${next++}`);
      answers.push(answer);
      options.onAnswer?.(answer);
      if (answer.status === undefined && options.stopOnNoResponse) return;
    }
  };
  try {
    await Promise.all(Array.from({ length: options.workers }, worker));
  } finally {
    await agent.destroy();
  }
  return answers;
}

async function send(agent: Agent, options: LoadOptions, marker: string): Promise<Answer> {
  try {
    const response = await request(`${options.url}/v1/embeddings`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${options.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: marker, input: ['an input the evidence must account for'] }),
    });
    return { marker, status: response.statusCode, body: await response.body.text() };
  } catch {
    return { marker, status: undefined, body: '' };
  }
}

/** How often each marker occurs among the models of `records`. */
export function markerCounts(records: readonly { model: string | null }[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const record of records) {
    if (record.model !== null) counts.set(record.model, (counts.get(record.model) ?? 0) + 1);
  }
  return counts;
}
