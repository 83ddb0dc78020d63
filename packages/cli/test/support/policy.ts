/** An EmbeddingPolicy manifest named `default` whose spec is `authentication`, given as its YAML lines. */
export function authenticationPolicy(authentication: readonly string[]): string {
  return [
    'apiVersion: veil.dev/v1alpha1',
    'kind: EmbeddingPolicy',
    'metadata: {name: default}',
    'spec:',
    '  authentication:',
    ...authentication.map((line) => `    ${line}`),
    '',
  ].join('\n');
}
