/**
 * `tresor keyd …`: run the key service, initialise and unseal it, and drive its admin operations
 * over its private channel. Secrets (passphrase, shares, PIN) come from stdin or *_FILE variables.
 *
 * This file only declares the commands; what they do is in keyd-impl.ts, loaded when one runs, so
 * `tresor --help` stays cheap.
 */
import type { Command } from 'commander';
import type { CommonFlags, KeydRestoreFlags, TenantKeyVerb } from './keyd-impl.ts';

const impl = () => import('./keyd-impl.ts');

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

export function registerKeydCommands(program: Command): void {
  const keyd = program
    .command('keyd')
    .description('the key service: root key, tenant keys, data keys, signing');

  withCommon(keyd.command('serve', { isDefault: true }))
    .description('run keyd in the foreground on its Unix socket (or TCP with mutual TLS)')
    .action(async (flags: CommonFlags) => (await impl()).serve(flags));

  withCommon(keyd.command('init'))
    .description('create the root keyring (shares and passphrases are read from stdin, never from argv)')
    .option('--shares <n>', 'Shamir: number of unseal shares', '5')
    .option('--threshold <m>', 'Shamir: shares needed to unseal', '3')
    .action(async (flags: CommonFlags & { shares: string; threshold: string }) => (await impl()).init(flags));

  withCommon(keyd.command('unseal'))
    .description('submit one unseal secret (passphrase, one Shamir share, or token PIN) read from stdin')
    .action(async (flags: CommonFlags) => (await impl()).unseal(flags));

  withCommon(keyd.command('seal'))
    .description('forget the root key until the next unseal')
    .action(async (flags: CommonFlags) => (await impl()).seal(flags));

  withCommon(keyd.command('status'))
    .description('seal state and health')
    .action(async (flags: CommonFlags) => (await impl()).status(flags));

  withCommon(keyd.command('rotate-root'))
    .description('new root key version; re-wraps every tenant key (no data rewrite)')
    .action(async (flags: CommonFlags) => (await impl()).rotateRoot(flags));

  withCommon(keyd.command('retire-root'))
    .description('forget an old root key version once nothing is wrapped by it')
    .requiredOption('--version <n>', 'root key version')
    .action(async (flags: CommonFlags & { version: string }) => (await impl()).retireRoot(flags));

  const tk = keyd.command('tenant-key').description("a tenant's key-encryption key");
  for (const [verb, description] of [
    ['create', 'create the tenant key'],
    ['status', 'versions, states and counts'],
    ['rotate', 'new active version; old versions keep decrypting until retired'],
    ['cancel-destroy', 'cancel a scheduled destruction'],
  ] as const satisfies readonly (readonly [TenantKeyVerb, string])[]) {
    withCommon(tk.command(verb))
      .description(description)
      .argument('<tenant>', 'tenant id')
      .action(async (tenant: string, flags: CommonFlags) => (await impl()).tenantKey(verb, tenant, flags));
  }
  withCommon(tk.command('retire'))
    .description('retire a decrypt-only version (after re-wrapping its data keys)')
    .argument('<tenant>', 'tenant id')
    .requiredOption('--version <n>', 'tenant key version')
    .action(async (tenant: string, flags: CommonFlags & { version: string }) =>
      (await impl()).retireTenantKey(tenant, flags),
    );
  withCommon(tk.command('destroy'))
    .description('crypto-shred: schedule destruction after a grace period, or --now (irreversible)')
    .argument('<tenant>', 'tenant id')
    .option('--now', 'destroy at once, irreversibly')
    .option('--grace-seconds <n>', 'soft-deletion period before destruction')
    .action(async (tenant: string, flags: CommonFlags & { now?: boolean; graceSeconds?: string }) =>
      (await impl()).destroyTenantKey(tenant, flags),
    );

  withCommon(keyd.command('data-key'))
    .description('generate a data key (diagnostics: prints only its id and wrapped size)')
    .argument('<tenant>', 'tenant id')
    .option('--purpose <p>', 'data | blind-index | audit-hmac | backup', 'data')
    .action(async (tenant: string, flags: CommonFlags & { purpose: string }) =>
      (await impl()).dataKey(tenant, flags),
    );

  const backup = keyd.command('backup').description("keyd's own backups (its store, apart from the data)");
  withCommon(backup.command('now'))
    .description('take a keyd backup now, to every keyd backup destination, then apply its retention')
    .action(async (flags: CommonFlags) => (await impl()).backupNow(flags));
  withCommon(backup.command('list'))
    .description('the keyd backups each keyd backup destination holds')
    .action(async (flags: CommonFlags) => (await impl()).backupList(flags));

  keyd
    .command('restore')
    .description(
      "restore keyd's folder from a keyd backup into an empty folder, offline, with the root key's secret(s)",
    )
    .requiredOption('--from <destination>', 'where the keyd backup is: a folder, or s3://bucket/prefix')
    .option('--backup <id>', 'the keyd backup to restore (default: the newest complete one)')
    .requiredOption('--to <folder>', "keyd's new folder: must not exist, or be empty")
    .option(
      '--secret-file <file>',
      'unseal secrets, one a line: the passphrase, Shamir shares, or the token PIN (default: standard input)',
    )
    .option('--dev-key-file <file>', 'dev-file backups: the dev-root.key kept apart (never in a backup)')
    .option(
      '--pkcs11-library <path>',
      'pkcs11 backups: the PKCS#11 module',
      '/usr/lib/softhsm/libsofthsm2.so',
    )
    .option('--pkcs11-token <label>', 'pkcs11 backups: the token label', 'tresor')
    .option(
      '--verifier-key <key>',
      'pin the signer: keyd’s backup-manifest verifier key (`tresor keyd public-key --purpose backup-manifest`)',
    )
    .option('--s3-endpoint <url>', 'the S3-compatible service URL (default: AWS S3)')
    .option('--s3-region <region>', 'the bucket region; env AWS_REGION (default us-east-1)')
    .option('--s3-path-style', 'path-style bucket URLs (default when --s3-endpoint is given)')
    .option(
      '--s3-access-key-id-file <file>',
      'a file holding the access key id; env TRESOR_S3_ACCESS_KEY_ID_FILE, else AWS_ACCESS_KEY_ID',
    )
    .option(
      '--s3-secret-access-key-file <file>',
      'a file holding the secret access key; env TRESOR_S3_SECRET_ACCESS_KEY_FILE, else AWS_SECRET_ACCESS_KEY',
    )
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      [
        '',
        'Exit codes:',
        '  0  restored: the target holds the checked keyd folder',
        '  1  refused or failed: no such backup, a check failed, the target is not empty, unseal failed',
        '  2  usage (bad flags, no credentials)',
      ].join('\n'),
    )
    .action(async (flags: KeydRestoreFlags) => (await impl()).restore(flags));

  withCommon(keyd.command('public-key'))
    .description('an Ed25519 verifier key of keyd (C2SP note verifier key)')
    .option('--purpose <p>', 'audit-checkpoint | deletion-certificate | backup-manifest', 'audit-checkpoint')
    .action(async (flags: CommonFlags & { purpose: 'audit-checkpoint' | 'deletion-certificate' }) =>
      (await impl()).publicKey(flags),
    );

  withCommon(keyd.command('log'))
    .description("keyd's own append-only operations log")
    .option('--from <seq>', 'first sequence number', '1')
    .option('--limit <n>', 'entries', '100')
    .action(async (flags: CommonFlags & { from: string; limit: string }) => (await impl()).log(flags));

  withCommon(keyd.command('config'))
    .description('print the resolved keyd config (secrets shown only as file names)')
    .action(async (flags: CommonFlags) => (await impl()).showConfig(flags));
}
