/**
 * A real control store in a temp folder with the real identity services and the grant service,
 * people's onAccessRemoved wired to endGrantsOfIn as the server wires it. The clock is a variable.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGrantService, type GrantService } from '../../src/access/grants.ts';
import { CONTROL_SOURCE, createAuditSequencer } from '../../src/audit/sequencer.ts';
import type { IdentityActor } from '../../src/identity/identity-actor.ts';
import { createPeopleService, type PeopleService, type PersonInfo } from '../../src/identity/people.ts';
import { type Role, sideOf } from '../../src/identity/roles.ts';
import type { SessionPrincipal } from '../../src/identity/session-principal.ts';
import { createSessionService, type SessionService } from '../../src/identity/sessions.ts';
import { type ControlDB, controlStoreMigrations } from '../../src/server/control-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/types.ts';
import { insertTenant } from '../helpers/control-store.ts';

export { refusal } from '../helpers/refusal.ts';

export const ADMIN = { kind: 'operator-admin' as const, id: 'opr_000000000000000000000001' };

export interface AuditRecord {
  at: string;
  actor: { kind: string; id: string; grantId?: string };
  tenant: string | null;
  action: string;
  outcome: string;
  target?: Record<string, unknown>;
  sourceAddress?: string;
  userAgent?: string;
}

export interface AccessFixture {
  dir: string;
  control: Store<ControlDB>;
  people: PeopleService;
  sessions: SessionService;
  grants: GrantService;
  now(): Date;
  advance(ms: number): void;
  tenant(id: string, state?: 'active' | 'closed'): Promise<void>;
  person(role: Role, tenant?: string, by?: IdentityActor): Promise<PersonInfo>;
  /** A new session of the person (as a login or re-authentication makes one), and its principal. */
  login(person: PersonInfo, options?: { fresh2faAt?: string | null }): Promise<SessionPrincipal>;
  audit(): Promise<AuditRecord[]>;
  /** Moves the control store's audit outbox into the log, as the server's sequencer does. */
  sequence(): Promise<void>;
  /** Closes the store but keeps the folder (for a CLI run against it). */
  closeStore(): Promise<void>;
  close(): Promise<void>;
}

let emails = 0;

export async function openAccessFixture(
  start = '2030-06-01T09:00:00.000Z',
  grantConfig?: Parameters<typeof createGrantService>[0]['config'],
): Promise<AccessFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-access-'));
  const control = await openSqliteStore<ControlDB>(join(dir, 'control.sqlite'), controlStoreMigrations);
  let now = new Date(start);
  let closed = false;
  const clock = () => now;
  const factorKey = randomBytes(32);
  const grants = createGrantService({ control, now: clock, ...(grantConfig ? { config: grantConfig } : {}) });
  const sessions = createSessionService({ control, now: clock });
  const people = createPeopleService({
    control,
    now: clock,
    factorKey: async () => factorKey,
    onAccessRemoved: async (personId, trx) => {
      await grants.endGrantsOfIn(trx, personId, 'access-removed');
    },
  });
  return {
    dir,
    control,
    people,
    sessions,
    grants,
    now: clock,
    advance(ms) {
      now = new Date(now.getTime() + ms);
    },
    async tenant(id, state = 'active') {
      await insertTenant(control, id, { at: now.toISOString(), state });
    },
    async person(role, tenant, by = ADMIN) {
      emails += 1;
      const side = sideOf(role);
      const { person } = await people.createPerson(by, {
        side,
        role,
        email: `${role}-${emails}@example.test`,
        tenant: side === 'customer' ? tenant : null,
      });
      return person;
    },
    async login(person, options = {}) {
      const fresh2faAt = options.fresh2faAt === undefined ? now.toISOString() : options.fresh2faAt;
      const { session } = await control.write((trx) =>
        sessions.createIn(trx, {
          personId: person.id,
          side: person.side,
          tenant: person.tenant,
          factors: ['password', 'totp'],
          fresh2faAt,
        }),
      );
      return {
        kind: 'session',
        sessionId: session.id,
        personId: person.id,
        side: person.side,
        role: person.role,
        tenant: person.tenant,
        factors: session.factors,
        authenticatedAt: session.createdAt,
        fresh2faAt: session.fresh2faAt,
      };
    },
    async audit() {
      const rows = await control.db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
      return rows.map((r) => JSON.parse(r.event) as AuditRecord);
    },
    async sequence() {
      const sequencer = createAuditSequencer({
        control,
        openSource: async () => control,
        listSources: async () => [CONTROL_SOURCE],
        now: clock,
      });
      await sequencer.start();
      await sequencer.drain();
      await sequencer.close();
    },
    async closeStore() {
      if (!closed) await control.close();
      closed = true;
    },
    async close() {
      if (!closed) await control.close();
      closed = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
