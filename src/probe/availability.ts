/**
 * Availability from probe results, against an objective (99.9 % by default), as a pure function
 * of the results and the time — so the arithmetic is tested case by case.
 *
 * Time-weighted: each probe stands for the time from its start to the next probe's start (the last
 * one for one interval, cut at `now`). A failed probe marks its time down. A gap — no probe for more
 * than twice the interval, because the prober itself was not running — is `unobserved` from an
 * outside prober, whose silence says nothing about the service; the server's own probe job counts
 * it `down` (`gaps: 'down'`): when the server cannot probe itself, it was not serving either.
 *
 * Per UTC day and over the last 30 days: observed and down milliseconds, availability
 * (1 − down / observed), and the error budget: the down time the objective allows over the window
 * so far, how much of it is used, and what remains (negative when it is overspent).
 */

const DAY_MS = 86_400_000;

export interface ProbeSample {
  at: string;
  ok: boolean;
}

export interface AvailabilityOptions {
  now: Date;
  /** The probe's interval, ms. */
  intervalMs: number;
  /** The objective, e.g. 0.999. */
  objective: number;
  /** What a gap in the probes counts as (see above). */
  gaps: 'unobserved' | 'down';
  /** How many past UTC days to list (the 30-day window is always computed). */
  days?: number;
}

export interface Window {
  from: string;
  to: string;
  probes: number;
  failed: number;
  observedMs: number;
  downMs: number;
  /** null when nothing was observed. */
  availability: number | null;
}

export interface AvailabilityReport {
  objective: number;
  intervalMs: number;
  days: Window[];
  last30Days: Window & {
    errorBudget: {
      allowedDownMs: number;
      usedDownMs: number;
      remainingDownMs: number;
      remainingRatio: number | null;
    };
    meetsObjective: boolean | null;
  };
}

interface Span {
  start: number;
  end: number;
  down: boolean;
  probe: 'ok' | 'failed' | 'gap';
}

/** The probes as spans of time, in order; gaps as their own spans. */
function spansOf(samples: readonly ProbeSample[], options: AvailabilityOptions): Span[] {
  const now = options.now.getTime();
  const sorted = samples
    .map((s) => ({ t: Date.parse(s.at), ok: s.ok }))
    .filter((s) => Number.isFinite(s.t) && s.t <= now)
    .sort((a, b) => a.t - b.t);
  const spans: Span[] = [];
  for (const [i, s] of sorted.entries()) {
    const next = sorted[i + 1]?.t ?? Math.min(now, s.t + options.intervalMs);
    const covered = Math.min(next, s.t + 2 * options.intervalMs);
    spans.push({ start: s.t, end: covered, down: !s.ok, probe: s.ok ? 'ok' : 'failed' });
    if (next > covered) spans.push({ start: covered, end: next, down: true, probe: 'gap' });
  }
  return spans;
}

function windowOf(
  spans: readonly Span[],
  from: number,
  to: number,
  gaps: AvailabilityOptions['gaps'],
): Window {
  let probes = 0;
  let failed = 0;
  let observedMs = 0;
  let downMs = 0;
  for (const s of spans) {
    if (s.probe !== 'gap' && s.start >= from && s.start < to) {
      probes += 1;
      if (s.probe === 'failed') failed += 1;
    }
    const overlap = Math.min(s.end, to) - Math.max(s.start, from);
    if (overlap <= 0) continue;
    if (s.probe === 'gap' && gaps === 'unobserved') continue;
    observedMs += overlap;
    if (s.down) downMs += overlap;
  }
  return {
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    probes,
    failed,
    observedMs,
    downMs,
    availability: observedMs > 0 ? 1 - downMs / observedMs : null,
  };
}

export function availability(
  samples: readonly ProbeSample[],
  options: AvailabilityOptions,
): AvailabilityReport {
  if (!(options.objective > 0 && options.objective < 1))
    throw new RangeError('objective must be between 0 and 1');
  if (!(options.intervalMs > 0)) throw new RangeError('intervalMs must be positive');
  const spans = spansOf(samples, options);
  const now = options.now.getTime();
  const today = Math.floor(now / DAY_MS) * DAY_MS;
  const days: Window[] = [];
  for (let d = (options.days ?? 7) - 1; d >= 0; d--) {
    const from = today - d * DAY_MS;
    days.push(windowOf(spans, from, Math.min(from + DAY_MS, now), options.gaps));
  }
  const last = windowOf(spans, now - 30 * DAY_MS, now, options.gaps);
  const allowedDownMs = Math.round(last.observedMs * (1 - options.objective));
  return {
    objective: options.objective,
    intervalMs: options.intervalMs,
    days,
    last30Days: {
      ...last,
      errorBudget: {
        allowedDownMs,
        usedDownMs: last.downMs,
        remainingDownMs: allowedDownMs - last.downMs,
        remainingRatio: allowedDownMs > 0 ? (allowedDownMs - last.downMs) / allowedDownMs : null,
      },
      meetsObjective: last.availability === null ? null : last.availability >= options.objective,
    },
  };
}
