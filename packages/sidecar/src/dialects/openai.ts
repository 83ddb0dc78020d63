import { z } from 'zod';
import { readBody } from './body.ts';
import {
  anyText,
  fault,
  found,
  type ItemKind,
  modelName,
  otherKind,
  type Reading,
  readInputList,
  readList,
  readWith,
} from './fields.ts';
import { putTexts } from './rewrite.ts';
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

// Each form carries what the rest of the pipeline needs, so nothing re-inspects the raw input.
interface Input {
  texts: string[];
  tokenInputs: number[][] | null;
  single: boolean;
}

const text: ItemKind<string> = {
  ...anyText,
  check: (item) => (item === '' ? fault('must not be an empty string') : undefined),
};

const tokenId: ItemKind<number> = {
  name: 'a token id',
  is: (item): item is number => typeof item === 'number',
  check: (item) => {
    if (!Number.isSafeInteger(item)) return fault('must be an integer token id');
    return item < 0 ? fault('must be a non-negative token id') : undefined;
  },
};

const tokenIds: ItemKind<number[]> = {
  name: 'a token-id array',
  is: (item): item is number[] => Array.isArray(item),
  check: (item) => {
    if (item.length === 0) return fault('must not be an empty token array');
    const tokens = readList(item, tokenId, (index) => fault('must be an integer token id', index));
    return tokens.ok ? undefined : tokens;
  },
};

/** The first item fixes the form, so a list is read once, whatever its length, not once a form. */
function readArrayInput(items: readonly unknown[]): Reading<Input> {
  const [first] = items;
  if (typeof first === 'string') {
    const texts = readInputList('input', inputShape, items, text);
    return texts.ok ? found({ texts: texts.value, tokenInputs: null, single: false }) : texts;
  }
  // One token array is one input, however long: the body's size bounds it.
  if (typeof first === 'number') {
    const tokens = readList(items, tokenId, otherKind('input', inputShape, tokenId));
    return tokens.ok ? found({ texts: [], tokenInputs: [tokens.value], single: false }) : tokens;
  }
  if (Array.isArray(first)) {
    const tokenInputs = readInputList('input', inputShape, items, tokenIds);
    return tokenInputs.ok ? found({ texts: [], tokenInputs: tokenInputs.value, single: false }) : tokenInputs;
  }
  return fault(inputShape);
}

function readInput(value: unknown): Reading<Input> {
  if (typeof value === 'string') {
    return value === ''
      ? fault('must not be an empty string')
      : found({ texts: [value], tokenInputs: null, single: true });
  }
  if (!Array.isArray(value)) return fault(inputShape);
  return value.length === 0 ? fault('must not be an empty array') : readArrayInput(value);
}

/**
 * Every top-level field Veil reads, and so every one a body may carry: another (vLLM's
 * `messages`, `embed_dtype`, `endianness`) is refused, not forwarded unchecked. Exported so
 * tests can count the issues a body costs.
 */
export const openAIEmbedRequest = z.strictObject(
  {
    model: modelName.min(1, 'must not be empty'),
    input: readWith(readInput),
    encoding_format: z.enum(['float', 'base64'], "must be 'float' or 'base64'").nullish(),
    dimensions: z.int('must be a positive integer').min(1, 'must be a positive integer').nullish(),
    user: z.string('must be a string').nullish(),
    // Options of OpenAI-compatible servers that carry no text: NVIDIA NIM's (its asymmetric
    // models need `input_type`) and vLLM's prompt truncation.
    input_type: z.enum(['query', 'passage'], "must be 'query' or 'passage'").nullish(),
    truncate: z.enum(['NONE', 'START', 'END'], "must be 'NONE', 'START' or 'END'").nullish(),
    truncate_prompt_tokens: z.int('must be an integer').min(-1, 'must be -1 or more').nullish(),
  },
  'must be a JSON object',
);

function read(body: unknown): ParsedEmbedRequest {
  const request = readBody(openAIEmbedRequest, body);
  const { texts, tokenInputs, single } = request.input;
  const parsed: ParsedEmbedRequest = {
    model: request.model,
    texts,
    tokenInputs,
    inputCount: tokenInputs === null ? texts.length : tokenInputs.length,
    textsAt: tokenInputs === null ? { field: 'input', single } : null,
  };
  if (request.dimensions != null) parsed.dimensions = request.dimensions;
  if (request.encoding_format != null) parsed.encodings = [request.encoding_format];
  return parsed;
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
  parse: read,
  withTexts(body, _path, texts) {
    const parsed = read(body);
    return putTexts(body, parsed.textsAt, parsed.texts.length, texts);
  },
  errorBody: (_status, code, message, param = null) => ({
    error: { message, type: errorTypes[code], param, code },
  }),
  vectors(responseBody): VectorSummary {
    return summarize(decodeAll(objectAt(responseBody, 'the body').data, 'data', decodeItem));
  },
  // Often an e-mail address.
  optionTextFields: ['user'],
};
