/**
 * `tresor keyd …`: run the key service, initialise and unseal it, and drive its admin operations
 * over its private channel. Secrets (passphrase, shares, PIN) come from stdin or *_FILE variables.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { type Command, CommanderError } from 'commander';
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
import { out, readSecret, warn } from './io.ts';

interface CommonFlags {
  config?: string;
  dir?: string;
  provider?: string;
  insecureDevKeyFile?: boolean;
  socket?: string;
  listen?: string;
  json?: boolean;
}

function withCommon(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'JSON config file (keyd section); env TRESOR_CONFIG')
    .option('--dir <folder>', "keyd's own folder; env TRESOR_KEYD_DIR (default <data dir>/keyd)")
    .option(
      '--provider <kind>',
      'root-key provider: passphrase | shamir | pkcs11 (or dev-file for development); env TRESOR_KEYD_PROVIDER; no default',
    )
    .option(
      '--insecure-dev-key-file',
      'allow the dev-file provider (root key in a plain file; Unix socket only); env TRESOR_KEYD_INSECURE_DEV_KEY_FILE=1',
    )
    .option('--socket <path>', 'Unix socket path; env TRESOR_KEYD_SOCKET (default <dir>/keyd.sock)')
    .option('--listen <host:port>', 'listen on TCP with mutual TLS instead; env TRESOR_KEYD_LISTEN')
    .option('--json', 'machine-readable output');
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
function adminClient(flags: CommonFlags): KeydClient {
  const c = config(flags);
  if (c.listen.kind === 'unix') {
    return createKeydClient({
      connect: { kind: 'unix', path: c.listen.path },
      clientName: 'tresor-cli',
      retries: 0,
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
  });
}

async function withClient<T>(flags: CommonFlags, fn: (client: KeydClient) => Promise<T>): Promise<T> {
  const client = adminClient(flags);
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

export function registerKeydCommands(program: Command): void {
  const keyd = program
    .command('keyd')
    .description('the key service: root key, tenant keys, data keys, signing');

  withCommon(keyd.command('serve', { isDefault: true }))
    .description('run keyd in the foreground on its Unix socket (or TCP with mutual TLS)')
    .action(async (flags: CommonFlags) => {
      const handle = await runKeyd(rootKeyConfig(flags));
      await handle.closed;
    });

  withCommon(keyd.command('init'))
    .description('create the root keyring (shares and passphrases are read from stdin, never from argv)')
    .option('--shares <n>', 'Shamir: number of unseal shares', '5')
    .option('--threshold <m>', 'Shamir: shares needed to unseal', '3')
    .action(async (flags: CommonFlags & { shares: string; threshold: string }) => {
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
    });

  withCommon(keyd.command('unseal'))
    .description('submit one unseal secret (passphrase, one Shamir share, or token PIN) read from stdin')
    .action(async (flags: CommonFlags) => {
      const secret = await readSecret('unseal secret: ');
      const status = await withClient(flags, (c) => c.call('unseal', { secret }));
      print(flags, status, () =>
        status.sealed
          ? `still sealed${status.progress ? ` (${status.progress.submitted}/${status.progress.threshold} shares)` : ''}`
          : 'unsealed',
      );
    });

  withCommon(keyd.command('seal'))
    .description('forget the root key until the next unseal')
    .action(async (flags: CommonFlags) => {
      const status = await withClient(flags, (c) => c.call('seal', {}));
      print(flags, status, () => 'sealed');
    });

  withCommon(keyd.command('status'))
    .description('seal state and health')
    .action(async (flags: CommonFlags) => {
      const health = await withClient(flags, (c) => c.call('health', {}));
      print(flags, health, () => jsonish(health));
    });

  withCommon(keyd.command('rotate-root'))
    .description('new root key version; re-wraps every tenant key (no data rewrite)')
    .action(async (flags: CommonFlags) => {
      const r = await withClient(flags, (c) => c.call('rotateRootKey', {}));
      print(flags, r, () => `root key v${r.version} active; ${r.rewrapped} keys re-wrapped`);
    });

  withCommon(keyd.command('retire-root'))
    .description('forget an old root key version once nothing is wrapped by it')
    .requiredOption('--version <n>', 'root key version')
    .action(async (flags: CommonFlags & { version: string }) => {
      const r = await withClient(flags, (c) =>
        c.call('retireRootKeyVersion', { version: Number(flags.version) }),
      );
      print(flags, r, () => `root key v${r.version} retired`);
    });

  const tk = keyd.command('tenant-key').description("a tenant's key-encryption key");
  for (const [verb, description] of [
    ['create', 'create the tenant key'],
    ['status', 'versions, states and counts'],
    ['rotate', 'new active version; old versions keep decrypting until retired'],
    ['cancel-destroy', 'cancel a scheduled destruction'],
  ] as const) {
    withCommon(tk.command(verb))
      .description(description)
      .argument('<tenant>', 'tenant id')
      .action(async (tenant: string, flags: CommonFlags) => {
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
      });
  }
  withCommon(tk.command('retire'))
    .description('retire a decrypt-only version (after re-wrapping its data keys)')
    .argument('<tenant>', 'tenant id')
    .requiredOption('--version <n>', 'tenant key version')
    .action(async (tenant: string, flags: CommonFlags & { version: string }) => {
      const r = await withClient(flags, (c) =>
        c.call('retireTenantKeyVersion', { tenant, version: Number(flags.version) }),
      );
      print(flags, r, () => jsonish(r));
    });
  withCommon(tk.command('destroy'))
    .description('crypto-shred: schedule destruction after a grace period, or --now (irreversible)')
    .argument('<tenant>', 'tenant id')
    .option('--now', 'destroy at once, irreversibly')
    .option('--grace-seconds <n>', 'soft-deletion period before destruction')
    .action(async (tenant: string, flags: CommonFlags & { now?: boolean; graceSeconds?: string }) => {
      const r = await withClient(flags, (c) =>
        c.call('destroyTenantKey', {
          tenant,
          mode: flags.now ? 'now' : 'schedule',
          ...(flags.graceSeconds ? { graceSeconds: Number(flags.graceSeconds) } : {}),
        }),
      );
      print(flags, r, () => jsonish(r));
    });

  withCommon(keyd.command('data-key'))
    .description('generate a data key (diagnostics: prints only its id and wrapped size)')
    .argument('<tenant>', 'tenant id')
    .option('--purpose <p>', 'data | blind-index | audit-hmac | backup', 'data')
    .action(async (tenant: string, flags: CommonFlags & { purpose: string }) => {
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
    });

  withCommon(keyd.command('public-key'))
    .description('the Ed25519 verifier key for audit checkpoints (C2SP note verifier key)')
    .option('--purpose <p>', 'audit-checkpoint | deletion-certificate', 'audit-checkpoint')
    .action(async (flags: CommonFlags & { purpose: 'audit-checkpoint' | 'deletion-certificate' }) => {
      const k = await withClient(flags, (c) => c.call('publicKey', { purpose: flags.purpose }));
      print(
        flags,
        { name: k.name, verifierKey: k.verifierKey, publicKey: k.publicKey.toString('base64') },
        () => k.verifierKey,
      );
    });

  withCommon(keyd.command('log'))
    .description("keyd's own append-only operations log")
    .option('--from <seq>', 'first sequence number', '1')
    .option('--limit <n>', 'entries', '100')
    .action(async (flags: CommonFlags & { from: string; limit: string }) => {
      const r = await withClient(flags, (c) =>
        c.call('opsLog', { from: Number(flags.from), limit: Number(flags.limit) }),
      );
      if (flags.json) out(r, true);
      else
        for (const e of r.entries)
          out(`${e.seq}\t${e.at}\t${e.caller}\t${e.op}\t${e.tenant ?? '-'}\t${e.outcome}`, false);
    });

  withCommon(keyd.command('config'))
    .description('print the resolved keyd config (secrets shown only as file names)')
    .action((flags: CommonFlags) => {
      const c = redactedKeydConfig(config(flags));
      print(flags, c, () => JSON.stringify(c, null, 2));
    });
}
