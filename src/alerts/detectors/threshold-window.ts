/**
 * A sliding-window counter per key (an account, an address, a staff member): the building block of
 * the threshold detectors. Each occurrence has a weight (1, or e.g. the records one read returned).
 * When a key's weights within `windowMs` reach `threshold`, it answers every occurrence not yet
 * reported (their audit indices and summed weight); each further occurrence while the window stays
 * at or above the threshold is answered alone (the alert's count goes up by its weight). Times are
 * the entries' own (`at`), so replaying the log judges it exactly as it was judged live.
 *
 * Memory is bounded: at most `maxKeys` keys (the least recently seen are dropped first) and, per key,
 * the occurrences within the window (at most `threshold` + the reported ones still inside it, capped).
 */

export interface ThresholdWindowOptions {
  threshold: number;
  windowMs: number;
  maxKeys?: number;
}

export interface Crossing {
  /** Audit indices not reported before. */
  evidence: number[];
  /** Their summed weight. */
  weight: number;
}

interface Occurrence {
  t: number;
  index: number;
  weight: number;
  reported: boolean;
}

const DEFAULT_MAX_KEYS = 10_000;
/** Occurrences kept per key: enough for any threshold the config allows, bounded under a flood. */
const MAX_PER_KEY = 1_000;

export function createThresholdWindow(options: ThresholdWindowOptions) {
  const { threshold, windowMs } = options;
  if (!Number.isInteger(threshold) || threshold < 1)
    throw new TypeError('threshold must be a positive integer');
  if (!(windowMs > 0)) throw new TypeError('windowMs must be positive');
  const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
  // A Map iterates in insertion order: re-inserting a key on each hit keeps the stalest first.
  const keys = new Map<string, Occurrence[]>();

  return {
    /** Counts one occurrence of `key` at `at` (ISO time); answers the crossing it completes, if any. */
    hit(key: string, at: string, index: number, weight = 1): Crossing | undefined {
      const t = Date.parse(at);
      if (!Number.isFinite(t)) return undefined;
      const list = keys.get(key) ?? [];
      keys.delete(key);
      list.push({ t, index, weight, reported: false });
      while (list.length > 0 && ((list[0] as Occurrence).t <= t - windowMs || list.length > MAX_PER_KEY))
        list.shift();
      keys.set(key, list);
      if (keys.size > maxKeys) keys.delete(keys.keys().next().value as string);
      if (list.reduce((sum, o) => sum + o.weight, 0) < threshold) return undefined;
      const fresh = list.filter((o) => !o.reported);
      for (const o of list) o.reported = true;
      if (fresh.length === 0) return undefined;
      return { evidence: fresh.map((o) => o.index), weight: fresh.reduce((sum, o) => sum + o.weight, 0) };
    },
  };
}
