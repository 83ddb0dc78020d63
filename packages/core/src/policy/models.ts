// How access and approval rules read a model's name. Ollama reads a name as
// `[scheme://][host/][namespace/]model[:tag]`, fills in `registry.ollama.ai`,
// `library` and `latest`, and compares the parts ignoring case; it serves the
// OpenAI API beside its own. So `x`, `X:latest`, `library/x` and
// `https://registry.ollama.ai/library/x` are one model, and a rule naming it
// must hold for every spelling, whatever route a caller takes, or a deny rule
// is dodged by writing it another way.
import { globMatcher } from './glob.ts';

const defaults = { host: 'registry.ollama.ai', namespace: 'library', tag: 'latest' } as const;

type ModelName = { host: string; namespace: string; model: string; tag: string };

/**
 * The parts of a name as Ollama's parser cuts them, lower-cased, with its
 * defaults; undefined for a name it would refuse (an empty part).
 */
function parseModelName(name: string): ModelName | undefined {
  let rest = name;
  let tag: string = defaults.tag;
  if (rest.lastIndexOf(':') > rest.lastIndexOf('/')) {
    [rest, tag] = cutLast(rest, ':');
  }
  let model: string;
  let namespace: string = defaults.namespace;
  let host: string = defaults.host;
  if (!rest.includes('/')) {
    model = rest;
  } else {
    [rest, model] = cutLast(rest, '/');
    if (!rest.includes('/')) {
      namespace = rest;
    } else {
      [rest, namespace] = cutLast(rest, '/');
      const scheme = rest.indexOf('://');
      host = scheme === -1 ? rest : rest.slice(scheme + 3);
    }
  }
  const parts = { host, namespace, model, tag };
  if (Object.values(parts).some((part) => part === '')) return undefined;
  return {
    host: host.toLowerCase(),
    namespace: namespace.toLowerCase(),
    model: model.toLowerCase(),
    tag: tag.toLowerCase(),
  };
}

function cutLast(text: string, separator: string): [string, string] {
  const at = text.lastIndexOf(separator);
  return [text.slice(0, at), text.slice(at + separator.length)];
}

/** Every way of writing the model Ollama reads the same (at most eight), lower-cased. */
function spellings(name: ModelName): string[] {
  const hosts = name.host === defaults.host ? ['', name.host] : [name.host];
  const tags = name.tag === defaults.tag ? ['', name.tag] : [name.tag];
  const written: string[] = [];
  for (const host of hosts) {
    // A host is written only before a namespace: `host/model` reads as `namespace/model`.
    const namespaces =
      host === '' && name.namespace === defaults.namespace ? ['', name.namespace] : [name.namespace];
    for (const namespace of namespaces) {
      for (const tag of tags) {
        written.push(
          `${host ? `${host}/` : ''}${namespace ? `${namespace}/` : ''}${name.model}${tag ? `:${tag}` : ''}`,
        );
      }
    }
  }
  return written;
}

/** The model in its shortest spelling, lower-cased; a name Ollama would refuse is kept as sent. */
export function canonicalModelName(name: string): string {
  const parsed = parseModelName(name);
  return parsed === undefined ? name : (spellings(parsed)[0] as string);
}

/** The name written out in full, which two spellings of one model share. */
function fullModelName(name: string): string {
  const parsed = parseModelName(name);
  if (parsed === undefined) return name.toLowerCase();
  const { host, namespace, model, tag } = parsed;
  return `${host}/${namespace}/${model}:${tag}`;
}

/**
 * A test of model names against a rule's pattern. A pattern without `*` names
 * one model, in any spelling. A pattern with `*` holds when it matches any
 * spelling of the name (as sent, shortest, in full, or in between), ignoring
 * case: `*:latest` holds for `x`, and `library/*` for `X`.
 */
export function modelMatcher(pattern: string): (model: string) => boolean {
  if (!pattern.includes('*')) {
    const model = fullModelName(pattern);
    return (name) => fullModelName(name) === model;
  }
  const matches = globMatcher(pattern.toLowerCase());
  return (name) => {
    const parsed = parseModelName(name);
    const written = parsed === undefined ? [] : spellings(parsed);
    return matches(name.toLowerCase()) || written.some(matches);
  };
}
