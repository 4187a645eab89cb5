/**
 * Config changes in the audit log. Tresor's configuration is read once at start (flags, TRESOR_*
 * environment, config file) and only the TLS certificates reload while it runs (SIGHUP), so a
 * config change is a start with a different configuration. Each start records `config.start` with
 * a SHA-256 digest of every top-level section of the *redacted* configuration (no secret is ever
 * hashed or logged); when a section differs from the previous start's, `config.change` names the
 * sections that changed. An auditor so sees every change of, say, the grant duration limit or the
 * audit sinks, with its time, without the log carrying the values.
 */
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { canonicalJson } from '../audit/canonical.ts';
import { type AuditEvent, appendAuditEvent } from '../audit/event.ts';
import { redactedServerConfig, type ServerConfig } from '../config/server-config.ts';
import type { Store } from '../store/types.ts';
import type { ControlDB } from './control-store.ts';

export type ConfigDigests = Record<string, string>;

/** SHA-256 (base64url) of each top-level section of the redacted config, in key order. */
export function configDigests(config: ServerConfig): ConfigDigests {
  const redacted = redactedServerConfig(config) as unknown as Record<string, unknown>;
  const digests: ConfigDigests = {};
  for (const key of Object.keys(redacted).sort()) {
    const value = redacted[key];
    digests[key] = createHash('sha256')
      .update(canonicalJson(value === undefined ? null : value), 'utf8')
      .digest('base64url');
  }
  return digests;
}

/** The sections whose digest differs (added and removed ones included), sorted. */
export function changedSections(previous: ConfigDigests, current: ConfigDigests): string[] {
  const keys = new Set([...Object.keys(previous), ...Object.keys(current)]);
  return [...keys].filter((k) => previous[k] !== current[k]).sort();
}

const ACTOR = { kind: 'system', id: 'server' } as const;

/** Records this start's config (and what changed since the last start) in the control store's outbox. */
export async function recordConfigAtStart(
  control: Store<ControlDB>,
  config: ServerConfig,
): Promise<string[]> {
  const digests = configDigests(config);
  return control.write(async (trx) => {
    const last = await sql<{ event: string }>`
      SELECT event FROM audit_events WHERE action = 'config.start' ORDER BY seq DESC LIMIT 1`.execute(trx);
    const row = last.rows[0];
    const previous = row
      ? ((JSON.parse(row.event) as AuditEvent).target?.sections as ConfigDigests | undefined)
      : undefined;
    const changed = previous ? changedSections(previous, digests) : [];
    const at = new Date().toISOString();
    if (changed.length > 0) {
      await appendAuditEvent(trx, {
        at,
        actor: { ...ACTOR },
        tenant: null,
        action: 'config.change',
        target: { changed },
        outcome: 'success',
      });
    }
    await appendAuditEvent(trx, {
      at,
      actor: { ...ACTOR },
      tenant: null,
      action: 'config.start',
      target: { sections: digests, first: previous === undefined },
      outcome: 'success',
    });
    return changed;
  });
}
