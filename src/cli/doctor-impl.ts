/**
 * `tresor doctor` (doctor.ts has the usage): gathers what the deployment shows — its configuration
 * (flags, TRESOR_* environment, config file, as `tresor server` reads them), keyd's status over the
 * server's own channel to it, the control store read-only, and the live TLS endpoint — and prints
 * the verdicts of doctor-checks.ts as a table or JSON. Exit 1 when any check fails.
 */
import { lookup } from 'node:dns/promises';
import { existsSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { connect } from 'node:tls';
import Database from 'better-sqlite3';
import { DEFAULT_RATE_LIMIT, resolveServerConfig, type ServerConfig } from '../config/server-config.ts';
import { createKeydClient } from '../keyd/client.ts';
import { controlStorePath } from '../server/control-store.ts';
import { readCa } from './api-client.ts';
import {
  auditCheck,
  type BackupFacts,
  backupChecks,
  clockCheck,
  type DoctorCheck,
  keydChannelCheck,
  keydStatusChecks,
  operatorTokenCheck,
  rateLimitCheck,
  storeChecks,
  type TlsFacts,
  tlsChecks,
} from './doctor-checks.ts';
import { out } from './io.ts';
import { keydTarget } from './keyd-target.ts';
import { table } from './table.ts';

const COMMAND = 'tresor doctor';
const DEADLINE_MS = 5_000;

export interface DoctorFlags {
  config?: string;
  url?: string;
  caFile?: string;
  json?: boolean;
  [setting: string]: unknown;
}

async function keydStatus(config: ServerConfig) {
  const client = createKeydClient({
    connect: keydTarget(config),
    clientName: 'tresor-doctor',
    timeoutMs: DEADLINE_MS,
    retries: 0,
  });
  try {
    const s = await client.call('status', {});
    return { provider: s.provider, sealed: s.sealed, initialised: s.initialised };
  } catch (err) {
    return { unreachable: (err as { code?: string }).code ?? 'no answer' };
  } finally {
    await client.close();
  }
}

async function keydChannel(config: ServerConfig) {
  const k = config.keyd;
  if (k.kind === 'unix') return keydChannelCheck({ kind: 'unix', path: k.socketPath });
  const addresses = await lookup(k.host, { all: true }).then(
    (all) => all.map((a) => a.address),
    () => [] as string[],
  );
  return keydChannelCheck({ kind: 'tls', host: k.host, addresses });
}

function handshake(url: URL, ca: Buffer | undefined, maxVersion?: 'TLSv1.1') {
  return new Promise<{
    protocol?: string;
    validTo?: string;
    authorized?: boolean;
    authorizationError?: string;
    failed?: string;
  }>((done) => {
    const socket = connect({
      host: url.hostname,
      port: Number(url.port || 443),
      ...(ca ? { ca } : {}),
      ...(/^[0-9.]+$|:/.test(url.hostname) ? {} : { servername: url.hostname }),
      ...(maxVersion ? { maxVersion, minVersion: 'TLSv1' as const } : {}),
      rejectUnauthorized: false,
      timeout: DEADLINE_MS,
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      done({
        protocol: socket.getProtocol() ?? undefined,
        validTo: cert?.valid_to ? new Date(cert.valid_to).toISOString() : undefined,
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
      });
      socket.end();
    });
    socket.once('timeout', () => {
      socket.destroy();
      done({ failed: 'no answer in time' });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => done({ failed: err.code ?? 'handshake failed' }));
  });
}

async function serverDate(url: URL, ca: Buffer | undefined): Promise<string | undefined> {
  const { request } = await import('node:https');
  return new Promise((done) => {
    const req = request(
      new URL('/healthz', url),
      { method: 'GET', ...(ca ? { ca } : {}), timeout: DEADLINE_MS },
      (res) => {
        res.resume();
        done(res.headers.date);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => done(undefined));
    req.end();
  });
}

async function tlsFacts(url: URL, ca: Buffer | undefined): Promise<TlsFacts> {
  const modern = await handshake(url, ca);
  if (modern.failed) return { unreachable: modern.failed, refusesOld: true };
  const old = await handshake(url, ca, 'TLSv1.1');
  return {
    ...(modern.protocol ? { protocol: modern.protocol } : {}),
    ...(modern.validTo ? { validTo: modern.validTo } : {}),
    authorized: modern.authorized === true,
    ...(modern.authorizationError ? { authorizationError: modern.authorizationError } : {}),
    refusesOld: old.failed !== undefined,
  };
}

function under(dir: string, path: string): boolean {
  const d = resolve(dir) + sep;
  return resolve(path).startsWith(d);
}

function controlFacts(config: ServerConfig): {
  backups: BackupFacts;
  tokens: { id: string; createdAt: string; expiresAt: string | null }[];
} {
  const backups: BackupFacts = {
    destinations: config.backup.destinations.map((d) => ({
      name: d.name,
      kind: d.kind,
      underDataDir: d.kind === 'folder' && under(config.dataDir, d.path),
    })),
    defaultDestinations: config.backup.defaultDestinations,
    intervalMinutes: config.backup.intervalMinutes,
  };
  const path = controlStorePath(config.dataDir);
  if (!existsSync(path)) return { backups, tokens: [] };
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const done = db
      .prepare(
        "SELECT id, started_at FROM backup_runs WHERE outcome = 'done' ORDER BY started_at DESC LIMIT 1",
      )
      .get() as { id: string; started_at: string } | undefined;
    if (done) backups.newestDone = { id: done.id, startedAt: done.started_at };
    const verified = db
      .prepare(
        "SELECT id, verified_at FROM backup_runs WHERE verification = 'passed' AND verified_at IS NOT NULL ORDER BY verified_at DESC LIMIT 1",
      )
      .get() as { id: string; verified_at: string } | undefined;
    if (verified) backups.newestVerified = { id: verified.id, at: verified.verified_at };
    const tokens = (
      db.prepare('SELECT id, created_at, expires_at FROM operator_tokens WHERE revoked_at IS NULL').all() as {
        id: string;
        created_at: string;
        expires_at: string | null;
      }[]
    ).map((t) => ({ id: t.id, createdAt: t.created_at, expiresAt: t.expires_at }));
    return { backups, tokens };
  } finally {
    db.close();
  }
}

export async function doctorCommand(flags: DoctorFlags): Promise<void> {
  const { url: urlFlag, caFile, json, ...settings } = flags;
  const config = resolveServerConfig(settings as Record<string, unknown>);
  const url = new URL(
    (urlFlag as string | undefined) ??
      process.env.TRESOR_URL ??
      config.publicUrl ??
      `https://${config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host}:${config.port}`,
  );
  const ca = readCa(COMMAND, (caFile as string | undefined) ?? process.env.TRESOR_CA_FILE);
  const now = new Date();
  const [channel, status, tls, date] = await Promise.all([
    keydChannel(config),
    keydStatus(config),
    tlsFacts(url, ca),
    serverDate(url, ca),
  ]);
  const facts = controlFacts(config);
  const mode = existsSync(config.dataDir) ? statSync(config.dataDir).mode : undefined;
  const checks: DoctorCheck[] = [
    channel,
    ...keydStatusChecks(status),
    ...storeChecks({ kind: 'sqlite', dataDir: config.dataDir, mode }),
    ...tlsChecks(tls, now),
    clockCheck(date, new Date()),
    ...backupChecks(facts.backups, now),
    auditCheck(facts.backups, now),
    rateLimitCheck(config.rateLimit, DEFAULT_RATE_LIMIT),
    operatorTokenCheck(facts.tokens, now),
  ];
  const ok = checks.every((c) => c.verdict !== 'fail');
  if (json) out({ ok, url: url.origin, checks }, true);
  else
    out(
      table(
        ['CHECK', 'RESULT', 'DETAIL'],
        checks.map((c) => [c.id, c.verdict.toUpperCase(), c.detail]),
      ),
      false,
    );
  process.exitCode = ok ? 0 : 1;
}
