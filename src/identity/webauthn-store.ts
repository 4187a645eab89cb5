/**
 * Where WebAuthn state lives: registered credentials (public keys and signature counters — no secret
 * is stored) and the outstanding ceremony challenges, in the control store.
 *
 * Each method is one write() (or one read), so the rules of src/store/sqlite/store.ts hold: only
 * database work inside the transaction. Every change is written in the same transaction as its audit
 * event. The checks that matter for security are made here, where they are atomic:
 * - `takeChallenge` deletes the challenge as it reads it: two requests racing with one response get
 *   it once between them (single use, W3C WebAuthn Level 3 §13.4.3);
 * - `recordUse` moves a counter only from the value the caller verified against (compare-and-set),
 *   and only on a credential that is not revoked, so a concurrent sign-in or a revocation between the
 *   read and the write is not silently overwritten.
 *
 * Times are ISO 8601 UTC text, as everywhere in the control store.
 */
import { type Kysely, type Migration, sql, type Transaction } from 'kysely';
import { type AuditEvent, appendAuditEvent, type WithAuditEvents } from '../audit/event.ts';
import type { Store } from '../store/types.ts';

export type CeremonyKind = 'registration' | 'authentication';

export interface WebAuthnCredentialsTable {
  /** The credential ID as the authenticator made it, base64url (W3C WebAuthn §4 "Credential ID"). */
  id: string;
  person: string;
  /** The COSE_Key public key (RFC 9052 §7), base64url. */
  public_key: string;
  /** The last signature counter accepted (§6.1.1). */
  counter: number;
  transports: string; // JSON string[]
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface WebAuthnChallengesTable {
  person: string;
  kind: CeremonyKind;
  /** base64url of the random challenge bytes, as sent in the options. */
  challenge: string;
  expires_at: string;
}

export interface WithWebAuthn {
  webauthn_credentials: WebAuthnCredentialsTable;
  webauthn_challenges: WebAuthnChallengesTable;
}

export const webAuthnMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('webauthn_credentials')
      // Credential IDs are unique across people too: §7.1 refuses a credential ID already registered.
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('person', 'text', (c) => c.notNull())
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('counter', 'integer', (c) => c.notNull())
      .addColumn('transports', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('last_used_at', 'text')
      .addColumn('revoked_at', 'text')
      .execute();
    await db.schema
      .createIndex('webauthn_credentials_person')
      .on('webauthn_credentials')
      .column('person')
      .execute();
    await db.schema
      .createTable('webauthn_challenges')
      .addColumn('person', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('challenge', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      // One outstanding challenge per person and ceremony: beginning again replaces the earlier one.
      .addPrimaryKeyConstraint('webauthn_challenges_pk', ['person', 'kind'])
      .execute();
  },
};

/** PostgreSQL's WebAuthn tables: the same columns; the signature counter is bigint (§6.1.1: 32 bits unsigned). */
export const webAuthnPgMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      CREATE TABLE webauthn_credentials (
        id text PRIMARY KEY,
        person text NOT NULL,
        public_key text NOT NULL,
        counter bigint NOT NULL,
        transports text NOT NULL,
        created_at text NOT NULL,
        last_used_at text,
        revoked_at text
      );
      CREATE INDEX webauthn_credentials_person ON webauthn_credentials (person);
      CREATE TABLE webauthn_challenges (
        person text NOT NULL,
        kind text NOT NULL,
        challenge text NOT NULL,
        expires_at text NOT NULL,
        CONSTRAINT webauthn_challenges_pk PRIMARY KEY (person, kind)
      );`.execute(db);
  },
};

export interface StoredChallenge {
  person: string;
  kind: CeremonyKind;
  challenge: string;
  expiresAt: string;
}

export interface StoredCredential {
  id: string;
  person: string;
  publicKey: Uint8Array;
  counter: number;
  transports: string[];
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface CredentialUse {
  id: string;
  person: string;
  /** The counter the response was verified against; the update happens only if it is still stored. */
  previousCounter: number;
  counter: number;
  at: string;
}

export interface WebAuthnStore {
  /** Stores the person's challenge for this ceremony, replacing any earlier one. */
  putChallenge(challenge: StoredChallenge): Promise<void>;
  /** Deletes and returns the person's challenge for this ceremony (undefined if there is none). */
  takeChallenge(person: string, kind: CeremonyKind): Promise<StoredChallenge | undefined>;
  findCredential(id: string): Promise<StoredCredential | undefined>;
  /** Every credential of the person, revoked ones included, oldest first. */
  listCredentials(person: string): Promise<StoredCredential[]>;
  /** Adds a credential; false (and nothing written) if its ID is already known. */
  addCredential(credential: StoredCredential, audit: AuditEvent): Promise<boolean>;
  /** Advances the counter of a live credential from `previousCounter`; false if that is no longer so. */
  recordUse(use: CredentialUse, audit: AuditEvent): Promise<boolean>;
  /** Revokes a live credential of the person; false if there is none with that ID. */
  revokeCredential(person: string, id: string, at: string, audit: AuditEvent): Promise<boolean>;
  /** Records a refused ceremony. */
  recordRefusal(audit: AuditEvent): Promise<void>;
}

type WebAuthnDB = WithWebAuthn & WithAuditEvents;

/** The control-store implementation: `store` must have run webAuthnMigration and the audit events one. */
export function createSqliteWebAuthnStore<DB extends WebAuthnDB>(store: Store<DB>): WebAuthnStore {
  const control = store as unknown as Store<WebAuthnDB>;
  const write = <T>(work: (trx: Transaction<WebAuthnDB>) => Promise<T>) => control.write(work);

  return {
    putChallenge: (challenge) =>
      write(async (trx) => {
        await trx
          .insertInto('webauthn_challenges')
          .values({
            person: challenge.person,
            kind: challenge.kind,
            challenge: challenge.challenge,
            expires_at: challenge.expiresAt,
          })
          .onConflict((oc) =>
            oc.columns(['person', 'kind']).doUpdateSet({
              challenge: challenge.challenge,
              expires_at: challenge.expiresAt,
            }),
          )
          .execute();
      }),

    takeChallenge: (person, kind) =>
      write(async (trx) => {
        const row = await trx
          .selectFrom('webauthn_challenges')
          .selectAll()
          .where('person', '=', person)
          .where('kind', '=', kind)
          .executeTakeFirst();
        if (!row) return undefined;
        await trx
          .deleteFrom('webauthn_challenges')
          .where('person', '=', person)
          .where('kind', '=', kind)
          .execute();
        return { person: row.person, kind: row.kind, challenge: row.challenge, expiresAt: row.expires_at };
      }),

    async findCredential(id) {
      const row = await control.db
        .selectFrom('webauthn_credentials')
        .selectAll()
        .where('id', '=', id)
        .executeTakeFirst();
      return row ? credentialFrom(row) : undefined;
    },

    async listCredentials(person) {
      const rows = await control.db
        .selectFrom('webauthn_credentials')
        .selectAll()
        .where('person', '=', person)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      return rows.map(credentialFrom);
    },

    addCredential: (credential, audit) =>
      write(async (trx) => {
        const known = await trx
          .selectFrom('webauthn_credentials')
          .select('id')
          .where('id', '=', credential.id)
          .executeTakeFirst();
        if (known) return false;
        await trx
          .insertInto('webauthn_credentials')
          .values({
            id: credential.id,
            person: credential.person,
            public_key: Buffer.from(credential.publicKey).toString('base64url'),
            counter: credential.counter,
            transports: JSON.stringify(credential.transports),
            created_at: credential.createdAt,
            last_used_at: credential.lastUsedAt,
            revoked_at: credential.revokedAt,
          })
          .execute();
        await appendAuditEvent(trx, audit);
        return true;
      }),

    recordUse: (use, audit) =>
      write(async (trx) => {
        const result = await trx
          .updateTable('webauthn_credentials')
          .set({ counter: use.counter, last_used_at: use.at })
          .where('id', '=', use.id)
          .where('person', '=', use.person)
          .where('counter', '=', use.previousCounter)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        if (result.numUpdatedRows !== 1n) return false;
        await appendAuditEvent(trx, audit);
        return true;
      }),

    revokeCredential: (person, id, at, audit) =>
      write(async (trx) => {
        const result = await trx
          .updateTable('webauthn_credentials')
          .set({ revoked_at: at })
          .where('id', '=', id)
          .where('person', '=', person)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        if (result.numUpdatedRows !== 1n) return false;
        await appendAuditEvent(trx, audit);
        return true;
      }),

    recordRefusal: (audit) => write((trx) => appendAuditEvent(trx, audit)),
  };
}

function credentialFrom(row: WebAuthnCredentialsTable): StoredCredential {
  return {
    id: row.id,
    person: row.person,
    publicKey: new Uint8Array(Buffer.from(row.public_key, 'base64url')),
    counter: row.counter,
    transports: JSON.parse(row.transports) as string[],
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}
