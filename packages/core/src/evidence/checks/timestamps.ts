// RFC 3339 UTC timestamps of one precision sort as strings.
export function earliest(a: string, b: string): string {
  return a <= b ? a : b;
}

export function latest(a: string, b: string): string {
  return a >= b ? a : b;
}
