/**
 * Retention: which backups a destination keeps, as a pure function of the backups, the policy and
 * the time — no I/O, so the rules are tested case by case and the deletion certificate can say
 * when a backup ages out before it happens.
 *
 * A policy keeps
 *   - every backup younger than `keepAllDays` days, and
 *   - the newest backup of each UTC day for `dailyDays` days (kept while now < start of its day +
 *     dailyDays days),
 *   - and always the newest complete backup, whatever its age (never zero backups).
 * Backups dated in the future (a clock set back) are kept. Incomplete backups (no manifest) are
 * not retention's business: a failed backup removes its own objects.
 */
const DAY_MS = 86_400_000;

export interface RetentionPolicy {
  /** Every backup is kept this many days (e.g. 2). */
  keepAllDays: number;
  /** One backup a day, the day's newest, is kept this many days (e.g. 35). */
  dailyDays: number;
}

export interface RetainedBackup {
  id: string;
  takenAt: Date;
}

export interface RetentionPlan {
  keep: string[];
  delete: string[];
}

export function checkRetentionPolicy(policy: RetentionPolicy): RetentionPolicy {
  for (const [name, value] of Object.entries(policy)) {
    if (!Number.isSafeInteger(value) || value < 0 || value > 36_500) {
      throw new RangeError(`retention ${name} must be a whole number of days from 0 to 36500`);
    }
  }
  return policy;
}

function dayStart(time: Date): number {
  return Math.floor(time.getTime() / DAY_MS) * DAY_MS;
}

/** Which of `backups` to keep and which to delete at `now` (ids in the order given). */
export function planRetention(
  backups: readonly RetainedBackup[],
  policy: RetentionPolicy,
  now: Date,
): RetentionPlan {
  checkRetentionPolicy(policy);
  const t = now.getTime();
  const newestOfDay = new Map<number, RetainedBackup>();
  let newest: RetainedBackup | undefined;
  for (const b of backups) {
    const day = dayStart(b.takenAt);
    const current = newestOfDay.get(day);
    if (!current || b.takenAt > current.takenAt) newestOfDay.set(day, b);
    if (!newest || b.takenAt > newest.takenAt) newest = b;
  }
  const plan: RetentionPlan = { keep: [], delete: [] };
  for (const b of backups) {
    const taken = b.takenAt.getTime();
    const kept =
      b === newest ||
      taken > t ||
      t < taken + policy.keepAllDays * DAY_MS ||
      (newestOfDay.get(dayStart(b.takenAt)) === b && t < dayStart(b.takenAt) + policy.dailyDays * DAY_MS);
    (kept ? plan.keep : plan.delete).push(b.id);
  }
  return plan;
}

/**
 * The moment by which a backup taken at `takenAt` is no longer kept by any of the policies (one per
 * destination), assuming backups go on being taken (the newest is always kept). It is deleted by
 * the first retention run at or after this moment; the deletion certificate adds that run's period.
 */
export function agedOutAt(takenAt: Date, policies: readonly RetentionPolicy[]): Date {
  let latest = takenAt.getTime();
  for (const policy of policies) {
    checkRetentionPolicy(policy);
    latest = Math.max(
      latest,
      takenAt.getTime() + policy.keepAllDays * DAY_MS,
      policy.dailyDays > 0 ? dayStart(takenAt) + policy.dailyDays * DAY_MS : latest,
    );
  }
  return new Date(latest);
}
