import { z } from 'zod';
import { readBody } from './body.ts';
import { readWith, textOrTexts } from './fields.ts';
import { putTexts } from './rewrite.ts';
import type { Dialect, ErrorCode, ParsedEmbedRequest, VectorSummary } from './types.ts';
import { decodeAll, decodeNumbers, summarize } from './vectors.ts';

const inputsShape = 'must be a string or an array of strings';

/**
 * Every top-level field Veil reads, and so every one a body may carry: another is refused, not
 * forwarded unchecked. Exported so tests can count the issues a body costs.
 */
const options = {
  normalize: z.boolean('must be a boolean').nullish(),
  truncate: z.boolean('must be a boolean').nullish(),
  truncation_direction: z.enum(['Left', 'Right', 'left', 'right'], "must be 'Left' or 'Right'").nullish(),
  // A key of the model's configured prompts; free text here would reach TEI unmasked.
  prompt_name: z
    .string('must be a string')
    .regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'must be the name of a configured prompt (letters, digits, _ . : -)')
    .nullish(),
  dimensions: z.int('must be a positive integer').min(1, 'must be a positive integer').nullish(),
};

export const teiEmbedRequest = z.strictObject(
  {
    // TEI also takes token ids; Veil does not, since masking works on text.
    inputs: readWith(textOrTexts('inputs', inputsShape, 'refused')),
    ...options,
    // LangChain's Hugging Face embeddings send their model kwargs here, as the Inference API
    // takes them; TEI ignores the field. It may hold TEI's own options, nothing else.
    parameters: z.strictObject(options, 'must be a JSON object').nullish(),
  },
  'must be a JSON object',
);

function read(body: unknown): ParsedEmbedRequest {
  const request = readBody(teiEmbedRequest, body);
  const { texts, single } = request.inputs;
  const parsed: ParsedEmbedRequest = {
    model: '',
    texts,
    tokenInputs: null,
    inputCount: texts.length,
    textsAt: { field: 'inputs', single },
  };
  if (request.dimensions != null) parsed.dimensions = request.dimensions;
  return parsed;
}

// TEI's own types where one fits (its clients read the status first); plain names elsewhere.
const errorTypes: Record<ErrorCode, string> = {
  invalid_request: 'Validation',
  unauthenticated: 'Unauthorized',
  forbidden: 'Forbidden',
  too_large: 'Validation',
  rate_limited: 'Overloaded',
  approval_required: 'ApprovalRequired',
  upstream_error: 'Backend',
  upstream_timeout: 'Backend',
  unavailable: 'Unhealthy',
  not_found: 'NotFound',
  internal: 'Backend',
};

export const tei: Dialect = {
  name: 'tei',
  paths: ['/embed'],
  parse: read,
  withTexts(body, _path, texts) {
    const parsed = read(body);
    return putTexts(body, parsed.textsAt, parsed.texts.length, texts);
  },
  errorBody: (_status, code, message) => ({ error: message, error_type: errorTypes[code] }),
  vectors(responseBody): VectorSummary {
    return summarize(decodeAll(responseBody, 'the body', decodeNumbers));
  },
};
