/**
 * Tenant lifecycle and API keys over HTTP. Operator admins create, list and close tenants — closing
 * and cancelling a close need a person with a fresh second factor — and they never reach records (those routes take tenant API keys only). A tenant's admin-scope API key
 * issues, lists and revokes that tenant's keys. Each domain call writes its audit event in the same
 * transaction as its change; the handler then marks the request audited.
 */
import Type from 'typebox';
import { TresorError } from '../../errors.ts';
import type { ApiKeyService } from '../../identity/api-keys.ts';
import type { TenantInfo, TenantService } from '../../vault/tenants.ts';
import { IdempotencyKeyHeader, idempotencyOf } from '../idempotency-key.ts';
import { defineRoute, type RouteModule } from '../route.ts';

export interface TenantRouteDeps {
  tenants: TenantService;
  apiKeys: ApiKeyService;
}

const TenantId = Type.String({ pattern: '^ten_[A-Za-z0-9_-]{1,60}$', maxLength: 64 });
const KeyId = Type.String({ pattern: '^ak_[0-9a-f]{1,60}$', maxLength: 64 });
const Day = Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}$', maxLength: 10 });
const CollectionName = Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$', maxLength: 63 });
const Access = Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('admin')]);

const Tenant = Type.Object({
  id: Type.String(),
  name: Type.String(),
  state: Type.Union([
    Type.Literal('provisioning'),
    Type.Literal('active'),
    Type.Literal('closing'),
    Type.Literal('closed'),
  ]),
  contractStart: Type.String(),
  contractEnd: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  closedAt: Type.Union([Type.String(), Type.Null()]),
  closeReason: Type.Union([Type.String(), Type.Null()]),
});

const ApiKeyInfo = Type.Object({
  id: Type.String(),
  tenant: Type.String(),
  collections: Type.Union([Type.Literal('*'), Type.Array(Type.String())]),
  access: Type.Array(Access),
  createdAt: Type.String(),
  expiresAt: Type.Union([Type.String(), Type.Null()]),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
  lastUsedAt: Type.Union([Type.String(), Type.Null()]),
  label: Type.Union([Type.String(), Type.Null()]),
});

const Certificate = Type.Object({
  certificate: Type.Object({
    type: Type.String(),
    tenant: Type.String(),
    tenantName: Type.Optional(Type.String()),
    keyIdsDestroyed: Type.Array(Type.String()),
    keydDestroyedAt: Type.String(),
    closedAt: Type.String(),
    backupsAgedOutBy: Type.String(),
    keydBackupsAgedOutBy: Type.Optional(
      Type.String({
        description: "YYYY-MM-DD: by the end of this day no keyd backup holds the tenant's key",
      }),
    ),
    reason: Type.String(),
  }),
  body: Type.String({ description: 'The exact signed text: RFC 8785 canonical JSON of certificate' }),
  signature: Type.String({ description: 'Base64 Ed25519 signature by keyd over body' }),
  keyName: Type.String(),
});

const ExportTarget = Type.Union([
  Type.Object({ recipient: Type.String({ pattern: '^age1[0-9a-z]{58,4090}$', maxLength: 4096 }) }),
  Type.Object({ passphrase: Type.String({ minLength: 12, maxLength: 1024 }) }),
]);

const ArchiveExport = Type.Optional(Type.String({ description: 'Base64 of the age-encrypted final export' }));

function base64Export(archive: Uint8Array | undefined): { export?: string } {
  return archive ? { export: Buffer.from(archive).toString('base64') } : {};
}

function view(t: TenantInfo) {
  return { ...t };
}

/**
 * Operators only: an API key is refused outright, whatever its scope; an operator token reaches only
 * the routes of its scope (tenants:create, tenants:read), never close or cancel (step-up routes).
 */
function operatorOnly(): void {}

/** A tenant admin key acts on its own tenant's keys. */
function tenantAdmin(principal: { access: ReadonlySet<string> }): void {
  if (!principal.access.has('admin'))
    throw new TresorError('TRESOR_ERR_FORBIDDEN', 'this API key lacks the admin scope');
}

export function tenantRoutes(deps: TenantRouteDeps): RouteModule {
  return {
    name: 'tenants',
    routes: [
      defineRoute({
        method: 'POST',
        url: '/v1/tenants',
        summary: 'Create a tenant: its own store, its tenant key in keyd, and its first API key (shown once)',
        tags: ['tenants'],
        auth: 'operator',
        secondFactor: false,
        scope: 'tenants:create',
        authorize: operatorOnly,
        audit: { action: 'tenant.create' },
        schema: {
          headers: Type.Object({ 'idempotency-key': IdempotencyKeyHeader }),
          body: Type.Object({
            name: Type.String({ minLength: 1, maxLength: 200 }),
            contractStart: Type.Optional(Day),
            contractEnd: Type.Optional(Type.Union([Day, Type.Null()])),
          }),
          response: {
            201: Type.Object({
              id: Type.String(),
              name: Type.String(),
              state: Type.Literal('active'),
              contractStart: Type.String(),
              contractEnd: Type.Union([Type.String(), Type.Null()]),
              apiKey: Type.Union([Type.String(), Type.Null()], {
                description:
                  'Shown once; stored only as a hash. Null in the answer to a retry with the same Idempotency-Key: the key went to the first answer only — if that answer was lost, revoke apiKeyId and issue another',
              }),
              apiKeyId: Type.String(),
              replayed: Type.Optional(
                Type.Literal(true, {
                  description:
                    'The answer of an earlier request with the same Idempotency-Key; nothing was created now',
                }),
              ),
            }),
          },
        },
      }).handle(async (ctx) => {
        const p = ctx.principal;
        const idempotency = idempotencyOf({
          header: ctx.headers['idempotency-key'],
          // Scoped to the caller: the operator token, or the person of the console session.
          scope: p.kind === 'operator-token' ? `operator-token:${p.tokenId}` : `person:${p.personId}`,
          method: 'POST',
          path: '/v1/tenants',
          body: ctx.body,
        });
        const created = await deps.tenants.createTenant(ctx.body, ctx.auditEvent(), idempotency);
        if ('replayed' in created) {
          // Nothing was created: the replay itself is what is audited.
          await ctx.audit.record({
            action: 'tenant.create-replay',
            tenant: created.id,
            target: { tenantId: created.id },
          });
        }
        ctx.audit.recorded = true;
        return { status: 201, body: created, headers: { location: `/v1/tenants/${created.id}` } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/tenants',
        summary: 'List tenants (lifecycle data only; never records or key secrets)',
        tags: ['tenants'],
        auth: 'operator',
        secondFactor: false,
        scope: 'tenants:read',
        authorize: operatorOnly,
        audit: { action: 'tenant.list' },
        schema: {
          querystring: Type.Object({
            state: Type.Optional(
              Type.Union([
                Type.Literal('provisioning'),
                Type.Literal('active'),
                Type.Literal('closing'),
                Type.Literal('closed'),
              ]),
            ),
          }),
          response: { 200: Type.Object({ tenants: Type.Array(Tenant) }) },
        },
      }).handle(async (ctx) => {
        const tenants = await deps.tenants.listTenants(ctx.query.state ? { state: ctx.query.state } : {});
        await ctx.audit.record({ tenant: null });
        return { status: 200, body: { tenants: tenants.map(view) } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/tenants/:id',
        summary: 'One tenant’s lifecycle data',
        tags: ['tenants'],
        auth: 'operator',
        secondFactor: false,
        scope: 'tenants:read',
        authorize: operatorOnly,
        audit: { action: 'tenant.read' },
        schema: { params: Type.Object({ id: TenantId }), response: { 200: Tenant } },
      }).handle(async (ctx) => {
        const tenant = await deps.tenants.getTenant(ctx.params.id);
        await ctx.audit.record({ tenant: tenant.id });
        return { status: 200, body: view(tenant) };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/tenants/:id/close',
        summary:
          'Close a tenant: it serves nothing from now on; optional final export (age-encrypted); keyd destroys its key after the grace period (202, cancellable), then its store is wiped and the signed deletion certificate issued (200 when the grace is zero)',
        tags: ['tenants'],
        auth: 'operator',
        secondFactor: true,
        authorize: operatorOnly,
        audit: { action: 'tenant.close' },
        schema: {
          params: Type.Object({ id: TenantId }),
          body: Type.Object({
            reason: Type.String({ minLength: 1, maxLength: 500 }),
            export: Type.Optional(ExportTarget),
          }),
          response: {
            200: Type.Object({
              state: Type.Literal('closed'),
              ...Certificate.properties,
              export: ArchiveExport,
            }),
            202: Type.Object({
              state: Type.Literal('closing'),
              tenant: Type.String(),
              keyDestroyAfter: Type.String({
                description: 'When keyd destroys the tenant key; until then an operator admin may cancel',
              }),
              export: ArchiveExport,
            }),
          },
        },
      }).handle(async (ctx) => {
        const outcome = await deps.tenants.closeTenant(
          ctx.params.id,
          { reason: ctx.body.reason, ...(ctx.body.export ? { export: ctx.body.export } : {}) },
          ctx.auditEvent({ tenant: ctx.params.id }),
        );
        ctx.audit.recorded = true;
        if (outcome.state === 'closing') {
          const { export: archive, ...closing } = outcome;
          return { status: 202, body: { ...closing, ...base64Export(archive) } };
        }
        const { export: archive, ...closed } = outcome;
        return { status: 200, body: { ...closed, ...base64Export(archive) } };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/tenants/:id/close/cancel',
        summary:
          'Cancel a close while the tenant key is pending destruction: keyd keeps the key, the tenant is active again with a new first API key (shown once)',
        tags: ['tenants'],
        auth: 'operator',
        secondFactor: true,
        authorize: operatorOnly,
        audit: { action: 'tenant.close.cancel' },
        schema: {
          params: Type.Object({ id: TenantId }),
          response: {
            200: Type.Object({
              tenant: Tenant,
              apiKey: Type.String({ description: 'Shown once; stored only as a hash' }),
              apiKeyId: Type.String(),
            }),
          },
        },
      }).handle(async (ctx) => {
        const reopened = await deps.tenants.cancelClose(
          ctx.params.id,
          ctx.auditEvent({ tenant: ctx.params.id }),
        );
        ctx.audit.recorded = true;
        return { status: 200, body: { ...reopened, tenant: view(reopened.tenant) } };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/tenants/:id/deletion-certificate',
        summary: 'The signed deletion certificate of a closed tenant',
        tags: ['tenants'],
        auth: 'operator',
        secondFactor: false,
        scope: 'tenants:read',
        authorize: operatorOnly,
        audit: { action: 'tenant.read-certificate' },
        schema: {
          params: Type.Object({ id: TenantId }),
          response: { 200: Type.Object({ ...Certificate.properties, createdAt: Type.String() }) },
        },
      }).handle(async (ctx) => {
        const cert = await deps.tenants.getDeletionCertificate(ctx.params.id);
        await ctx.audit.record({ tenant: ctx.params.id });
        return { status: 200, body: cert };
      }),

      defineRoute({
        method: 'POST',
        url: '/v1/api-keys',
        summary: 'Issue an API key for the caller’s tenant (admin scope); the token is shown once',
        tags: ['api-keys'],
        auth: 'api-key',
        secondFactor: false,
        authorize: tenantAdmin,
        audit: { action: 'api-key.issue' },
        schema: {
          body: Type.Object({
            collections: Type.Union([
              Type.Literal('*'),
              Type.Array(CollectionName, { minItems: 1, maxItems: 100 }),
            ]),
            access: Type.Array(Access, { minItems: 1, maxItems: 3, uniqueItems: true }),
            expiresAt: Type.Optional(
              Type.Union([Type.String({ format: 'date-time', maxLength: 40 }), Type.Null()]),
            ),
            label: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
          }),
          response: { 201: Type.Object({ ...ApiKeyInfo.properties, token: Type.String() }) },
        },
      }).handle(async (ctx) => {
        const issued = await deps.apiKeys.issue(
          { ...ctx.body, tenant: ctx.principal.tenant },
          ctx.auditEvent(),
        );
        ctx.audit.recorded = true;
        return { status: 201, body: issued };
      }),

      defineRoute({
        method: 'GET',
        url: '/v1/api-keys',
        summary: 'The caller’s tenant’s API keys (never a secret or hash)',
        tags: ['api-keys'],
        auth: 'api-key',
        secondFactor: false,
        authorize: tenantAdmin,
        audit: { action: 'api-key.list' },
        schema: { response: { 200: Type.Object({ apiKeys: Type.Array(ApiKeyInfo) }) } },
      }).handle(async (ctx) => {
        const apiKeys = await deps.apiKeys.list(ctx.principal.tenant);
        await ctx.audit.record();
        return { status: 200, body: { apiKeys } };
      }),

      defineRoute({
        method: 'DELETE',
        url: '/v1/api-keys/:id',
        summary: 'Revoke one of the caller’s tenant’s API keys',
        tags: ['api-keys'],
        auth: 'api-key',
        secondFactor: false,
        authorize: tenantAdmin,
        audit: { action: 'api-key.revoke' },
        schema: { params: Type.Object({ id: KeyId }), response: { 200: ApiKeyInfo } },
      }).handle(async (ctx) => {
        const revoked = await deps.apiKeys.revoke(ctx.principal.tenant, ctx.params.id, ctx.auditEvent());
        ctx.audit.recorded = true;
        return { status: 200, body: revoked };
      }),
    ],
  };
}
