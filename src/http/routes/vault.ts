/**
 * Collections and records over HTTP — the core of the HTTP contract (openapi.json). A tenant's own API keys reach
 * these routes, each scoped to collections and to read / write / admin; records (auth
 * 'tenant-data') are also reached by staff through a live access grant, scoped the same way to
 * collections and to read or read-write, never admin. Operator principals never reach them. Bodies
 * are checked here for shape and again, fully, by the vault. The vault builds each audit event of
 * its work: a route hands it only who acts, why and from which request (auditOriginOf).
 * Another tenant's record and a missing one answer the same 404: every lookup is inside the
 * caller's own tenant store, so the other tenant's record simply is not there.
 */
import Type from 'typebox';
import { TresorError } from '../../errors.ts';
import type { ApiKeyAccess } from '../../identity/principal.ts';
import type { Vault } from '../../vault/collections.ts';
import { RECORD_ID, RECORD_ID_LENGTH } from '../../vault/records.ts';
import { CLASSIFICATIONS, FIELD_TYPES, NAME_MAX_LENGTH, NAME_PATTERN } from '../../vault/schema.ts';
import { VaultAction } from '../../vault/vault-audit.ts';
import { IdempotencyKeyHeader, idempotencyOf } from '../idempotency-key.ts';
import { auditOriginOf } from '../layers/audit.ts';
import {
  type ApiKeyPrincipal,
  type AuthorizationInput,
  defineRoute,
  type RouteModule,
  type TenantDataPrincipal,
} from '../route.ts';

export interface VaultRouteDeps {
  vault: Vault;
}

// Names, ids, field types and classifications are the vault's own (src/vault/schema.ts, records.ts):
// the schemas here only give them their HTTP shape.
const NAME = NAME_PATTERN.source;
const CollectionName = Type.String({ pattern: NAME, maxLength: NAME_MAX_LENGTH });
const RecordId = Type.String({ pattern: RECORD_ID.source, maxLength: RECORD_ID_LENGTH });
const Version = Type.Integer({ minimum: 1 });

const FieldDeclaration = Type.Object({
  type: Type.Union(FIELD_TYPES.map((t) => Type.Literal(t))),
  classification: Type.Union(CLASSIFICATIONS.map((c) => Type.Literal(c))),
  required: Type.Optional(Type.Boolean()),
  searchable: Type.Optional(
    Type.Boolean({ description: 'Equality search by blind index (docs/security/blind-index.md)' }),
  ),
  acknowledgeLeakage: Type.Optional(
    Type.Boolean({
      description:
        'Required (true) to make a number, boolean or date field searchable: its blind index shows a reader of the data store which records share a value and how often each occurs',
    }),
  ),
  default: Type.Optional(Type.Unknown()),
});

const Schema = Type.Object(
  {
    fields: Type.Record(Type.String(), Type.Unknown()),
    retentionDays: Type.Union([Type.Integer(), Type.Null()]),
  },
  { additionalProperties: true },
);

/** Record data: an object; its fields are checked against the collection's schema by the vault. */
const Data = Type.Object({}, { additionalProperties: true, maxProperties: 256 });

const RecordBody = Type.Object({ id: Type.String(), version: Version, data: Data });

const IfMatch = Type.String({ pattern: '^(W/)?"?[0-9]{1,15}"?$', maxLength: 20 });

function parseIfMatch(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  return Number(value.replace(/^W\//, '').replaceAll('"', ''));
}

function etag(version: number): Record<string, string> {
  return { etag: `"${version}"` };
}

/** The key must cover the collection in the URL (when there is one) and have the access named. */
function allow(access: ApiKeyAccess) {
  return (principal: TenantDataPrincipal, request: AuthorizationInput): void => {
    const has = principal.access as ReadonlySet<ApiKeyAccess>;
    const what = principal.kind === 'api-key' ? 'this API key' : 'this access grant';
    if (!has.has(access) && !has.has('admin')) {
      throw new TresorError('TRESOR_ERR_FORBIDDEN', `${what} lacks the ${access} scope`);
    }
    const name = request.params.name;
    if (name !== undefined && principal.collections !== '*' && !principal.collections.includes(name)) {
      throw new TresorError('TRESOR_ERR_FORBIDDEN', `${what} does not cover this collection`);
    }
  };
}

function adminOnly(principal: ApiKeyPrincipal): void {
  if (!principal.access.has('admin'))
    throw new TresorError('TRESOR_ERR_FORBIDDEN', 'this API key lacks the admin scope');
  if (principal.collections !== '*') {
    throw new TresorError('TRESOR_ERR_FORBIDDEN', 'this needs an admin key for all collections');
  }
}

const PageLimit = Type.Integer({ minimum: 1, maximum: 500 });
const Cursor = Type.String({ pattern: '^[A-Za-z0-9_-]{1,512}$' });
const RecordPageBody = Type.Object({
  records: Type.Array(RecordBody),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});

export function vaultRoutes(deps: VaultRouteDeps): RouteModule {
  const { vault } = deps;
  return {
    name: 'vault',
    routes: [
      defineRoute({
        method: 'PUT',
        url: '/v1/collections/:name',
        summary: 'Declare or change a collection’s schema (fields, classification, retention)',
        tags: ['collections'],
        auth: 'api-key',
        secondFactor: false,
        authorize: allow('admin'),
        audit: { action: VaultAction.collectionPut },
        schema: {
          params: Type.Object({ name: CollectionName }),
          body: Type.Object({
            fields: Type.Record(Type.String({ pattern: NAME }), FieldDeclaration, { maxProperties: 200 }),
            retentionDays: Type.Optional(
              Type.Union([Type.Integer({ minimum: 1, maximum: 36500 }), Type.Null()]),
            ),
            drop: Type.Optional(Type.Array(Type.String({ pattern: NAME }), { maxItems: 200 })),
          }),
          response: {
            200: Type.Object({
              name: Type.String(),
              version: Version,
              created: Type.Boolean(),
              schema: Schema,
            }),
            201: Type.Object({
              name: Type.String(),
              version: Version,
              created: Type.Boolean(),
              schema: Schema,
            }),
          },
        },
      }).handle(async (ctx) => {
        const result = await vault.putCollection(
          ctx.principal.tenant,
          ctx.params.name,
          ctx.body,
          auditOriginOf(ctx),
        );
        ctx.audit.recorded = true;
        return result.created ? { status: 201, body: result } : { status: 200, body: result };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/collections',
        summary: 'The tenant’s collections and their schemas',
        tags: ['collections'],
        auth: 'tenant-data',
        secondFactor: false,
        authorize: allow('read'),
        audit: { action: VaultAction.collectionList },
        schema: {
          response: {
            200: Type.Object({
              collections: Type.Array(
                Type.Object({
                  name: Type.String(),
                  version: Version,
                  createdAt: Type.String(),
                  updatedAt: Type.String(),
                  schema: Schema,
                }),
              ),
            }),
          },
        },
      }).handle(async (ctx) => {
        const all = await vault.listCollections(ctx.principal.tenant);
        const p = ctx.principal;
        const collections = p.collections === '*' ? all : all.filter((c) => p.collections.includes(c.name));
        await ctx.audit.record();
        return { status: 200, body: { collections } };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/collections/:name/records',
        summary:
          'Create a record; every field is encrypted before it reaches the store; unknown fields → 422',
        tags: ['records'],
        auth: 'tenant-data',
        secondFactor: false,
        authorize: allow('write'),
        audit: { action: VaultAction.recordCreate },
        schema: {
          params: Type.Object({ name: CollectionName }),
          headers: Type.Object({ 'idempotency-key': IdempotencyKeyHeader }),
          body: Data,
          response: { 201: RecordBody },
        },
      }).handle(async (ctx) => {
        const p = ctx.principal;
        const idempotency = idempotencyOf({
          header: ctx.headers['idempotency-key'],
          // Scoped to the caller: the tenant and its API key, or the staff grant. A stored value: no
          // NUL separator (PostgreSQL's text refuses it); a tenant id holds no '/'.
          scope: `${p.tenant}/${p.kind === 'api-key' ? `key:${p.keyId}` : `grant:${p.grantId}`}`,
          method: 'POST',
          path: `/v1/collections/${ctx.params.name}/records`,
          body: ctx.body,
        });
        const record = await vault.createRecord(
          p.tenant,
          ctx.params.name,
          ctx.body,
          auditOriginOf(ctx),
          idempotency,
        );
        if (record.replayed) {
          // Nothing was created or read from the store: the replay itself is what is audited.
          await ctx.audit.record({
            action: VaultAction.recordCreateReplay,
            target: { collection: ctx.params.name, recordIds: [record.id] },
          });
        }
        ctx.audit.recorded = true;
        return {
          status: 201,
          body: { id: record.id, version: record.version, data: record.data },
          headers: {
            ...etag(record.version),
            location: `/v1/collections/${ctx.params.name}/records/${record.id}`,
          },
        };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/collections/:name/records/:id',
        summary: 'Read a record (returned only once its audit entry is durable)',
        tags: ['records'],
        auth: 'tenant-data',
        secondFactor: false,
        authorize: allow('read'),
        audit: { action: VaultAction.recordRead },
        schema: {
          params: Type.Object({ name: CollectionName, id: RecordId }),
          response: { 200: RecordBody },
        },
      }).handle(async (ctx) => {
        const record = await vault.readRecord(
          ctx.principal.tenant,
          ctx.params.name,
          ctx.params.id,
          auditOriginOf(ctx),
        );
        ctx.audit.recorded = true;
        return { status: 200, body: record, headers: etag(record.version) };
      }),

      defineRoute({
        method: 'PATCH',
        url: '/v1/collections/:name/records/:id',
        summary:
          'Partial update with optimistic concurrency: If-Match is the version read (412 if stale, 428 if absent)',
        tags: ['records'],
        auth: 'tenant-data',
        secondFactor: false,
        authorize: allow('write'),
        audit: { action: VaultAction.recordUpdate },
        schema: {
          params: Type.Object({ name: CollectionName, id: RecordId }),
          headers: Type.Object({ 'if-match': Type.Optional(IfMatch) }),
          body: Data,
          response: { 200: RecordBody },
        },
      }).handle(async (ctx) => {
        const record = await vault.updateRecord(
          ctx.principal.tenant,
          ctx.params.name,
          ctx.params.id,
          ctx.body,
          parseIfMatch(ctx.headers['if-match']),
          auditOriginOf(ctx),
        );
        ctx.audit.recorded = true;
        return { status: 200, body: record, headers: etag(record.version) };
      }),

      defineRoute({
        method: 'DELETE',
        url: '/v1/collections/:name/records/:id',
        summary: 'Delete a record (If-Match optional)',
        tags: ['records'],
        auth: 'tenant-data',
        secondFactor: false,
        authorize: allow('write'),
        audit: { action: VaultAction.recordDelete },
        schema: {
          params: Type.Object({ name: CollectionName, id: RecordId }),
          headers: Type.Object({ 'if-match': Type.Optional(IfMatch) }),
          response: { 204: Type.Null() },
        },
      }).handle(async (ctx) => {
        await vault.deleteRecord(
          ctx.principal.tenant,
          ctx.params.name,
          ctx.params.id,
          parseIfMatch(ctx.headers['if-match']),
          auditOriginOf(ctx),
        );
        ctx.audit.recorded = true;
        return { status: 204 };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/collections/:name/records',
        summary: 'List records with cursor pagination (to search, POST …/records/search)',
        description:
          'A `where[field]=value` query is refused with 400 TRESOR_ERR_SEARCH_IN_URL: searched values do not travel in URLs (proxy logs, browser history); POST them to /v1/collections/{name}/records/search.',
        tags: ['records'],
        auth: 'tenant-data',
        secondFactor: false,
        authorize: allow('read'),
        audit: { action: VaultAction.recordList },
        schema: {
          params: Type.Object({ name: CollectionName }),
          querystring: Type.Object(
            {
              limit: Type.Optional(PageLimit),
              cursor: Type.Optional(Cursor),
            },
            {
              // Accepted by the schema only to be refused by name below (not as an unknown field).
              patternProperties: { '^where': Type.Unknown() },
              maxProperties: 34,
            },
          ),
          response: { 200: RecordPageBody },
        },
      }).handle(async (ctx) => {
        if (Object.keys(ctx.query as Record<string, unknown>).some((key) => key.startsWith('where'))) {
          throw new TresorError(
            'TRESOR_ERR_SEARCH_IN_URL',
            `searched values do not go in the URL: POST {"where": {…}} to /v1/collections/${ctx.params.name}/records/search`,
            { route: 'POST /v1/collections/{name}/records/search' },
          );
        }
        const result = await vault.listRecords(
          ctx.principal.tenant,
          ctx.params.name,
          {
            ...(ctx.query.limit !== undefined ? { limit: ctx.query.limit } : {}),
            ...(ctx.query.cursor !== undefined ? { cursor: ctx.query.cursor } : {}),
          },
          auditOriginOf(ctx),
        );
        ctx.audit.recorded = true;
        return { status: 200, body: result };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/collections/:name/records/search',
        summary:
          'Equality search on searchable fields by blind index; the searched values travel in the body',
        description:
          'The body is `{ "where": { "<field>": <value> }, "limit"?, "cursor"? }`, paged as the list (GET …/records). Values never reach a URL, a log or an audit entry (docs/security/blind-index.md).',
        tags: ['records'],
        auth: 'tenant-data',
        secondFactor: false,
        authorize: allow('read'),
        audit: { action: VaultAction.recordSearch },
        schema: {
          params: Type.Object({ name: CollectionName }),
          body: Type.Object({
            where: Type.Record(
              Type.String({ pattern: NAME }),
              Type.Union([Type.String({ maxLength: 4096 }), Type.Number(), Type.Boolean()]),
              { minProperties: 1, maxProperties: 32 },
            ),
            limit: Type.Optional(PageLimit),
            cursor: Type.Optional(Cursor),
          }),
          response: { 200: RecordPageBody },
        },
      }).handle(async (ctx) => {
        const result = await vault.listRecords(
          ctx.principal.tenant,
          ctx.params.name,
          {
            where: ctx.body.where,
            ...(ctx.body.limit !== undefined ? { limit: ctx.body.limit } : {}),
            ...(ctx.body.cursor !== undefined ? { cursor: ctx.body.cursor } : {}),
          },
          auditOriginOf(ctx),
        );
        ctx.audit.recorded = true;
        return { status: 200, body: result };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/export',
        summary: 'Export all the tenant’s data as an age file encrypted to a recipient key or a passphrase',
        tags: ['export'],
        auth: 'api-key',
        secondFactor: false,
        authorize: adminOnly,
        audit: { action: VaultAction.tenantExport },
        schema: {
          body: Type.Union([
            Type.Object({ recipient: Type.String({ pattern: '^age1[0-9a-z]{58,4090}$', maxLength: 4096 }) }),
            Type.Object({ passphrase: Type.String({ minLength: 12, maxLength: 1024 }) }),
          ]),
          response: {
            200: Type.Object({
              format: Type.Literal('age'),
              export: Type.String({ description: 'Base64 of the age-encrypted export' }),
            }),
          },
        },
      }).handle(async (ctx) => {
        const archive = await vault.exportTenant(ctx.principal.tenant, ctx.body, auditOriginOf(ctx));
        ctx.audit.recorded = true;
        return { status: 200, body: { format: 'age', export: Buffer.from(archive).toString('base64') } };
      }),
    ],
  };
}
