import { z } from 'zod';
import { readBody } from './body.ts';
import {
  anyText,
  fault,
  type ItemKind,
  modelName,
  type Reading,
  readList,
  readWith,
  tooManyInputs,
} from './fields.ts';
import { putTexts } from './rewrite.ts';
import type { Dialect, EmbeddingEncoding, ParsedEmbedRequest, VectorSummary } from './types.ts';
import {
  badUpstream,
  type DecodedVectors,
  decodeAll,
  decodeBase64Float32,
  decodeNumbers,
  decodePackedBits,
  objectAt,
  summarize,
  type VectorDecoder,
} from './vectors.ts';

const v1Path = '/v1/embed';
const v2Path = '/v2/embed';

const encodings = ['float', 'int8', 'uint8', 'binary', 'ubinary', 'base64'] as const;
const imagesRefused = 'is not supported by Veil: images cannot be masked, send text in `texts`';
const textInputTypes = ['search_document', 'search_query', 'classification', 'clustering'] as const;

const textsShape = 'must be an array of strings';
const encodingNames = `must be one of ${encodings.map((e) => `'${e}'`).join(', ')}`;

function readTexts(value: unknown): Reading<string[]> {
  if (!Array.isArray(value)) return fault(textsShape);
  if (value.length === 0) return fault('must not be an empty array');
  return tooManyInputs(value) ?? readList(value, anyText, (index) => fault('must be a string', index));
}

const encoding: ItemKind<EmbeddingEncoding> = {
  name: 'an embedding type',
  is: (item): item is EmbeddingEncoding => (encodings as readonly unknown[]).includes(item),
};

// Six types are all there are: a longer list repeats some, and is refused before its items are read.
function readEncodings(value: unknown): Reading<EmbeddingEncoding[]> {
  if (!Array.isArray(value)) return fault('must be an array');
  if (value.length === 0) return fault('must not be an empty array');
  if (value.length > encodings.length) return fault(`must hold at most ${encodings.length} types`);
  return readList(value, encoding, (index) => fault(encodingNames, index));
}

// Image fields come first so that a request sending images hears why, not that `texts` is missing.
const common = {
  images: z.never(imagesRefused).optional(),
  texts: readWith(readTexts),
  input_type: z.enum(textInputTypes, `must be one of ${textInputTypes.map((t) => `'${t}'`).join(', ')}`),
  embedding_types: readWith(readEncodings).nullish(),
  truncate: z.enum(['NONE', 'START', 'END'], "must be 'NONE', 'START' or 'END'").nullish(),
};

/**
 * Every top-level field Veil reads, and so every one a body may carry, as for v1 below: another
 * (v1 has no `inputs`) is refused, not forwarded unchecked. Exported so tests can count the
 * issues a body costs.
 */
export const cohereV2EmbedRequest = z.strictObject(
  {
    inputs: z.never(imagesRefused).optional(),
    ...common,
    model: modelName.min(1, 'must not be empty'),
    output_dimension: z.int('must be a positive integer').min(1, 'must be a positive integer').nullish(),
    max_tokens: z.int('must be a positive integer').min(1, 'must be a positive integer').nullish(),
  },
  'must be a JSON object',
);
type CohereV2EmbedRequest = z.infer<typeof cohereV2EmbedRequest>;

const cohereV1EmbedRequest = z.strictObject(
  {
    ...common,
    model: modelName.nullish(),
    input_type: common.input_type.nullish(),
  },
  'must be a JSON object',
);
type CohereV1EmbedRequest = z.infer<typeof cohereV1EmbedRequest>;

function read(body: unknown, path: string): ParsedEmbedRequest {
  if (path === v1Path) return summarizeRequest(readBody(cohereV1EmbedRequest, body), null);
  const request = readBody(cohereV2EmbedRequest, body);
  return summarizeRequest(request, request.output_dimension ?? null);
}

function summarizeRequest(
  request: CohereV1EmbedRequest | CohereV2EmbedRequest,
  dimensions: number | null,
): ParsedEmbedRequest {
  const parsed: ParsedEmbedRequest = {
    model: request.model ?? '',
    texts: request.texts,
    tokenInputs: null,
    inputCount: request.texts.length,
    textsAt: { field: 'texts', single: false },
  };
  if (dimensions !== null) parsed.dimensions = dimensions;
  if (request.embedding_types != null) parsed.encodings = request.embedding_types;
  return parsed;
}

// Float32 forms first: the digest is taken from the first type present in this order, so a
// response carrying floats is digested the same whatever other types ride along.
const decoders: ReadonlyArray<readonly [EmbeddingEncoding, VectorDecoder]> = [
  ['float', decodeNumbers],
  ['base64', decodeBase64Float32],
  ['int8', decodeNumbers],
  ['uint8', decodeNumbers],
  ['binary', decodePackedBits],
  ['ubinary', decodePackedBits],
];

/** `embeddings` by type: every type present must hold the same number of vectors and dimensions. */
function vectorsByType(embeddings: Record<string, unknown>): VectorSummary {
  let first: DecodedVectors | undefined;
  for (const [name, decode] of decoders) {
    if (embeddings[name] === undefined) continue;
    const found = decodeAll(embeddings[name], `embeddings.${name}`, decode);
    if (first === undefined) first = found;
    else if (found.values.length !== first.values.length || found.dimensions !== first.dimensions) {
      throw badUpstream(`'embeddings.${name}' disagrees with the other embedding types`);
    }
  }
  if (first === undefined) throw badUpstream("'embeddings' holds no known embedding type");
  return summarize(first);
}

/** `texts` as the caller sent them, wherever the response has the field at all; its shape stays. */
function withCallerTexts(responseBody: unknown, texts: readonly string[]): unknown {
  const body = objectAt(responseBody, 'the body');
  if (!Object.hasOwn(body, 'texts')) return body;
  const echoed = body.texts;
  const same =
    Array.isArray(echoed) && echoed.length === texts.length && echoed.every((text, i) => text === texts[i]);
  return same ? body : { ...body, texts: [...texts] };
}

export const cohere: Dialect = {
  name: 'cohere',
  paths: [v2Path, v1Path],
  parse: read,
  withTexts(body, path, texts) {
    const parsed = read(body, path);
    return putTexts(body, parsed.textsAt, parsed.texts.length, texts);
  },
  errorBody: (_status, _code, message) => ({ message }),
  vectors(responseBody): VectorSummary {
    const { embeddings } = objectAt(responseBody, 'the body');
    // v1 without embedding_types answers a bare float matrix.
    if (Array.isArray(embeddings)) return summarize(decodeAll(embeddings, 'embeddings', decodeNumbers));
    return vectorsByType(objectAt(embeddings, "'embeddings'"));
  },
  withCallerTexts,
};
