/**
 * Measured availability (docs/availability.md), for operators and monitoring: GET
 * /v1/system/availability answers the server's own probe results as availability per UTC day and
 * over 30 days against the 99.9 % objective, with the error budget left, and the last probe.
 * Operator admins' sessions and operator tokens of scope jobs:read; audited like any other read.
 *
 * The server's probe job (src/server/probe-job.ts) hands the view in as a function: this module
 * defines the shape it needs and does not import the server (http is below it).
 */
import Type from 'typebox';
import { defineRoute, type RouteModule } from '../route.ts';

export interface AvailabilityRouteDeps {
  view(): Promise<unknown>;
}

const Window = Type.Object({
  from: Type.String(),
  to: Type.String(),
  probes: Type.Integer({ minimum: 0 }),
  failed: Type.Integer({ minimum: 0 }),
  observedMs: Type.Number({ minimum: 0 }),
  downMs: Type.Number({ minimum: 0 }),
  availability: Type.Union([Type.Number(), Type.Null()]),
});

const Body = Type.Object({
  probing: Type.Boolean({ description: 'whether the server probes itself (probe.apiKeyFile is set)' }),
  url: Type.Optional(Type.String({ description: 'the origin probed' })),
  last: Type.Optional(
    Type.Object({
      at: Type.String(),
      ok: Type.Boolean(),
      failed: Type.Optional(Type.Object({ step: Type.String(), why: Type.String() })),
    }),
  ),
  report: Type.Object({
    objective: Type.Number(),
    intervalMs: Type.Number(),
    days: Type.Array(Window),
    last30Days: Type.Intersect([
      Window,
      Type.Object({
        errorBudget: Type.Object({
          allowedDownMs: Type.Number(),
          usedDownMs: Type.Number(),
          remainingDownMs: Type.Number(),
          remainingRatio: Type.Union([Type.Number(), Type.Null()]),
        }),
        meetsObjective: Type.Union([Type.Boolean(), Type.Null()]),
      }),
    ]),
  }),
  node: Type.Object(
    {
      runsProbe: Type.Boolean({
        description:
          'whether this server process runs the scheduled probe now: with several processes on one database, only the sequencer’s lease holder does; every process answers the same report',
      }),
    },
    { description: 'the process that answered' },
  ),
});

export function availabilityRoutes(deps: AvailabilityRouteDeps): RouteModule {
  return {
    name: 'availability',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/v1/system/availability',
        summary: 'Measured availability from the server’s own probes: per day, 30 days, error budget',
        tags: ['system'],
        auth: 'operator',
        secondFactor: false,
        scope: 'jobs:read',
        authorize: () => {},
        audit: { action: 'system.availability-read' },
        schema: { response: { 200: Body } },
      }).handle(async (ctx) => {
        const body = await deps.view();
        await ctx.audit.record({ tenant: null });
        return { status: 200, body: body as never };
      }),
    ],
  };
}
