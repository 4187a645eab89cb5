/**
 * Output of the noun commands (tenant, person, token, apikey): JSON for scripts or lines for
 * people, and the one secret a create returns (API key, token, enrolment link) printed once — or,
 * with --out-file, written to a new 0600 file and left out of stdout.
 */
import { out, writeSecretFile } from './io.ts';

export interface OutputFlags {
  json?: boolean;
  outFile?: string;
}

/**
 * Prints `body` (--json) or `lines`, and the secret: under `secretKey` in the JSON, on its own
 * line after `secretLabel` in text; to --out-file instead when given.
 */
export function emitWithSecret(
  flags: OutputFlags,
  body: Record<string, unknown>,
  lines: string[],
  secret: { key: string; label: string; value: string },
): void {
  const { [secret.key]: _omitted, ...rest } = body;
  if (flags.outFile !== undefined) writeSecretFile(flags.outFile, secret.value);
  if (flags.json) {
    out(flags.outFile === undefined ? { ...rest, [secret.key]: secret.value } : rest, true);
    return;
  }
  out(
    [
      ...lines,
      flags.outFile === undefined
        ? `${secret.label} (shown once): ${secret.value}`
        : `${secret.label} written to ${flags.outFile} (mode 0600)`,
    ].join('\n'),
    false,
  );
}

export function emit(flags: OutputFlags, body: unknown, text: string): void {
  if (flags.json) out(body, true);
  else out(text, false);
}

/** A path segment of an id the user typed: escaped, so it can never leave its place in the path. */
export function segment(id: string): string {
  return encodeURIComponent(id);
}
