/**
 * The time of access reviews: instants as reviews name them, half-open periods [from, to), calendar
 * months (UTC), a grant's life as an interval, and whether attestations cover a span.
 */

import type { TresorError } from '../errors.ts';
import { invalid } from './access-errors.ts';
import type { GrantInfo } from './grant-state.ts';

const INSTANT_PATTERN = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?Z)?$/;

export interface Period {
  from: number;
  to: number;
}

export const iso = (t: number) => new Date(t).toISOString();

/** `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS[.sss]]Z`, as epoch ms; undefined if not a real instant. */
export function parseInstant(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const m = INSTANT_PATTERN.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map((p) => Number(p ?? 0)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const t = Date.UTC(y, mo - 1, d, h, mi, sec, Number((m[7] ?? '0').padEnd(3, '0')));
  const back = new Date(t);
  // Refuse dates that roll over (2030-02-30) and out-of-range times (25:00).
  if (
    back.getUTCFullYear() !== y ||
    back.getUTCMonth() !== mo - 1 ||
    back.getUTCDate() !== d ||
    back.getUTCHours() !== h ||
    back.getUTCMinutes() !== mi ||
    back.getUTCSeconds() !== sec
  )
    return undefined;
  return t;
}

export function checkPeriod(input: { from?: unknown; to?: unknown }): Period | TresorError {
  const from = parseInstant(input.from);
  if (from === undefined) return invalid('from', 'YYYY-MM-DD or an ISO 8601 UTC time');
  const to = parseInstant(input.to);
  if (to === undefined) return invalid('to', 'YYYY-MM-DD or an ISO 8601 UTC time');
  if (!(from < to)) return invalid('to', 'after from');
  return { from, to };
}

/** Whether the union of `intervals` covers [from, to). */
export function covers(intervals: readonly Period[], from: number, to: number): boolean {
  let reached = from;
  for (const iv of [...intervals].sort((a, b) => a.from - b.from)) {
    if (iv.from > reached) break;
    reached = Math.max(reached, iv.to);
    if (reached >= to) return true;
  }
  return reached >= to;
}

/** The first instant of each calendar month (UTC) from the month of `start` while the month ends by `until`. */
export function monthsBetween(start: number, until: number): Period[] {
  const d = new Date(start);
  let from = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const months: Period[] = [];
  for (;;) {
    const f = new Date(from);
    const to = Date.UTC(f.getUTCFullYear(), f.getUTCMonth() + 1, 1);
    if (to > until) return months;
    months.push({ from, to });
    from = to;
  }
}

/** A grant's life as an interval as of `t`: from its request to its end (now, if it has none yet). */
export function lifeOf(g: GrantInfo, t: number): Period {
  const from = Date.parse(g.requestedAt);
  let to =
    g.endedAt !== null ? Date.parse(g.endedAt) : g.state === 'active' ? Date.parse(g.expiresAt ?? '') : t;
  if (!(to > from)) to = from + 1; // decided in the same millisecond: still a moment to review
  return { from, to };
}
