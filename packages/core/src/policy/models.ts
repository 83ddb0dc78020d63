// How access and approval rules read a model's name. Ollama resolves `x`,
// `x:latest`, `library/x` and `registry.ollama.ai/library/x:latest` to one
// model, and serves the OpenAI API beside its own: a rule naming `x` must hold
// for every spelling, whatever route a caller takes, or a deny rule is dodged
// by writing `x:latest`.
import { globMatcher } from './glob.ts';

/** The model in its shortest spelling; the body goes to the model as the caller wrote it. */
export function canonicalModelName(name: string): string {
  return name
    .replace(/^registry\.ollama\.ai\//, '')
    .replace(/^library\//, '')
    .replace(/:latest$/, '');
}

/**
 * A test of model names against a rule's pattern. A pattern without `*` names
 * one model, in any spelling. A pattern with `*` is matched against the name as
 * sent and in its shortest spelling, but is not itself shortened: `library/*`
 * must not grow into `*`.
 */
export function modelMatcher(pattern: string): (model: string) => boolean {
  if (!pattern.includes('*')) {
    const model = canonicalModelName(pattern);
    return (name) => canonicalModelName(name) === model;
  }
  const matches = globMatcher(pattern);
  return (name) => matches(name) || matches(canonicalModelName(name));
}
