/**
 * How the ops log names a repeated request (repeated-requests.ts): the detail of the repeat's own
 * entry points at the entry whose change it repeats. Defined once, for keyd that writes it and the
 * audit log's copy of keyd's operations (src/audit/keyd-ops.ts) that reads it. The detail is part
 * of the entry's chain hash, so the mark cannot be added or removed unseen.
 */

const PATTERN = /^repeated request: the outcome of entry (\d+), not done again$/;

/** The detail of a repeat of the request whose change is ops-log entry `earlierSeq`. */
export function repeatedRequestDetail(earlierSeq: number): string {
  return `repeated request: the outcome of entry ${earlierSeq}, not done again`;
}

/** The entry a repeat's detail points at, or null for any other detail. */
export function repeatedRequestOf(detail: string | null | undefined): number | null {
  const match = PATTERN.exec(detail ?? '');
  return match ? Number(match[1]) : null;
}
