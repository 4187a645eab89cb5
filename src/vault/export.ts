/**
 * Tenant export: everything the tenant stored, for a tenant admin or for the closing process, as
 * ONE age file (age-encryption.org/v1) encrypted to a recipient key (age1…, X25519 or the post-
 * quantum hybrid) or to a passphrase (scrypt recipient) that the requester supplies. The archive
 * is never plaintext: the JSON document exists only in memory, its buffer is wiped after
 * encryption, and what leaves this function is the age ciphertext.
 *
 * Content (JSON): {tenant, exportedAt, collections: [{name, version, schema, records: [{id, version, data}]}]}
 *
 * The store is read in one read transaction, so the export is a consistent snapshot. The export is
 * audited (tenant.export, with counts and the recipient public key — never data) before it is
 * returned; the event, as a read's, goes to the control store's outbox (ctx.readOutbox). The whole tenant is held in memory: streaming it is left for later.
 */
import { Encrypter } from 'age-encryption';
import { wipe } from '../crypto/index.ts';
import { TresorError } from '../errors.ts';
import { collectionFromRow } from './collection-row.ts';
import { openRecord } from './field-crypto.ts';
import type { CollectionSchema, RecordData, VaultLimits } from './schema.ts';
import { type AuditOrigin, auditEvent, VaultAction } from './vault-audit.ts';
import type { VaultContext } from './vault-context.ts';

export interface ExportOptions {
  /** An age recipient (age1…). */
  recipient?: string;
  /** Or a passphrase (at least limits.minPassphraseLength characters). */
  passphrase?: string;
}

export interface ExportDocument {
  tenant: string;
  exportedAt: string;
  collections: Array<{
    name: string;
    version: number;
    schema: CollectionSchema;
    records: Array<{ id: string; version: number; data: RecordData }>;
  }>;
}

const AGE_RECIPIENT = /^age1[0-9a-z]{10,4000}$/;

/** Checks the options before any data is read, so a bad recipient costs nothing. */
function encrypterFor(options: ExportOptions, limits: VaultLimits): { encrypter: Encrypter; kind: string } {
  const { recipient, passphrase } = options ?? {};
  if ((recipient === undefined) === (passphrase === undefined)) {
    throw new TresorError('TRESOR_ERR_VALIDATION', 'give either a recipient or a passphrase', {
      fields: ['recipient', 'passphrase'],
    });
  }
  const encrypter = new Encrypter();
  if (recipient !== undefined) {
    if (typeof recipient !== 'string' || !AGE_RECIPIENT.test(recipient)) {
      throw new TresorError('TRESOR_ERR_VALIDATION', 'recipient must be an age recipient (age1…)', {
        fields: ['recipient'],
      });
    }
    try {
      encrypter.addRecipient(recipient);
    } catch {
      throw new TresorError('TRESOR_ERR_VALIDATION', 'recipient is not a valid age recipient', {
        fields: ['recipient'],
      });
    }
    return { encrypter, kind: 'recipient' };
  }
  if (
    typeof passphrase !== 'string' ||
    passphrase.length < limits.minPassphraseLength ||
    passphrase.length > 1024
  ) {
    throw new TresorError(
      'TRESOR_ERR_VALIDATION',
      `passphrase must be ${limits.minPassphraseLength} to 1024 characters`,
      { fields: ['passphrase'], limit: limits.minPassphraseLength },
    );
  }
  encrypter.setScryptWorkFactor(limits.exportScryptLogN);
  encrypter.setPassphrase(passphrase);
  return { encrypter, kind: 'passphrase' };
}

export async function exportTenant(
  ctx: VaultContext,
  tenant: string,
  options: ExportOptions,
  origin: AuditOrigin,
): Promise<Uint8Array> {
  // The time of the operation's audit events: when the vault began it.
  const at = ctx.clock().toISOString();
  const { encrypter, kind } = encrypterFor(options, ctx.limits);
  const store = await ctx.stores(tenant);
  const snapshot = await store.db.transaction().execute(async (trx) => ({
    collections: await trx.selectFrom('collections').selectAll().orderBy('name').execute(),
    records: await trx
      .selectFrom('records')
      .select(['id', 'collection', 'version', 'fields'])
      .orderBy('seq')
      .execute(),
  }));

  const target: Record<string, unknown> = {
    collections: snapshot.collections.map((c) => c.name),
    recordCount: snapshot.records.length,
    to: kind,
  };
  if (options.recipient !== undefined) target.recipient = options.recipient;

  const byCollection = new Map<string, typeof snapshot.records>();
  for (const r of snapshot.records) {
    const list = byCollection.get(r.collection) ?? [];
    list.push(r);
    byCollection.set(r.collection, list);
  }

  const doc: ExportDocument = { tenant, exportedAt: ctx.clock().toISOString(), collections: [] };
  try {
    for (const row of snapshot.collections) {
      const collection = collectionFromRow(row);
      const records: ExportDocument['collections'][number]['records'] = [];
      for (const r of byCollection.get(row.name) ?? []) {
        records.push({
          id: r.id,
          version: r.version,
          data: await openRecord(ctx, tenant, collection, r.id, r.version, r.fields),
        });
      }
      doc.collections.push({
        name: row.name,
        version: collection.version,
        schema: collection.schema,
        records,
      });
    }
  } catch (err) {
    await ctx.readOutbox.record(auditEvent(origin, at, tenant, VaultAction.tenantExport, target, 'failure'));
    throw err;
  }

  const plaintext = Buffer.from(JSON.stringify(doc), 'utf8');
  let archive: Uint8Array;
  try {
    archive = await encrypter.encrypt(plaintext);
  } finally {
    wipe(plaintext);
  }
  // A read of everything: its event goes to the read outbox (src/audit/read-outbox.ts).
  await ctx.readOutbox.record(auditEvent(origin, at, tenant, VaultAction.tenantExport, target));
  return archive;
}
