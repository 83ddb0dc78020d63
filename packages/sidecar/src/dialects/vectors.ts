// Checks on an upstream response before its vectors are counted and digested: a model that
// answers 200 with something else must surface as a 502, not as a success with nothing in it.
import { vectorsDigest } from '@veil/core';
import { DialectError, type VectorSummary } from './types.ts';

/** One vector as numbers, and how many dimensions it stands for. */
export interface DecodedVector {
  values: ArrayLike<number>;
  dimensions: number;
}

/** Decodes one vector in some encoding; undefined when it is not one. */
export type VectorDecoder = (vector: unknown) => DecodedVector | undefined;

export interface DecodedVectors {
  dimensions: number;
  values: ArrayLike<number>[];
}

export function badUpstream(problem: string): DialectError {
  return new DialectError(502, `upstream response is not a valid embedding response: ${problem}`);
}

/** An object of the response, or a 502 naming where it was expected. */
export function objectAt(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badUpstream(`${where} is not an object`);
  }
  return value as Record<string, unknown>;
}

/** Decodes a list of vectors that must all have the same, non-zero dimensions. */
export function decodeAll(vectors: unknown, where: string, decode: VectorDecoder): DecodedVectors {
  if (!Array.isArray(vectors)) throw badUpstream(`'${where}' is not an array`);
  const values: ArrayLike<number>[] = [];
  let dimensions = 0;
  for (let i = 0; i < vectors.length; i++) {
    const found = decode(vectors[i]);
    if (found === undefined || found.dimensions === 0)
      throw badUpstream(`'${where}[${i}]' is not an embedding`);
    if (i > 0 && found.dimensions !== dimensions) {
      throw badUpstream(
        `'${where}[${i}]' has ${found.dimensions} dimensions where ${dimensions} were expected`,
      );
    }
    dimensions = found.dimensions;
    values.push(found.values);
  }
  return { dimensions, values };
}

export function summarize(decoded: DecodedVectors): VectorSummary {
  return {
    count: decoded.values.length,
    dimensions: decoded.dimensions,
    digest: vectorsDigest(decoded.values),
  };
}

/** A plain array of numbers (float, int8 or uint8 embeddings). */
export const decodeNumbers: VectorDecoder = (vector) => {
  if (!Array.isArray(vector)) return undefined;
  for (const value of vector) if (typeof value !== 'number') return undefined;
  return { values: vector as number[], dimensions: vector.length };
};

/** Bits packed eight to a number (Cohere's binary and ubinary embeddings). */
export const decodePackedBits: VectorDecoder = (vector) => {
  const bytes = decodeNumbers(vector);
  return bytes === undefined ? undefined : { values: bytes.values, dimensions: bytes.dimensions * 8 };
};

const base64Pattern = /^[A-Za-z0-9+/]*={0,2}$/;

/** Base64 of little-endian float32 values: four bytes a dimension. */
export const decodeBase64Float32: VectorDecoder = (vector) => {
  if (typeof vector !== 'string' || vector.length % 4 !== 0 || !base64Pattern.test(vector)) return undefined;
  const bytes = Buffer.from(vector, 'base64');
  if (bytes.length % 4 !== 0) return undefined;
  const values = new Float32Array(bytes.length / 4);
  for (let i = 0; i < values.length; i++) values[i] = bytes.readFloatLE(i * 4);
  return { values, dimensions: values.length };
};
