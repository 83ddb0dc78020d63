// The routes `access.allowRoutes` may never open. A listed route passes
// through as is: no masking, no input or vector limits, no approvals. A route
// that embeds text would then carry raw inputs to the model past every control
// the embedding APIs get, so the policy refuses it, whatever `api` says: the
// model behind the proxy may serve more APIs than the one the pod names.

/**
 * The paths Veil itself serves as embedding APIs (the sidecar's dialects): OpenAI,
 * TEI, Ollama and Cohere. The sidecar's tests hold its dialects to this list.
 */
export const veilEmbeddingPaths: readonly string[] = [
  '/v1/embeddings',
  '/embeddings',
  '/embed',
  '/api/embed',
  '/api/embeddings',
  '/v2/embed',
  '/v1/embed',
];

/**
 * Other routes of common model servers that take text and answer vectors,
 * pooled or per token. Classification, reranking and scoring routes (TEI
 * `/predict`, `/rerank`; vLLM `/classify`, `/score`, `/rerank`) answer labels
 * and scores, not vectors that stand for the text, so they are the operator's
 * call; tokenizer routes likewise.
 */
export const serverEmbeddingPaths: readonly string[] = [
  // TEI: per-token vectors, sparse (SPLADE) vectors, Vertex AI and SageMaker entry points.
  '/embed_all',
  '/embed_sparse',
  '/vertex',
  '/invocations',
  // vLLM: raw pooler output of any pooling model.
  '/pooling',
  // llama.cpp's server.
  '/embedding',
];

/** TEI embeds a body POSTed to its root; a bodyless GET or HEAD there is its health check. */
const rootPath = '/';
const bodylessMethods: ReadonlySet<string> = new Set(['GET', 'HEAD']);

const refusedPaths: ReadonlySet<string> = new Set([...veilEmbeddingPaths, ...serverEmbeddingPaths]);

/** Enough rounds to undo any nesting of encodings a route could plausibly carry. */
const MAX_DECODE_ROUNDS = 4;

/**
 * A path as a lenient server may read it: percent-decoded, dot segments
 * resolved, duplicate and trailing slashes dropped, lower-cased. Decoding can
 * expose new slashes and dots, so it repeats until nothing changes.
 */
export function normalizeRoutePath(path: string): string {
  let current = path;
  for (let round = 0; round < MAX_DECODE_ROUNDS; round += 1) {
    const next = normalizeOnce(current);
    if (next === current) break;
    current = next;
  }
  return current;
}

function normalizeOnce(path: string): string {
  const query = path.search(/[?#]/);
  const bare = query === -1 ? path : path.slice(0, query);
  // The URL parser resolves `.`/`..` segments (also `%2e`) and reads `\` as `/`.
  const resolved = new URL(bare.replace(/^[/\\]+/, '/'), 'http://route.invalid').pathname;
  const collapsed = safeDecode(resolved)
    .replace(/[/\\]+/g, '/')
    .toLowerCase();
  return collapsed.length > 1 ? collapsed.replace(/\/$/, '') : collapsed;
}

/**
 * Each run of escapes decoded on its own: one malformed escape (`%zz`, or a
 * run that is no UTF-8) stays as written and does not keep the valid ones
 * beside it (`%2F`) from being read.
 */
function safeDecode(path: string): string {
  return path.replace(/(?:%[0-9a-f]{2})+/gi, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
}

/** Why a route may not be allow-listed, or undefined when it may. */
export function embeddingRouteProblem(method: string, path: string): string | undefined {
  const normalized = normalizeRoutePath(path);
  const embeds =
    refusedPaths.has(normalized) || (normalized === rootPath && !bodylessMethods.has(method.toUpperCase()));
  if (!embeds) return undefined;
  return `${normalized} is an embedding route: it passes through only as an embedding API, masked and limited; allowRoutes may not list it`;
}
