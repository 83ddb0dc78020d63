import { cohere } from './cohere.ts';
import { ollama } from './ollama.ts';
import { openai } from './openai.ts';
import { tei } from './tei.ts';
import type { ApiName, Dialect } from './types.ts';

export { cohere } from './cohere.ts';
export { ollama } from './ollama.ts';
export { openai } from './openai.ts';
export { tei } from './tei.ts';
export * from './types.ts';

export const dialects: readonly Dialect[] = [openai, tei, ollama, cohere];

/** Every POST path any dialect serves. */
export const allEmbeddingPaths: readonly string[] = dialects.flatMap((dialect) => dialect.paths);

const byPath: ReadonlyMap<string, Dialect> = new Map(
  dialects.flatMap((dialect) => dialect.paths.map((path) => [path, dialect] as const)),
);

/**
 * The dialect that serves `path`: `auto` picks by path, a fixed API serves only its own paths.
 * A query string is ignored; undefined means the path is no embedding endpoint of that API.
 */
export function dialectFor(api: ApiName | 'auto', path: string): Dialect | undefined {
  const query = path.indexOf('?');
  const dialect = byPath.get(query === -1 ? path : path.slice(0, query));
  if (dialect === undefined || (api !== 'auto' && dialect.name !== api)) return undefined;
  return dialect;
}

/** With `auto`, where each other API keeps its routes; the rest are OpenAI's. */
const byPrefix: readonly (readonly [string, Dialect])[] = [
  ['/api/', ollama],
  ['/v2/', cohere],
  ['/embed_', tei],
];

/**
 * The dialect a refusal outside the embedding routes speaks: the API the proxy
 * serves; with `auto`, the API among whose routes `path` lies (`/api/tags` is
 * Ollama's), else OpenAI's, the most widely understood.
 */
export function refusalDialect(api: ApiName | 'auto', path = ''): Dialect {
  if (api !== 'auto') return dialects.find((dialect) => dialect.name === api) ?? openai;
  return byPrefix.find(([prefix]) => path.startsWith(prefix))?.[1] ?? openai;
}
