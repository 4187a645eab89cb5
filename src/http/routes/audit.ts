/**
 * The audit log over HTTP (the core contract in openapi.json): entries, the live stream, the latest signed
 * checkpoint, inclusion and consistency proofs, and the verifier key.
 *
 * Who sees what: a tenant's API key with the admin scope sees that tenant's entries only (the
 * `tenant` column the sequencer stored, never a filter the caller chooses); operators see the whole
 * log (the security role of the people issue narrows this to security officers). Checkpoints and
 * proofs carry only hashes, so any authenticated caller may fetch them — that is what lets a
 * customer verify their own entries without trusting the operator.
 */
import { PassThrough } from 'node:stream';
import Type from 'typebox';
import type { AuditLog } from '../../audit/audit-log.ts';
import type { LogEntryRow } from '../../audit/log.ts';
import { parseTilePath, TILE_WIDTH, type TileCoordinate } from '../../audit/tiles.ts';
import { TresorError } from '../../errors.ts';
import { canReadAllAudit } from '../../identity/roles.ts';
import { type ApiKeyPrincipal, defineRoute, type HttpPrincipal, type RouteModule } from '../route.ts';

export interface AuditRouteDeps {
  audit: AuditLog;
  /** Heartbeat comment period on streams (keeps idle timeouts and proxies from closing them). */
  heartbeatMs?: number;
}

const MAX_ENTRIES = 1000;
const STREAM_PAGE = 500;
const Index = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Size = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Hashes = Type.Array(Type.String({ contentEncoding: 'base64' }));
/** A text answer: declared by its media type, so the OpenAPI document says what is really served. */
function textAnswer(mediaType: string, description: string) {
  return Type.Unsafe<string>({
    description,
    content: { [mediaType]: { schema: { type: 'string', description } } },
  });
}

const Entry = Type.Object({
  index: Type.Integer(),
  entry: Type.Object({}, { additionalProperties: true }),
  leafHash: Type.String({ contentEncoding: 'base64', description: 'SHA-256(0x00 ‖ RFC 8785 entry)' }),
});

/**
 * Audit-entry readers (tenant admin: own entries; security: all): a tenant's admin key or a
 * tenant admin's session read their own tenant's entries; a security officer's session reads the
 * whole log, and so does an operator token of scope audit:read (the machine identity SIEM exports
 * and scripts use; entries carry no customer values). Other people — support agents, contractors,
 * tenant members, operator admins at the console — and staff grants (which are for records) do not.
 */
function entryReader(principal: HttpPrincipal): void {
  if (principal.kind === 'api-key') {
    if (!principal.access.has('admin'))
      throw new TresorError(
        'TRESOR_ERR_FORBIDDEN',
        'reading the audit log needs an API key with the admin scope',
      );
    return;
  }
  if (principal.kind === 'operator-token') return;
  if (principal.kind === 'session' && (canReadAllAudit(principal.role) || principal.role === 'tenant-admin'))
    return;
  throw new TresorError(
    'TRESOR_ERR_FORBIDDEN',
    'reading the audit log needs the security or tenant admin role',
  );
}

function anyAuthenticated(): void {}

/**
 * Entry bundles (tlog-tiles `tile/entries/…`) hold 256 consecutive entries of every tenant: only
 * callers who may read the whole log get them — a security officer's session, an operator token of
 * scope audit:read. A tenant's admin reads their own entries on /v1/audit/entries instead.
 */
function bundleReader(principal: HttpPrincipal): void {
  if (principal.kind === 'operator-token') return;
  if (principal.kind === 'session' && canReadAllAudit(principal.role)) return;
  throw new TresorError(
    'TRESOR_ERR_FORBIDDEN',
    'entry bundles hold every tenant’s entries: they need the security role or an audit:read token',
  );
}

/** The rest of a tile path after /v1/audit/tile/<L>/ (fastify's `*` param): N and `.p/<W>`. */
const TilePathRest = Type.String({ pattern: '^[x0-9./p]{3,40}$', maxLength: 40 });
const TileLevel = Type.String({ pattern: '^(0|[1-9][0-9]?)$', maxLength: 2 });
const TileBytes = textAnswer('application/octet-stream', 'tlog-tiles resource bytes');

/**
 * tlog-tiles: tiles and bundles are immutable ("caching headers SHOULD be long-lived"); a partial one
 * is replaced by its full tile as the log grows, so it may only be kept briefly.
 */
function tileHeaders(tile: TileCoordinate): Record<string, string> {
  return {
    'content-type': 'application/octet-stream',
    'cache-control':
      tile.width === TILE_WIDTH ? 'public, max-age=31536000, immutable' : 'public, max-age=5, no-transform',
  };
}

/** The tenant a caller is confined to, or undefined for the whole log. */
function tenantOf(principal: HttpPrincipal): string | undefined {
  if (principal.kind === 'api-key') return (principal as ApiKeyPrincipal).tenant;
  if (principal.kind === 'session' && !canReadAllAudit(principal.role)) {
    // Only tenant admins get here (entryReader); a session without a tenant sees nothing.
    return principal.tenant ?? '\u0000none';
  }
  if (principal.kind === 'staff-grant') return principal.tenant;
  return undefined;
}

function toEntry(row: LogEntryRow) {
  return { index: row.index, entry: JSON.parse(row.leaf) as Record<string, unknown>, leafHash: row.leafHash };
}

export function auditRoutes(deps: AuditRouteDeps): RouteModule {
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  return {
    name: 'audit',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/v1/audit/entries',
        summary: 'Audit entries from an index: your tenant’s (admin API key) or all (operators)',
        tags: ['audit'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'audit:read',
        authorize: entryReader,
        audit: { action: 'audit.read' },
        schema: {
          querystring: Type.Object({
            from: Type.Optional(Index),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_ENTRIES })),
          }),
          response: {
            200: Type.Object({
              entries: Type.Array(Entry),
              treeSize: Size,
              next: Type.Union([Index, Type.Null()]),
            }),
          },
        },
      }).handle(async (ctx) => {
        const from = ctx.query.from ?? 0;
        const limit = ctx.query.limit ?? 100;
        const tenant = tenantOf(ctx.principal);
        const treeSize = deps.audit.sequencer.treeHead().size;
        const rows = await deps.audit.reader.entries({
          from,
          limit: limit + 1,
          below: treeSize,
          ...(tenant !== undefined ? { tenant } : {}),
        });
        const page = rows.slice(0, limit);
        await ctx.audit.record({ target: { from, count: page.length } });
        const last = page[page.length - 1];
        return {
          status: 200,
          body: {
            entries: page.map(toEntry),
            treeSize,
            next: rows.length > limit && last ? last.index + 1 : null,
          },
        };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/audit/stream',
        summary: 'Live audit entries as Server-Sent Events (id = index; resume with Last-Event-ID)',
        tags: ['audit'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'audit:read',
        authorize: entryReader,
        audit: { action: 'audit.stream' },
        schema: {
          querystring: Type.Object({ from: Type.Optional(Index) }),
          headers: Type.Object({
            'last-event-id': Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', maxLength: 15 })),
          }),
          response: { 200: textAnswer('text/event-stream', 'Server-Sent Events: entry events, id = index') },
        },
      }).handle(async (ctx) => {
        const lastEventId = ctx.headers['last-event-id'];
        const head = deps.audit.sequencer.treeHead().size;
        // Resume after the last event seen; else from `from`; else from now on.
        let cursor = lastEventId !== undefined ? Number(lastEventId) + 1 : (ctx.query.from ?? head);
        const tenant = tenantOf(ctx.principal);
        await ctx.audit.record({ target: { from: cursor } });

        const out = new PassThrough();
        let pending = false;
        let pumping = false;
        let ended = false;

        // Every wake-up reads from the cursor in the store, so a notification that arrives while a
        // page is being written is never lost and nothing is sent twice.
        async function pump(): Promise<void> {
          if (pumping || ended) {
            pending = true;
            return;
          }
          pumping = true;
          try {
            do {
              pending = false;
              for (;;) {
                const below = deps.audit.sequencer.treeHead().size;
                const rows = await deps.audit.reader.entries({
                  from: cursor,
                  limit: STREAM_PAGE,
                  below,
                  ...(tenant !== undefined ? { tenant } : {}),
                });
                for (const row of rows) {
                  const ok = out.write(
                    `id: ${row.index}\nevent: entry\ndata: ${JSON.stringify(toEntry(row))}\n\n`,
                  );
                  if (!ok) await new Promise((resolve) => out.once('drain', resolve));
                  if (ended) return;
                }
                if (rows.length < STREAM_PAGE) {
                  cursor = Math.max(cursor, below);
                  break;
                }
                cursor = (rows[rows.length - 1] as LogEntryRow).index + 1;
              }
            } while (pending && !ended);
          } catch {
            end();
          } finally {
            pumping = false;
          }
        }

        const unsubscribe = deps.audit.onEntries(() => void pump());
        const heartbeat = setInterval(() => out.write(': keep-alive\n\n'), heartbeatMs);
        function end(): void {
          if (ended) return;
          ended = true;
          unsubscribe();
          clearInterval(heartbeat);
          out.end();
        }
        out.on('close', end);
        out.on('error', end);
        out.write('retry: 2000\n\n');
        void pump();
        return {
          status: 200,
          headers: { 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no' },
          body: out as unknown as string,
        };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/audit/checkpoint',
        summary: 'The latest signed checkpoint (C2SP tlog-checkpoint in a signed note, text/plain)',
        tags: ['audit'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'audit:read',
        authorize: anyAuthenticated,
        audit: { action: 'audit.checkpoint' },
        schema: {
          response: {
            200: textAnswer('text/plain; charset=utf-8', 'C2SP signed note of a C2SP tlog-checkpoint'),
          },
        },
      }).handle(async (ctx) => {
        const latest = await deps.audit.reader.latestCheckpoint();
        if (!latest) throw new TresorError('TRESOR_ERR_NOT_FOUND', 'no checkpoint has been signed yet');
        await ctx.audit.record({ target: { treeSize: latest.size } });
        return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: latest.note };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/audit/proofs/inclusion',
        summary: 'RFC 9162 inclusion proof of an entry in the tree of a given size',
        tags: ['audit'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'audit:read',
        authorize: anyAuthenticated,
        audit: { action: 'audit.proof' },
        schema: {
          querystring: Type.Object({ index: Index, treeSize: Size }),
          response: { 200: Type.Object({ index: Index, treeSize: Size, hashes: Hashes }) },
        },
      }).handle(async (ctx) => {
        const { index, treeSize } = ctx.query;
        const hashes = await deps.audit.reader.inclusion(index, treeSize);
        await ctx.audit.record({ target: { kind: 'inclusion', index, treeSize } });
        return { status: 200, body: { index, treeSize, hashes: hashes.map((h) => h.toString('base64')) } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/audit/proofs/consistency',
        summary: 'RFC 9162 consistency proof between two tree sizes',
        tags: ['audit'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'audit:read',
        authorize: anyAuthenticated,
        audit: { action: 'audit.proof' },
        schema: {
          querystring: Type.Object({
            from: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
            to: Size,
          }),
          response: { 200: Type.Object({ from: Size, to: Size, hashes: Hashes }) },
        },
      }).handle(async (ctx) => {
        const { from, to } = ctx.query;
        const hashes = await deps.audit.reader.consistency(from, to);
        await ctx.audit.record({ target: { kind: 'consistency', from, to } });
        return { status: 200, body: { from, to, hashes: hashes.map((h) => h.toString('base64')) } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/audit/tile/:level/*',
        summary: 'A C2SP tlog-tiles hash tile: tile/<L>/<N>[.p/<W>] (application/octet-stream)',
        tags: ['audit'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'audit:read',
        authorize: anyAuthenticated,
        audit: { action: 'audit.tile' },
        schema: {
          params: Type.Object({ level: TileLevel, '*': TilePathRest }),
          response: { 200: TileBytes },
        },
      }).handle(async (ctx) => {
        const tile = parseTilePath(`${ctx.params.level}/${ctx.params['*']}`);
        const treeSize = deps.audit.sequencer.treeHead().size;
        const bytes = await deps.audit.tiles.read(tile, treeSize);
        await ctx.audit.record({ target: { kind: 'hash-tile', level: tile.level, index: tile.index } });
        return { status: 200, headers: tileHeaders(tile), body: bytes as unknown as string };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/audit/tile/entries/*',
        summary: 'A C2SP tlog-tiles entry bundle: tile/entries/<N>[.p/<W>] (operators only)',
        tags: ['audit'],
        auth: 'any-authenticated',
        secondFactor: false,
        scope: 'audit:read',
        authorize: bundleReader,
        audit: { action: 'audit.read' },
        schema: {
          params: Type.Object({ '*': TilePathRest }),
          response: { 200: TileBytes },
        },
      }).handle(async (ctx) => {
        const tile = parseTilePath(`entries/${ctx.params['*']}`);
        const treeSize = deps.audit.sequencer.treeHead().size;
        const bytes = await deps.audit.tiles.read(tile, treeSize);
        await ctx.audit.record({ target: { kind: 'entry-bundle', index: tile.index, count: tile.width } });
        return { status: 200, headers: tileHeaders(tile), body: bytes as unknown as string };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/audit/public-key',
        summary: 'The checkpoint verifier key (C2SP note verifier key, text/plain)',
        tags: ['audit'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: 'none-public',
        schema: {
          response: {
            200: textAnswer(
              'text/plain; charset=utf-8',
              'C2SP note verifier key, name+keyid+base64, then a newline; the name is the log origin',
            ),
          },
        },
      }).handle(async () => ({
        status: 200,
        headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'public, max-age=300' },
        body: `${await deps.audit.verifierKey()}\n`,
      })),
    ],
  };
}
