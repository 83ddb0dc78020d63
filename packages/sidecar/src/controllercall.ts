// What the sidecar's calls to the controller (policy pulls, admin certificates)
// share: the pod's projected token, read afresh for each call as the kubelet
// rotates it, and the controller's answer, read whole only up to a bound.
import { readFile } from 'node:fs/promises';

export async function readControllerToken(file: string): Promise<string> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text === '') throw new Error('empty');
    return text;
  } catch (error) {
    throw new Error(
      `the service-account token for the controller cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
}

/** The answer's text; fails past `maxBytes`, or when the connection breaks mid-answer. */
export async function readControllerAnswer(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  maxBytes: number,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.length;
      if (size > maxBytes) {
        body.destroy();
        throw new AnswerTooLargeError(`the controller's answer exceeds ${maxBytes} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof AnswerTooLargeError) throw error;
    throw new Error(`the controller's answer was cut (${(error as Error).message})`);
  }
  return Buffer.concat(chunks).toString('utf8');
}

class AnswerTooLargeError extends Error {}

/** The JSON in `text`, or undefined when it holds none. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
