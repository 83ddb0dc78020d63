import { z } from 'zod';
import { readBody } from './body.ts';
import { putTexts, type TextSlot } from './rewrite.ts';
import type { Dialect, ErrorCode, ParsedEmbedRequest, VectorSummary } from './types.ts';
import {
  decodeAll,
  decodeBase64Float32,
  decodeNumbers,
  objectAt,
  summarize,
  type VectorDecoder,
} from './vectors.ts';

const inputShape =
  'must be a string, an array of strings, an array of token ids or an array of token-id arrays';
const text = z.string('must be a string').min(1, 'must not be an empty string');
const tokenIds = z
  .array(z.int('must be an integer token id').min(0, 'must be a non-negative token id'), 'must be an array')
  .min(1, 'must not be an empty token array');
// Each form carries what the rest of the pipeline needs, so nothing re-inspects the raw input.
const arrayInput = z.union(
  [
    z.array(text).transform((texts) => ({ texts, tokenInputs: null, single: false })),
    tokenIds.transform((tokens) => ({ texts: [], tokenInputs: [tokens], single: false })),
    z.array(tokenIds).transform((tokenInputs) => ({ texts: [], tokenInputs, single: false })),
  ],
  inputShape,
);
const input = z.union(
  [
    text.transform((one) => ({ texts: [one], tokenInputs: null, single: true })),
    z.array(z.unknown()).min(1, 'must not be an empty array').pipe(arrayInput),
  ],
  inputShape,
);

const openAIEmbedRequest = z.object(
  {
    model: z.string('must be a string').min(1, 'must not be empty'),
    input,
    encoding_format: z.enum(['float', 'base64'], "must be 'float' or 'base64'").nullish(),
    dimensions: z.int('must be a positive integer').min(1, 'must be a positive integer').nullish(),
    user: z.string('must be a string').nullish(),
  },
  'must be a JSON object',
);

function read(body: unknown): { parsed: ParsedEmbedRequest; slot: TextSlot | null } {
  const request = readBody(openAIEmbedRequest, body);
  const { texts, tokenInputs, single } = request.input;
  const parsed: ParsedEmbedRequest = {
    model: request.model,
    texts,
    tokenInputs,
    inputCount: tokenInputs === null ? texts.length : tokenInputs.length,
  };
  if (request.dimensions != null) parsed.dimensions = request.dimensions;
  if (request.encoding_format != null) parsed.encodings = [request.encoding_format];
  return { parsed, slot: tokenInputs === null ? { field: 'input', single } : null };
}

// The SDK picks its error class from the status; the type is for callers that branch on it.
const errorTypes: Record<ErrorCode, string> = {
  invalid_request: 'invalid_request_error',
  unauthenticated: 'authentication_error',
  forbidden: 'permission_error',
  too_large: 'invalid_request_error',
  rate_limited: 'rate_limit_error',
  approval_required: 'permission_error',
  upstream_error: 'server_error',
  upstream_timeout: 'server_error',
  unavailable: 'server_error',
  not_found: 'invalid_request_error',
  internal: 'server_error',
};

// `encoding_format: base64` answers each embedding as a string, float answers it as numbers.
const decodeItem: VectorDecoder = (item) => {
  if (typeof item !== 'object' || item === null) return undefined;
  const { embedding } = item as { embedding?: unknown };
  return typeof embedding === 'string' ? decodeBase64Float32(embedding) : decodeNumbers(embedding);
};

export const openai: Dialect = {
  name: 'openai',
  paths: ['/v1/embeddings', '/embeddings'],
  parse: (body) => read(body).parsed,
  withTexts(body, _path, texts) {
    const { parsed, slot } = read(body);
    return putTexts(body, slot, parsed.texts.length, texts);
  },
  errorBody: (_status, code, message, param = null) => ({
    error: { message, type: errorTypes[code], param, code },
  }),
  vectors(responseBody): VectorSummary {
    return summarize(decodeAll(objectAt(responseBody, 'the body').data, 'data', decodeItem));
  },
};
