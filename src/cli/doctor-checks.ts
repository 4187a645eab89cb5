/**
 * `tresor doctor`'s verdicts: each promise of the security page, checked against what the
 * deployment shows (doctor-impl.ts gathers it: the configuration, keyd's status, the control store
 * read-only, the live TLS endpoint). Pure functions of those facts, so each verdict is tested
 * apart. A verdict never quotes a secret: paths, names, counts and times only.
 */
import { isIP } from 'node:net';

export type Verdict = 'pass' | 'warn' | 'fail';

export interface DoctorCheck {
  id: string;
  verdict: Verdict;
  detail: string;
}

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** Whether an IP address is reachable from the public internet (not loopback, private, link-local, ULA). */
export function isPublicAddress(ip: string): boolean {
  const v = isIP(ip);
  if (v === 4) {
    const [a = 0, b = 0] = ip.split('.').map(Number);
    return !(
      a === 10 ||
      a === 127 ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 169 && b === 254) ||
      (a === 100 && b >= 64 && b <= 127) ||
      a === 0
    );
  }
  if (v === 6) {
    const lower = ip.toLowerCase();
    if (lower === '::1' || lower === '::') return false;
    if (lower.startsWith('::ffff:')) return isPublicAddress(lower.slice(7));
    return !(/^f[cd]/.test(lower) || /^fe[89ab]/.test(lower));
  }
  return true;
}

export function keydChannelCheck(
  keyd: { kind: 'unix'; path: string } | { kind: 'tls'; host: string; addresses: string[] },
): DoctorCheck {
  if (keyd.kind === 'unix')
    return {
      id: 'keyd.network',
      verdict: 'pass',
      detail: `keyd is reached over a Unix socket (${keyd.path}), on no network`,
    };
  const open = keyd.addresses.filter(isPublicAddress);
  if (keyd.addresses.length === 0)
    return { id: 'keyd.network', verdict: 'fail', detail: `keyd's host ${keyd.host} does not resolve` };
  return open.length > 0
    ? {
        id: 'keyd.network',
        verdict: 'fail',
        detail: `keyd listens on a public address (${open.join(', ')}): keep it on a private network`,
      }
    : {
        id: 'keyd.network',
        verdict: 'pass',
        detail: `keyd is on a private address (${keyd.addresses.join(', ')}) with mutual TLS`,
      };
}

export function keydStatusChecks(
  status: { provider: string; sealed: boolean; initialised: boolean } | { unreachable: string },
): DoctorCheck[] {
  if ('unreachable' in status)
    return [
      { id: 'keyd.root-key', verdict: 'fail', detail: `keyd cannot be reached: ${status.unreachable}` },
      { id: 'keyd.sealed', verdict: 'fail', detail: 'keyd cannot be reached' },
    ];
  return [
    status.provider === 'dev-file'
      ? {
          id: 'keyd.root-key',
          verdict: 'fail',
          detail:
            'the root key is a development key file beside keyd’s store: use passphrase, shamir or pkcs11',
        }
      : {
          id: 'keyd.root-key',
          verdict: 'pass',
          detail: `the root key is held by the ${status.provider} provider`,
        },
    !status.initialised || status.sealed
      ? {
          id: 'keyd.sealed',
          verdict: 'fail',
          detail: 'keyd is sealed: nothing can be encrypted or decrypted until it is unsealed',
        }
      : { id: 'keyd.sealed', verdict: 'pass', detail: 'keyd is unsealed' },
  ];
}

export function storeChecks(store: {
  kind: 'sqlite';
  dataDir: string;
  mode: number | undefined;
}): DoctorCheck[] {
  if (store.mode === undefined)
    return [
      { id: 'store.network', verdict: 'fail', detail: `the data folder ${store.dataDir} does not exist` },
    ];
  const open = (store.mode & 0o077) !== 0;
  return [
    {
      id: 'store.network',
      verdict: 'pass',
      detail: `embedded SQLite files in ${store.dataDir}, on no network`,
    },
    open
      ? {
          id: 'store.permissions',
          verdict: 'fail',
          detail: `the data folder is open to other users (mode ${(store.mode & 0o777).toString(8)}): chmod 700`,
        }
      : { id: 'store.permissions', verdict: 'pass', detail: 'the data folder is the server user’s alone' },
  ];
}

export interface TlsFacts {
  /** The negotiated protocol of a connection to the server, or why there was none. */
  protocol?: string;
  unreachable?: string;
  /** Whether a TLS 1.1 handshake was refused (it must be). */
  refusesOld: boolean;
  /** The served certificate's validity, if a connection was made. */
  validTo?: string;
  authorized?: boolean;
  authorizationError?: string;
}

export function tlsChecks(facts: TlsFacts, now: Date): DoctorCheck[] {
  if (facts.unreachable !== undefined)
    return [
      {
        id: 'tls.endpoint',
        verdict: 'fail',
        detail: `the server cannot be reached over TLS: ${facts.unreachable}`,
      },
    ];
  const checks: DoctorCheck[] = [];
  const modern = facts.protocol === 'TLSv1.3' || facts.protocol === 'TLSv1.2';
  checks.push(
    modern && facts.refusesOld
      ? {
          id: 'tls.settings',
          verdict: 'pass',
          detail: `${facts.protocol} negotiated; TLS 1.1 and older refused`,
        }
      : {
          id: 'tls.settings',
          verdict: 'fail',
          detail: `negotiated ${facts.protocol ?? 'nothing'}${facts.refusesOld ? '' : '; a TLS 1.1 handshake was accepted'}`,
        },
  );
  const left = facts.validTo !== undefined ? Date.parse(facts.validTo) - now.getTime() : Number.NaN;
  if (!facts.authorized)
    checks.push({
      id: 'tls.certificate',
      verdict: 'fail',
      detail: `the certificate is not trusted (${facts.authorizationError ?? 'unknown'}): give --ca-file or fix the chain`,
    });
  else if (!(left > 0))
    checks.push({ id: 'tls.certificate', verdict: 'fail', detail: 'the certificate has expired' });
  else if (left < 14 * DAY_MS)
    checks.push({
      id: 'tls.certificate',
      verdict: 'fail',
      detail: `the certificate expires in ${Math.floor(left / DAY_MS)} days`,
    });
  else if (left < 30 * DAY_MS)
    checks.push({
      id: 'tls.certificate',
      verdict: 'warn',
      detail: `the certificate expires in ${Math.floor(left / DAY_MS)} days`,
    });
  else
    checks.push({ id: 'tls.certificate', verdict: 'pass', detail: `trusted, valid until ${facts.validTo}` });
  return checks;
}

export function clockCheck(serverDate: string | undefined, now: Date): DoctorCheck {
  const at = serverDate !== undefined ? Date.parse(serverDate) : Number.NaN;
  if (!Number.isFinite(at))
    return { id: 'clock.skew', verdict: 'fail', detail: 'the server sent no Date header' };
  const skew = Math.abs(at - now.getTime());
  // The Date header has whole seconds: up to 1 s is rounding.
  return skew <= 5_000
    ? {
        id: 'clock.skew',
        verdict: 'pass',
        detail: `the server’s clock is within ${Math.ceil(skew / 1000)} s of this host’s`,
      }
    : {
        id: 'clock.skew',
        verdict: 'fail',
        detail: `the server’s clock is ${Math.round(skew / 1000)} s off this host’s: grants, sessions and TOTP depend on it`,
      };
}

export interface BackupFacts {
  destinations: { name: string; kind: string; underDataDir: boolean }[];
  defaultDestinations: boolean;
  intervalMinutes: number;
  /** The newest backup that every destination holds. */
  newestDone?: { id: string; startedAt: string };
  /** The newest verification of a backup that passed. */
  newestVerified?: { id: string; at: string };
}

export function backupChecks(b: BackupFacts, now: Date): DoctorCheck[] {
  const apart = b.destinations.filter((d) => !d.underDataDir);
  const checks: DoctorCheck[] = [];
  if (b.defaultDestinations || apart.length < 2)
    checks.push({
      id: 'backups.destinations',
      verdict: 'fail',
      detail: `${apart.length} destination(s) apart from the data’s disk (${b.destinations.map((d) => d.name).join(', ')}): configure two or more on other disks or sites`,
    });
  else
    checks.push({
      id: 'backups.destinations',
      verdict: 'pass',
      detail: `${apart.length} destinations apart from the data: ${apart.map((d) => `${d.name} (${d.kind})`).join(', ')}`,
    });
  const due = b.intervalMinutes > 0 ? 2 * b.intervalMinutes * 60_000 : DAY_MS;
  const age = b.newestDone ? now.getTime() - Date.parse(b.newestDone.startedAt) : Number.POSITIVE_INFINITY;
  if (!b.newestDone)
    checks.push({ id: 'backups.fresh', verdict: 'fail', detail: 'no backup is held by every destination' });
  else if (age > due)
    checks.push({
      id: 'backups.fresh',
      verdict: 'fail',
      detail: `the newest complete backup (${b.newestDone.id}) is ${Math.round(age / HOUR_MS)} h old`,
    });
  else
    checks.push({
      id: 'backups.fresh',
      verdict: 'pass',
      detail: `the newest complete backup (${b.newestDone.id}) is ${Math.round(age / 60_000)} min old`,
    });
  return checks;
}

/** The audit log verified: the trial restore of a backup checks it against its signed checkpoint. */
export function auditCheck(b: BackupFacts, now: Date): DoctorCheck {
  const age = b.newestVerified ? now.getTime() - Date.parse(b.newestVerified.at) : Number.POSITIVE_INFINITY;
  if (!b.newestVerified)
    return {
      id: 'audit.verified',
      verdict: 'fail',
      detail:
        'the audit log has not been verified (no backup passed its trial restore): run tresor backup now --wait',
    };
  return age <= 2 * DAY_MS
    ? {
        id: 'audit.verified',
        verdict: 'pass',
        detail: `verified against its signed checkpoint ${Math.round(age / 60_000)} min ago (trial restore of ${b.newestVerified.id})`,
      }
    : {
        id: 'audit.verified',
        verdict: 'fail',
        detail: `last verified ${Math.round(age / HOUR_MS)} h ago (trial restore of ${b.newestVerified.id})`,
      };
}

export function rateLimitCheck(
  r: { perAddress: number; perKey: number; windowMs: number },
  defaults: { perAddress: number; perKey: number },
): DoctorCheck {
  const loose = r.perAddress > 10 * defaults.perAddress || r.perKey > 10 * defaults.perKey;
  return loose
    ? {
        id: 'rate-limits',
        verdict: 'fail',
        detail: `rate limits are more than ten times the defaults (${r.perAddress} per address, ${r.perKey} per key per ${r.windowMs / 1000} s)`,
      }
    : {
        id: 'rate-limits',
        verdict: 'pass',
        detail: `${r.perAddress} requests per address and ${r.perKey} per key per ${r.windowMs / 1000} s`,
      };
}

export function operatorTokenCheck(
  tokens: { id: string; createdAt: string; expiresAt: string | null }[],
  now: Date,
): DoctorCheck {
  const live = tokens.filter((t) => t.expiresAt === null || Date.parse(t.expiresAt) > now.getTime());
  const forever = live.filter(
    (t) => t.expiresAt === null || Date.parse(t.expiresAt) - Date.parse(t.createdAt) > 90 * DAY_MS,
  );
  return forever.length > 0
    ? {
        id: 'operator-tokens',
        verdict: 'fail',
        detail: `${forever.length} operator token(s) never expire or live longer than 90 days: ${forever.map((t) => t.id).join(', ')}`,
      }
    : {
        id: 'operator-tokens',
        verdict: 'pass',
        detail: `${live.length} live operator token(s), each expiring within 90 days of its making`,
      };
}
