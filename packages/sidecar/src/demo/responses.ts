// Response bodies of each API, written as JSON text: vectors go in through TypedArray#join,
// which prints numbers exactly as JSON.stringify would at a third of its cost.
import { randomUUID } from 'node:crypto';
import type { EmbeddingEncoding, ParsedEmbedRequest } from '../dialects/index.ts';

export interface Embedded {
  request: ParsedEmbedRequest;
  /** The model name to answer with. */
  model: string;
  vectors: readonly Float32Array[];
}

type ResponseWriter = (embedded: Embedded) => string;

function floatJson(vector: Float32Array): string {
  return `[${vector.join(',')}]`;
}

function base64Json(vector: Float32Array): string {
  const bytes = Buffer.allocUnsafe(vector.length * 4);
  for (let i = 0; i < vector.length; i++) bytes.writeFloatLE(vector[i] ?? 0, i * 4);
  return `"${bytes.toString('base64')}"`;
}

function int8Json(vector: Float32Array): string {
  return `[${Array.from(vector, (value) => Math.round(value * 127)).join(',')}]`;
}

function uint8Json(vector: Float32Array): string {
  return `[${Array.from(vector, (value) => Math.round((value + 1) * 127.5)).join(',')}]`;
}

/** One bit a dimension (set when positive), most significant first, eight to a byte. */
function packedBits(vector: Float32Array): number[] {
  const bytes = new Array<number>(Math.ceil(vector.length / 8)).fill(0);
  for (let i = 0; i < vector.length; i++) {
    if ((vector[i] ?? 0) > 0) bytes[i >> 3] = (bytes[i >> 3] ?? 0) | (0x80 >> (i & 7));
  }
  return bytes;
}

const encoders: Readonly<Record<EmbeddingEncoding, (vector: Float32Array) => string>> = {
  float: floatJson,
  base64: base64Json,
  int8: int8Json,
  uint8: uint8Json,
  ubinary: (vector) => `[${packedBits(vector).join(',')}]`,
  binary: (vector) =>
    `[${packedBits(vector)
      .map((byte) => byte - 128)
      .join(',')}]`,
};

function listJson(vectors: readonly Float32Array[], encode: (vector: Float32Array) => string): string {
  return `[${vectors.map(encode).join(',')}]`;
}

/** A rough count, as a tokenizer-less model can give: about four characters a token. */
function tokenCount(request: ParsedEmbedRequest): number {
  if (request.tokenInputs !== null)
    return request.tokenInputs.reduce((sum, tokens) => sum + tokens.length, 0);
  return request.texts.reduce((sum, text) => sum + Math.ceil(text.length / 4), 0);
}

const openAI: ResponseWriter = ({ request, model, vectors }) => {
  const encode = request.encodings?.[0] === 'base64' ? base64Json : floatJson;
  const data = vectors.map(
    (vector, index) => `{"object":"embedding","index":${index},"embedding":${encode(vector)}}`,
  );
  const tokens = tokenCount(request);
  return `{"object":"list","data":[${data.join(',')}],"model":${JSON.stringify(model)},"usage":{"prompt_tokens":${tokens},"total_tokens":${tokens}}}`;
};

const tei: ResponseWriter = ({ vectors }) => listJson(vectors, floatJson);

const ollama: ResponseWriter = ({ request, model, vectors }) =>
  `{"model":${JSON.stringify(model)},"embeddings":${listJson(vectors, floatJson)},"prompt_eval_count":${tokenCount(request)}}`;

const ollamaLegacy: ResponseWriter = ({ vectors }) => {
  const [vector] = vectors;
  return `{"embedding":${vector === undefined ? '[]' : floatJson(vector)}}`;
};

function byTypeJson(vectors: readonly Float32Array[], encodings: readonly EmbeddingEncoding[]): string {
  return `{${encodings.map((encoding) => `"${encoding}":${listJson(vectors, encoders[encoding])}`).join(',')}}`;
}

function cohere(version: '1' | '2'): ResponseWriter {
  return ({ request, vectors }) => {
    // v1 without embedding_types answers a bare float matrix; v2 always answers by type.
    const floatsOnly = version === '1' && request.encodings === undefined;
    const embeddings = floatsOnly
      ? listJson(vectors, floatJson)
      : byTypeJson(vectors, request.encodings ?? ['float']);
    const meta = `{"api_version":{"version":"${version}"},"billed_units":{"input_tokens":${tokenCount(request)}}}`;
    const type = floatsOnly ? 'embeddings_floats' : 'embeddings_by_type';
    return `{"id":"${randomUUID()}","embeddings":${embeddings},"texts":${JSON.stringify(request.texts)},"meta":${meta},"response_type":"${type}"}`;
  };
}

/** The writer of each embedding path's successful response. */
export const responseWriters: ReadonlyMap<string, ResponseWriter> = new Map([
  ['/v1/embeddings', openAI],
  ['/embeddings', openAI],
  ['/embed', tei],
  ['/api/embed', ollama],
  ['/api/embeddings', ollamaLegacy],
  ['/v2/embed', cohere('2')],
  ['/v1/embed', cohere('1')],
]);
