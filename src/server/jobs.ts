/**
 * The server's background jobs (tenant resume and contract-end closing, grant expiry, retention,
 * copying keyd's operations into the audit log), run by name so that a failure is never silent:
 * it is logged at error level, counted, and kept in status() for operators. One job's failure
 * never stops the others; the next run simply tries again.
 *
 * Log lines and status carry the job's name and the error's code only, plus the message of
 * Tresor's own errors (whose messages never hold customer values or secrets); any other error is
 * named by its class alone, since its message may quote anything.
 *
 * Once per cluster: with several server processes on one PostgreSQL database, the scheduled jobs
 * (`periodic`) run only in the process that `leads()` — the holder of the audit sequencer's lease,
 * one session-level advisory lock for the whole database. One leader rather than a lock per job: a
 * job's period is kept by one process's timer, so it runs once per period (a lock per run would let
 * two processes' timers, out of phase, each run it once per period), and a leader that dies loses
 * the lease with its database session, so another process takes it over within the lease's retry
 * (about a second) and runs the jobs from its next tick. A skipped tick is not a run: status() shows
 * only the runs made here. Runs asked for by a request (a backup started over the API) run where
 * they were asked.
 */

/** Where job failures go (a pino logger fits). */
export interface JobLogger {
  error(details: object, message: string): void;
}

export interface JobStatus {
  runs: number;
  failures: number;
  /** When the last run started (ISO 8601). */
  lastRun?: string;
  /** Whether the last finished run succeeded. */
  lastOutcome?: 'success' | 'failure';
  /** When the last successful run finished. */
  lastSuccess?: string;
  /** When the last failed run finished, and why (an error code, or the error's class name). */
  lastError?: { at: string; code: string };
}

export interface JobRunner {
  /** Runs `work` as a run of job `name`; never rejects. Answers whether it succeeded. */
  run(name: string, work: () => Promise<unknown>): Promise<boolean>;
  /**
   * A scheduled run: as run(), in the process that leads the cluster's jobs only; elsewhere nothing
   * happens and the answer is undefined.
   */
  periodic(name: string, work: () => Promise<unknown>): Promise<boolean | undefined>;
  /** Every job run so far, by name. */
  status(): Record<string, JobStatus>;
}

/**
 * A job whose items (tenants) were each tried, some of which failed: the run counts as failed,
 * under the first failure's code.
 */
export class JobItemsFailed extends Error {
  readonly code: string;

  constructor(failed: readonly { code: string }[]) {
    super(`${failed.length} item(s) of the job failed`);
    this.name = 'JobItemsFailed';
    this.code = failed[0]?.code ?? 'TRESOR_ERR_INTERNAL';
  }
}

/** Throws JobItemsFailed when a job's report lists failed items. */
export function failOnItems(report: { failed: readonly { code: string }[] }): void {
  if (report.failed.length > 0) throw new JobItemsFailed(report.failed);
}

const TRESOR_CODE = /^TRESOR_ERR_[A-Z0-9_]+$/;

/** What of an error may be logged: a Tresor code with its message, else only the class name. */
export function loggableError(error: unknown): { code: string; message?: string } {
  const { code, message, name } = (typeof error === 'object' && error !== null ? error : {}) as {
    code?: unknown;
    message?: unknown;
    name?: unknown;
  };
  if (typeof code === 'string' && TRESOR_CODE.test(code))
    return typeof message === 'string' ? { code, message } : { code };
  return { code: typeof name === 'string' && name !== '' ? name : 'Error' };
}

export function createJobRunner(deps: {
  logger: JobLogger;
  clock: () => Date;
  /** Whether this process runs the scheduled jobs now (default: always, one process). */
  leads?: () => boolean;
}): JobRunner {
  const jobs = new Map<string, JobStatus>();
  const leads = deps.leads ?? (() => true);
  const runner: JobRunner = {
    periodic(name, work) {
      if (!leads()) return Promise.resolve(undefined);
      return runner.run(name, work);
    },
    async run(name, work) {
      let status = jobs.get(name);
      if (status === undefined) {
        status = { runs: 0, failures: 0 };
        jobs.set(name, status);
      }
      status.runs += 1;
      status.lastRun = deps.clock().toISOString();
      try {
        await work();
        status.lastSuccess = deps.clock().toISOString();
        status.lastOutcome = 'success';
        return true;
      } catch (error) {
        const { code, message } = loggableError(error);
        status.failures += 1;
        status.lastError = { at: deps.clock().toISOString(), code };
        status.lastOutcome = 'failure';
        deps.logger.error(
          { job: name, code, ...(message === undefined ? {} : { error: message }) },
          'background job failed',
        );
        return false;
      }
    },
    status() {
      const copy: Record<string, JobStatus> = {};
      for (const [name, status] of jobs) {
        copy[name] = { ...status, ...(status.lastError ? { lastError: { ...status.lastError } } : {}) };
      }
      return copy;
    },
  };
  return runner;
}
