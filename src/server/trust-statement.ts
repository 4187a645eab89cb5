/**
 * The live trust statement behind /trust and /trust.json (src/http/routes/trust.ts): gathered from
 * what runs — the certificate file the server serves, keyd's status, the audit log's latest signed
 * checkpoint and the local witness, each backup destination's newest backup, the probe's
 * availability — and signed by keyd (purpose `trust-statement`) over
 * `tresor-trust/v1\n<SHA-256 hex of the RFC 8785 statement>\n`. Built at most once a minute;
 * concurrent requests share one build. Any part that cannot be read says so instead of failing
 * the page; only keyd's signature is required (without it there is no statement to trust: 503).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import canonicalize from 'canonicalize';
import type { StoredCheckpoint } from '../audit/log.ts';
import { checkpointOfNote } from '../audit/witness.ts';
import type { BackupView } from '../backup/backup-records.ts';
import type { ServerConfig } from '../config/server-config.ts';
import type { SignedTrustStatement, TrustStatement } from '../http/routes/trust.ts';
import { certificateFiles, TLS_POLICY } from '../http/tls.ts';
import type { KeyService } from '../keyd/operations.ts';
import { TRUST_STATEMENT } from '../keyd/signing-statements.ts';
import type { AvailabilityView } from './probe-job.ts';

// keyd signs only statements that begin with this line (src/keyd/signing-statements.ts).
export { TRUST_STATEMENT };

const CACHE_MS = 60_000;
const DAY_MS = 86_400_000;

export interface TrustSources {
  config: ServerConfig;
  origin: () => string;
  keyd: KeyService;
  latestCheckpoint: () => Promise<StoredCheckpoint | null>;
  witnessLatest: () => Promise<string | null>;
  backups: (limit: number) => Promise<BackupView[]>;
  availability: () => Promise<AvailabilityView>;
  clock: () => Date;
}

/** The bytes keyd signs for a statement. */
export function trustStatementMessage(statement: TrustStatement): Buffer {
  const digest = createHash('sha256')
    .update(canonicalize(statement) as string, 'utf8')
    .digest('hex');
  return Buffer.from(`${TRUST_STATEMENT}\n${digest}\n`, 'utf8');
}

async function certificate(config: ServerConfig, now: Date): Promise<TrustStatement['tls']['certificate']> {
  try {
    const files = await certificateFiles(config.tls, config.dataDir);
    const cert = new X509Certificate(readFileSync(files.certFile));
    const notAfter = new Date(cert.validTo).toISOString();
    return {
      subject: cert.subject.replaceAll('\n', ', '),
      issuer: cert.issuer.replaceAll('\n', ', '),
      notAfter,
      daysLeft: Math.floor((Date.parse(notAfter) - now.getTime()) / DAY_MS),
    };
  } catch {
    return null;
  }
}

async function keydState(keyd: KeyService): Promise<Omit<TrustStatement['keys']['keyd'], 'channel'>> {
  try {
    const s = await keyd.call('status', {});
    return {
      reachable: true,
      sealed: s.sealed || !s.initialised,
      rootKey: s.provider === 'pkcs11' ? 'pkcs11 (HSM)' : s.provider,
    };
  } catch {
    return { reachable: false, sealed: null, rootKey: null };
  }
}

/** Each destination's newest backup that it holds (read back, not deleted). */
function newestPerDestination(
  config: ServerConfig,
  runs: readonly BackupView[],
): TrustStatement['backups']['destinations'] {
  return config.backup.destinations.map((d) => {
    const held = runs.find((r) => r.destinations.some((c) => c.name === d.name && c.state === 'checked'));
    return { name: d.name, kind: d.kind, newestBackupAt: held ? held.startedAt : null };
  });
}

export async function buildTrustStatement(sources: TrustSources): Promise<TrustStatement> {
  const now = sources.clock();
  const { config } = sources;
  const [cert, keyd, checkpoint, witness, runs, availability] = await Promise.all([
    certificate(config, now),
    keydState(sources.keyd),
    sources.latestCheckpoint().catch(() => null),
    sources.witnessLatest().catch(() => null),
    sources.backups(200).catch(() => [] as BackupView[]),
    sources.availability().catch(() => undefined),
  ]);
  let witnessSize: number | null = null;
  try {
    witnessSize = witness === null ? null : checkpointOfNote(witness).size;
  } catch {
    witnessSize = null;
  }
  const last = availability?.report.last30Days;
  return {
    statement: TRUST_STATEMENT,
    generatedAt: now.toISOString(),
    origin: new URL(sources.origin()).origin,
    tls: { minVersion: TLS_POLICY.minVersion, maxVersion: TLS_POLICY.maxVersion, certificate: cert },
    keys: { keyd: { ...keyd, channel: config.keyd.kind === 'unix' ? 'unix socket' : 'mutual TLS' } },
    audit: {
      checkpoint: checkpoint
        ? { treeSize: checkpoint.size, signedAt: checkpoint.at, note: checkpoint.note }
        : null,
      witness: { kind: 'local', treeSize: witnessSize },
    },
    backups: {
      intervalMinutes: config.backup.intervalMinutes,
      destinations: newestPerDestination(config, runs),
    },
    availability: {
      probing: availability?.probing ?? false,
      objective: availability?.report.objective ?? 0.999,
      last30Days: {
        availability: last?.availability ?? null,
        observedMs: last?.observedMs ?? 0,
        downMs: last?.downMs ?? 0,
        remainingBudgetRatio: last?.errorBudget.remainingRatio ?? null,
      },
    },
    scans: { recorded: [] },
  };
}

/** The signed statement, rebuilt at most once a minute. */
export function trustStatements(sources: TrustSources): { signed(): Promise<SignedTrustStatement> } {
  let cached: { at: number; value: Promise<SignedTrustStatement> } | undefined;
  return {
    signed() {
      const now = sources.clock().getTime();
      if (cached && now - cached.at < CACHE_MS) return cached.value;
      const value = (async () => {
        const statement = await buildTrustStatement(sources);
        const { signature, keyName } = await sources.keyd.call('sign', {
          purpose: 'trust-statement',
          message: trustStatementMessage(statement),
        });
        return { statement, signature: signature.toString('base64'), keyName };
      })();
      cached = { at: now, value };
      // A failed build is not kept: the next request tries again.
      value.catch(() => {
        if (cached?.value === value) cached = undefined;
      });
      return value;
    },
  };
}
