// The controller's log: one JSON object a line, on stderr. Callers pass fields,
// never tokens, keys or policy bodies.
export type LogFields = Record<string, string | number | boolean | undefined>;

export type Log = {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
};

export const silentLog: Log = { info: () => undefined, warn: () => undefined };

export function jsonLog(
  component: string,
  write: (line: string) => void = (line) => process.stderr.write(line),
): Log {
  const emit = (level: string, message: string, fields: LogFields = {}) =>
    write(`${JSON.stringify({ time: new Date().toISOString(), level, component, message, ...fields })}\n`);
  return {
    info: (message, fields) => emit('info', message, fields),
    warn: (message, fields) => emit('warn', message, fields),
  };
}
