/**
 * `tresor init`'s work: the first operator admin of a deployment and its audit log's identity.
 *
 * It runs on the server's stores directly (the control store in the data folder — SQLite in WAL
 * mode, which the running server may have open too — or in the PostgreSQL database of
 * `database.url`), offline or beside a running server. Whoever
 * can read the server's config and data folder is all-powerful over the deployment already, so it
 * asks for no network credential and acts as the system actor `init`, audited.
 *
 * 1. Refuse (TRESOR_ERR_CONFLICT) when a person of role operator-admin exists, not removed: init
 *    makes the first one only; later ones are invited by an operator admin. The identity service
 *    checks it in the insert's transaction (`firstOperatorAdmin`), so two inits make one admin.
 * 2. Fix the audit log's origin if it is not fixed yet (the given one, else the config's
 *    `audit.origin`, else generated as the server would at its first start); keep it if it is, and
 *    refuse (TRESOR_ERR_CONFIG_INVALID) a different one given (audit/log-identity.ts).
 * 3. Create the person through the identity accounts service, which audits `person.create` in the
 *    control store's outbox. The person can do nothing until they enrol a password and a second
 *    factor with the one-time enrolment token returned here (72 hours).
 *
 * Its audit event reaches the log by the running server's sequencer: the server notifies it of the
 * control store's outbox every few seconds (tresor-server.ts), so the entry is sequenced within
 * seconds; with no server running, at its next start (the sequencer moves every outbox at start).
 */
import { mkdirSync } from 'node:fs';
import { fixAuditOrigin, generatedAuditOrigin } from '../audit/log-identity.ts';
import type { ServerConfig } from '../config/server-config.ts';
import { TresorError } from '../errors.ts';
import { createAccountService, type PersonInfo } from '../identity/accounts.ts';
import { openControlOf } from './backend.ts';

export const INIT_ACTOR = { kind: 'system', job: 'init' } as const;

export interface InitDeploymentInput {
  config: ServerConfig;
  email: string;
  /** The audit origin asked for (--audit-origin); else the config's, else generated. */
  auditOrigin?: string;
  now?: () => Date;
}

export interface InitializedDeployment {
  person: PersonInfo;
  /** The one-time enrolment token: a secret, shown once. */
  enrolmentToken: string;
  enrolmentExpiresAt: string;
  /** `<console origin>/signin#enrol=<token>`: the fragment never reaches a server. */
  enrolmentLink: string;
  auditOrigin: string;
}

/** Where a browser opens the console: the config's first console origin. */
export function configuredConsoleOrigin(config: ServerConfig): string {
  return config.console.origins[0] ?? `https://${config.console.rpId}`;
}

export async function initDeployment(input: InitDeploymentInput): Promise<InitializedDeployment> {
  const now = input.now ?? (() => new Date());
  const { config } = input;
  // Before the server's first start the data folder may not exist: made as the server makes it.
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const control = await openControlOf(config);
  try {
    const fixed = await control.db
      .selectFrom('audit_log_identity')
      .select('origin')
      .where('id', '=', 1)
      .executeTakeFirst();
    if (fixed && input.auditOrigin !== undefined && input.auditOrigin !== fixed.origin)
      throw new TresorError(
        'TRESOR_ERR_CONFIG_INVALID',
        `this deployment's audit origin is ${fixed.origin} and never changes: drop --audit-origin or give that one`,
      );
    const asked = input.auditOrigin ?? config.audit.origin;
    const auditOrigin = await fixAuditOrigin(control, {
      ...(asked === undefined ? {} : { configured: asked }),
      generate: () => generatedAuditOrigin(config.publicUrl ? new URL(config.publicUrl).hostname : undefined),
      now,
    });
    const accounts = createAccountService({ control, now });
    const created = await accounts.createPerson(INIT_ACTOR, {
      side: 'operator',
      role: 'operator-admin',
      email: input.email,
      firstOperatorAdmin: true, // refused in the insert's transaction when one exists
    });
    return {
      ...created,
      enrolmentLink: `${configuredConsoleOrigin(config)}/signin#enrol=${created.enrolmentToken}`,
      auditOrigin,
    };
  } finally {
    await control.close();
  }
}
