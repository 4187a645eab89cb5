/** What keyd's server logs through; a pino logger fits. */
export interface KeydLogger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export const SILENT_LOGGER: KeydLogger = { debug() {}, info() {}, warn() {}, error() {} };
