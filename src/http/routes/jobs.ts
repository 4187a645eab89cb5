/**
 * The server's background jobs as operators see them: for each job, how often it ran and failed,
 * when it last succeeded, and when and why (an error code only) it last failed. A health detail
 * for people and monitoring: operator admins' sessions and operator tokens of scope jobs:read
 * (`tresor status`), audited like any other read; `/readyz` stays
 * about serving and never looks at the jobs.
 *
 * The server's job runner (src/server/jobs.ts) hands its status in as a function: this module
 * defines the shape it needs and does not import the server (http is below it).
 */
import Type from 'typebox';
import { defineRoute, type RouteModule } from '../route.ts';

/** One job's state, as the job runner keeps it. */
export interface JobState {
  runs: number;
  failures: number;
  /** When the last run started (ISO 8601). */
  lastRun?: string;
  /** Whether the last finished run succeeded. */
  lastOutcome?: 'success' | 'failure';
  /** When the last successful run finished. */
  lastSuccess?: string;
  /** When the last failed run finished, and its error code (or the error's class name). */
  lastError?: { at: string; code: string };
}

export interface JobRouteDeps {
  /** Every job run so far, by name. */
  status(): Record<string, JobState>;
}

const Job = Type.Object({
  name: Type.String(),
  runs: Type.Integer({ minimum: 0 }),
  failures: Type.Integer({ minimum: 0 }),
  lastRun: Type.Optional(Type.String({ description: 'When the last run started (ISO 8601)' })),
  lastOutcome: Type.Optional(Type.Union([Type.Literal('success'), Type.Literal('failure')])),
  lastSuccess: Type.Optional(Type.String({ description: 'When the last successful run finished' })),
  lastError: Type.Optional(
    Type.Object({
      at: Type.String({ description: 'When the last failed run finished' }),
      code: Type.String({ description: 'A TRESOR_ERR_* code, or the class name of another error' }),
    }),
  ),
});

/** The body of GET /v1/system/jobs: the jobs sorted by name. */
export type JobsBody = { jobs: ({ name: string } & JobState)[] };

export function jobRoutes(deps: JobRouteDeps): RouteModule {
  return {
    name: 'jobs',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/v1/system/jobs',
        summary: 'The background jobs: runs, failures, last success and last error (code only)',
        tags: ['system'],
        auth: 'operator',
        secondFactor: false,
        scope: 'jobs:read',
        authorize: () => {},
        audit: { action: 'system.jobs-read' },
        schema: { response: { 200: Type.Object({ jobs: Type.Array(Job) }) } },
      }).handle(async (ctx) => {
        const status = deps.status();
        const jobs = Object.keys(status)
          .sort()
          .map((name) => ({ name, ...(status[name] as JobState) }));
        await ctx.audit.record({ tenant: null });
        return { status: 200, body: { jobs } };
      }),
    ],
  };
}
