/**
 * What `tresor keyd …` does (keyd.ts declares the commands and loads this module only when one
 * of them runs, so `tresor --help` does not load keyd, its client and the root-key providers).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CommanderError } from 'commander';
import { restoreKeydBackup } from '../keyd/backup/index.ts';
import { createKeydClient, type KeydClient } from '../keyd/client.ts';
import {
  checkRootKeyChoice,
  type KeydConfig,
  NO_PROVIDER_MESSAGE,
  readSecretFile,
  redactedKeydConfig,
  resolveKeydConfig,
} from '../keyd/config.ts';
import { runKeyd } from '../keyd/daemon.ts';
import { KeydError } from '../keyd/errors.ts';
import type { DataKeyPurpose } from '../keyd/operations.ts';
import { initDevFile } from '../keyd/root/dev-file.ts';
import { initPassphrase } from '../keyd/root/passphrase.ts';
import { initShamir } from '../keyd/root/shamir.ts';
import type { SealStatus } from '../keyd/root/types.ts';
import { isBackupId } from '../objects/backup-id.ts';
import { type BackupSourceFlags, backupSource } from './backup-source.ts';
import { out, readSecretFile as readCliSecretFile, readSecret, usageError, warn } from './io.ts';

export interface CommonFlags {
  config?: string;
  dir?: string;
  provider?: string;
  insecureDevKeyFile?: boolean;
  socket?: string;
  listen?: string;
  json?: boolean;
}

function config(flags: CommonFlags): KeydConfig {
  return resolveKeydConfig(flags as Record<string, unknown>);
}

/** The config of a command that holds the root key (serve, init): a provider must be chosen. */
function rootKeyConfig(flags: CommonFlags): KeydConfig & { provider: NonNullable<KeydConfig['provider']> } {
  const c = config(flags);
  if (c.provider === undefined) {
    // A usage error (exit 2), printed here: main.ts does not print a CommanderError.
    warn(`tresor keyd: ${NO_PROVIDER_MESSAGE}`);
    throw new CommanderError(2, 'commander.tresorUsage', NO_PROVIDER_MESSAGE);
  }
  return { ...c, provider: checkRootKeyChoice(c) };
}

/** A client for admin commands: the Unix socket, or mTLS with TRESOR_KEYD_CLIENT_CERT/_KEY and the CA. */
function adminClient(flags: CommonFlags, timeoutMs?: number): KeydClient {
  const c = config(flags);
  const timeout = timeoutMs === undefined ? {} : { timeoutMs };
  if (c.listen.kind === 'unix') {
    return createKeydClient({
      connect: { kind: 'unix', path: c.listen.path },
      clientName: 'tresor-cli',
      retries: 0,
      ...timeout,
    });
  }
  const cert = process.env.TRESOR_KEYD_CLIENT_CERT;
  const key = process.env.TRESOR_KEYD_CLIENT_KEY;
  if (!cert || !key) {
    throw new KeydError(
      'TRESOR_ERR_CONFIG_INVALID',
      'set TRESOR_KEYD_CLIENT_CERT and TRESOR_KEYD_CLIENT_KEY for mTLS',
    );
  }
  return createKeydClient({
    connect: {
      kind: 'tls',
      host: c.listen.host,
      port: c.listen.port,
      cert: readFileSync(cert),
      key: readFileSync(key),
      ca: readFileSync(c.listen.caFile),
    },
    clientName: 'tresor-cli',
    retries: 0,
    ...timeout,
  });
}

async function withClient<T>(
  flags: CommonFlags,
  fn: (client: KeydClient) => Promise<T>,
  timeoutMs?: number,
): Promise<T> {
  const client = adminClient(flags, timeoutMs);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

function print(flags: CommonFlags, value: unknown, human: () => string): void {
  out(flags.json ? value : human(), flags.json === true);
}

function jsonish(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) => (v && typeof v === 'object' && v.type === 'Buffer' ? `<${v.data.length} bytes>` : v),
    2,
  );
}

export async function serve(flags: CommonFlags): Promise<void> {
  const handle = await runKeyd(rootKeyConfig(flags));
  await handle.closed;
}

export async function init(flags: CommonFlags & { shares: string; threshold: string }): Promise<void> {
  const c = rootKeyConfig(flags);
  mkdirSync(c.dir, { recursive: true, mode: 0o700 });
  switch (c.provider) {
    case 'dev-file':
      initDevFile(c.dir);
      warn('initialised keyd with the DEV-ONLY plain root key file');
      print(flags, { provider: c.provider, dir: c.dir }, () => `initialised ${c.dir}`);
      return;
    case 'passphrase': {
      const passphrase = c.passphraseFile
        ? readSecretFile(c.passphraseFile)
        : await readSecret('new keyd passphrase: ');
      await initPassphrase(c.dir, passphrase);
      print(flags, { provider: c.provider, dir: c.dir }, () => `initialised ${c.dir}`);
      return;
    }
    case 'shamir': {
      const shares = await initShamir(c.dir, {
        shares: Number(flags.shares),
        threshold: Number(flags.threshold),
      });
      warn(
        `These ${shares.length} unseal shares are shown ONCE and stored nowhere. Give each to a different keyholder; any ${flags.threshold} unseal keyd.`,
      );
      print(flags, { provider: c.provider, dir: c.dir, threshold: Number(flags.threshold), shares }, () =>
        shares.join('\n'),
      );
      return;
    }
    case 'pkcs11': {
      const { initPkcs11 } = await import('../keyd/root/pkcs11.ts');
      const p = c.pkcs11;
      if (!p) throw new KeydError('TRESOR_ERR_CONFIG_INVALID', 'pkcs11 settings missing');
      const pin = p.pinFile ? readSecretFile(p.pinFile) : await readSecret('token user PIN: ');
      await initPkcs11({ library: p.library, tokenLabel: p.tokenLabel, pin });
      print(
        flags,
        { provider: c.provider, token: p.tokenLabel },
        () => `generated root key v1 in token ${p.tokenLabel}`,
      );
      return;
    }
  }
}

export async function unseal(flags: CommonFlags): Promise<void> {
  const secret = await readSecret('unseal secret: ');
  const status = await withClient(flags, (c) => c.call('unseal', { secret }));
  print(flags, status, () =>
    status.sealed
      ? `still sealed${status.progress ? ` (${status.progress.submitted}/${status.progress.threshold} shares)` : ''}`
      : 'unsealed',
  );
}

export async function seal(flags: CommonFlags): Promise<void> {
  const status = await withClient(flags, (c) => c.call('seal', {}));
  print(flags, status, () => 'sealed');
}

export async function status(flags: CommonFlags): Promise<void> {
  const health = await withClient(flags, (c) => c.call('health', {}));
  print(flags, health, () => jsonish(health));
}

export async function rotateRoot(flags: CommonFlags): Promise<void> {
  const r = await withClient(flags, (c) => c.call('rotateRootKey', {}));
  print(flags, r, () => `root key v${r.version} active; ${r.rewrapped} keys re-wrapped`);
}

export async function retireRoot(flags: CommonFlags & { version: string }): Promise<void> {
  const r = await withClient(flags, (c) =>
    c.call('retireRootKeyVersion', { version: Number(flags.version) }),
  );
  print(flags, r, () => `root key v${r.version} retired`);
}

export type TenantKeyVerb = 'create' | 'status' | 'rotate' | 'cancel-destroy';

export async function tenantKey(verb: TenantKeyVerb, tenant: string, flags: CommonFlags): Promise<void> {
  const r = await withClient(flags, (c): Promise<unknown> => {
    switch (verb) {
      case 'create':
        return c.call('createTenantKey', { tenant });
      case 'status':
        return c.call('tenantKeyStatus', { tenant });
      case 'rotate':
        return c.call('rotateTenantKey', { tenant });
      case 'cancel-destroy':
        return c.call('cancelTenantKeyDestroy', { tenant });
    }
  });
  print(flags, r, () => jsonish(r));
}

export async function retireTenantKey(
  tenant: string,
  flags: CommonFlags & { version: string },
): Promise<void> {
  const r = await withClient(flags, (c) =>
    c.call('retireTenantKeyVersion', { tenant, version: Number(flags.version) }),
  );
  print(flags, r, () => jsonish(r));
}

export async function destroyTenantKey(
  tenant: string,
  flags: CommonFlags & { now?: boolean; graceSeconds?: string },
): Promise<void> {
  const r = await withClient(flags, (c) =>
    c.call('destroyTenantKey', {
      tenant,
      mode: flags.now ? 'now' : 'schedule',
      ...(flags.graceSeconds ? { graceSeconds: Number(flags.graceSeconds) } : {}),
    }),
  );
  print(flags, r, () => jsonish(r));
}

export async function dataKey(tenant: string, flags: CommonFlags & { purpose: string }): Promise<void> {
  const dk = await withClient(flags, (c) =>
    c.call('generateDataKey', { tenant, purpose: flags.purpose as DataKeyPurpose }),
  );
  dk.key.fill(0);
  const shown = {
    keyId: dk.keyId,
    tenant: dk.tenant,
    purpose: dk.purpose,
    wrappedBytes: dk.wrapped.length,
  };
  print(flags, shown, () => jsonish(shown));
}

export async function publicKey(
  flags: CommonFlags & { purpose: 'audit-checkpoint' | 'deletion-certificate' },
): Promise<void> {
  const k = await withClient(flags, (c) => c.call('publicKey', { purpose: flags.purpose }));
  print(
    flags,
    { name: k.name, verifierKey: k.verifierKey, publicKey: k.publicKey.toString('base64') },
    () => k.verifierKey,
  );
}

export async function log(flags: CommonFlags & { from: string; limit: string }): Promise<void> {
  const r = await withClient(flags, (c) =>
    c.call('opsLog', { from: Number(flags.from), limit: Number(flags.limit) }),
  );
  if (flags.json) out(r, true);
  else
    for (const e of r.entries)
      out(`${e.seq}\t${e.at}\t${e.caller}\t${e.op}\t${e.tenant ?? '-'}\t${e.outcome}`, false);
}

export function showConfig(flags: CommonFlags): void {
  const c = redactedKeydConfig(config(flags));
  print(flags, c, () => JSON.stringify(c, null, 2));
}

/** A keyd backup may take a while on a loaded machine or a slow destination; the default is 5 s. */
const BACKUP_TIMEOUT_MS = 30 * 60_000;

export async function backupNow(flags: CommonFlags): Promise<void> {
  const r = await withClient(flags, (c) => c.call('backupKeyd', {}), BACKUP_TIMEOUT_MS);
  print(flags, r, () =>
    [
      `keyd backup ${r.backupId} taken ${r.createdAt}, ${r.size} bytes`,
      ...r.destinations.map(
        (d) => `  ${d.destination}: ${d.ok ? 'written and read back' : `failed (${d.error})`}`,
      ),
    ].join('\n'),
  );
}

export async function backupList(flags: CommonFlags): Promise<void> {
  const r = await withClient(flags, (c) => c.call('listKeydBackups', {}), BACKUP_TIMEOUT_MS);
  print(flags, r, () =>
    [
      'DESTINATION\tID\tTAKEN\tCOMPLETE',
      ...r.destinations.flatMap((d) =>
        d.error
          ? [`${d.destination}\t-\t-\tunreadable (${d.error})`]
          : d.backups.map((b) => `${d.destination}\t${b.id}\t${b.takenAt}\t${b.complete ? 'yes' : 'no'}`),
      ),
    ].join('\n'),
  );
}

export interface KeydRestoreFlags extends BackupSourceFlags {
  backup?: string;
  to: string;
  secretFile?: string;
  devKeyFile?: string;
  pkcs11Library: string;
  pkcs11Token: string;
  verifierKey?: string;
  json?: boolean;
}

const RESTORE = 'tresor keyd restore';

/** A note verifier key (`name+id+base64(0x01 ‖ key)`) or a bare base64 key: the raw 32 bytes. */
function pinnedKey(text: string): Buffer {
  // The name and key id never hold '+'; the base64 after them may.
  const parts = text.split('+');
  const raw = Buffer.from(
    parts.length >= 3 && /^[0-9a-f]{8}$/.test(parts[1] ?? '') ? parts.slice(2).join('+') : text,
    'base64',
  );
  const key = raw.length === 33 && raw[0] === 0x01 ? raw.subarray(1) : raw;
  if (key.length !== 32) throw usageError(RESTORE, '--verifier-key is not an Ed25519 verifier key');
  return key;
}

/** Unseal secrets, one a line, from --secret-file or standard input (prompted on a terminal). */
function secretSource(flags: KeydRestoreFlags): (status: SealStatus) => Promise<string | undefined> {
  if (flags.secretFile === undefined && process.stdin.isTTY) {
    return async (status) => (status.provider === 'dev-file' ? '' : readSecret('unseal secret: '));
  }
  let lines: string[] | undefined;
  return async (status) => {
    if (status.provider === 'dev-file') return '';
    lines ??= readCliSecretFile(RESTORE, '--secret-file', flags.secretFile ?? '-')
      .split(/\r?\n/)
      .filter((l) => l.length > 0);
    return lines.shift();
  };
}

export async function restore(flags: KeydRestoreFlags): Promise<void> {
  if (flags.backup !== undefined && !isBackupId(flags.backup)) {
    throw usageError(RESTORE, '--backup is not a backup id (YYYYMMDDTHHMMSSZ-<8 hex>)');
  }
  const done = await restoreKeydBackup({
    destination: backupSource(RESTORE, flags),
    target: resolve(flags.to),
    nextSecret: secretSource(flags),
    ...(flags.backup === undefined ? {} : { backupId: flags.backup }),
    ...(flags.devKeyFile === undefined ? {} : { devKeyFile: resolve(flags.devKeyFile) }),
    ...(flags.verifierKey === undefined ? {} : { verifierKey: pinnedKey(flags.verifierKey) }),
    pkcs11: { library: flags.pkcs11Library, tokenLabel: flags.pkcs11Token },
  });
  out(
    flags.json
      ? done
      : [
          `restored keyd backup ${done.backupId} (taken ${done.createdAt}, ${done.provider}) into ${done.target}`,
          `  signature, every digest, decryption under the root keyring and the ops log (${done.opsLogEntries} entries): ok`,
          '  start keyd on this folder with the same provider and unseal it',
        ].join('\n'),
    flags.json === true,
  );
}
