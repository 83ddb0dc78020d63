import { canonicalModelName } from '@veil/core';
import { z } from 'zod';
import { readBody } from './body.ts';
import { fault, found, modelName, type Reading, readWith, textOrTexts } from './fields.ts';
import { putTexts } from './rewrite.ts';
import type { Dialect, ParsedEmbedRequest, VectorSummary } from './types.ts';
import { badUpstream, decodeAll, decodeNumbers, objectAt, summarize } from './vectors.ts';

const embedPath = '/api/embed';
const legacyPath = '/api/embeddings';

/**
 * Ollama's model options are numbers and switches (`num_ctx`, `seed`, `use_mmap`), null where a
 * client leaves one unset. None carries text for an embedding (`stop` is for generation): a
 * string here would reach the model server unmasked, to be logged or quoted in its errors.
 */
function readModelOptions(value: unknown): Reading<Record<string, number | boolean | null>> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fault('must be an object');
  for (const [name, option] of Object.entries(value)) {
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(name)) {
      return fault('must name its options in lower-case letters, digits and _, as Ollama does');
    }
    if (option !== null && typeof option !== 'number' && typeof option !== 'boolean') {
      return fault('must hold numbers, booleans or null only: no model option of an embedding is text');
    }
  }
  return found(value as Record<string, number | boolean | null>);
}

/** A Go duration (`5m`, `1h30m`, `-1s`, `.5h`), as Ollama reads `keep_alive`; free text would reach it unmasked. */
const goDuration = /^[-+]?(?:0|(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/;

const keepAliveShape = "must be a duration ('5m', '1h30m') or a number of seconds";

const common = {
  model: modelName.min(1, 'must not be empty'),
  options: readWith(readModelOptions).nullish(),
  keep_alive: z
    .union([z.string().max(64, keepAliveShape).regex(goDuration, keepAliveShape), z.number()], keepAliveShape)
    .nullish(),
};
const inputShape = 'must be a string or an array of strings';

/**
 * Every top-level field Veil reads, and so every one a body may carry, as for the legacy route
 * below: another is refused, not forwarded unchecked. Exported so tests can count the issues a
 * body costs.
 */
export const ollamaEmbedRequest = z.strictObject(
  {
    ...common,
    // Ollama takes a request without input as "load the model", so an absent input is no error.
    input: readWith(textOrTexts('input', inputShape, 'allowed')).nullish(),
    truncate: z.boolean('must be a boolean').nullish(),
    dimensions: z.int('must be a positive integer').min(1, 'must be a positive integer').nullish(),
  },
  'must be a JSON object',
);

const ollamaLegacyEmbedRequest = z.strictObject(
  { ...common, prompt: z.string('must be a string') },
  'must be a JSON object',
);

function read(body: unknown, path: string): ParsedEmbedRequest {
  if (path === legacyPath) {
    const request = readBody(ollamaLegacyEmbedRequest, body);
    return {
      model: canonicalModelName(request.model),
      texts: [request.prompt],
      tokenInputs: null,
      inputCount: 1,
      textsAt: { field: 'prompt', single: true },
    };
  }
  const request = readBody(ollamaEmbedRequest, body);
  const texts = request.input?.texts ?? [];
  const parsed: ParsedEmbedRequest = {
    model: canonicalModelName(request.model),
    texts,
    tokenInputs: null,
    inputCount: texts.length,
    textsAt: request.input == null ? null : { field: 'input', single: request.input.single },
  };
  if (request.dimensions != null) parsed.dimensions = request.dimensions;
  return parsed;
}

function legacyVectors(responseBody: unknown): VectorSummary {
  const { embedding } = objectAt(responseBody, 'the body');
  const vector = decodeNumbers(embedding);
  if (vector === undefined) throw badUpstream("'embedding' is not an array of numbers");
  // Ollama answers an empty prompt with an empty embedding: no vector, not a broken one.
  const values = vector.dimensions === 0 ? [] : [vector.values];
  return summarize({ dimensions: vector.dimensions, values });
}

export const ollama: Dialect = {
  name: 'ollama',
  paths: [embedPath, legacyPath],
  parse: read,
  withTexts(body, path, texts) {
    const parsed = read(body, path);
    return putTexts(body, parsed.textsAt, parsed.texts.length, texts);
  },
  errorBody: (_status, _code, message) => ({ error: message }),
  vectors(responseBody, path): VectorSummary {
    if (path === legacyPath) return legacyVectors(responseBody);
    return summarize(decodeAll(objectAt(responseBody, 'the body').embeddings, 'embeddings', decodeNumbers));
  },
};
