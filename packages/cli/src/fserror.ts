// File-system errors in the user's words, on one line, with the code to search for.
import { getSystemErrorMessage } from 'node:util';

/** Only ENOENT means nothing is there: a file that cannot be read is not a missing one. */
export function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** "permission denied (EACCES)"; the message of an error that carries no system code. */
export function fsReason(error: unknown): string {
  const { errno, code } = (error ?? {}) as NodeJS.ErrnoException;
  if (typeof errno === 'number' && typeof code === 'string')
    return `${getSystemErrorMessage(errno)} (${code})`;
  return error instanceof Error ? error.message : String(error);
}
