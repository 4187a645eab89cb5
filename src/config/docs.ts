/**
 * docs/configuration.md, rendered from the config schema (server-schema.ts, keyd-schema.ts):
 * `npm run docs:config` writes it, and a test fails when the committed page differs, so the page
 * cannot drift from what the code accepts.
 */
import type { TSchema } from 'typebox';
import { CONFIG_FILE_SCHEMA } from './server-schema.ts';
import { dottedOf, expectation, kebab, type SettingInfo, sectionsOf, settingsOf } from './settings.ts';

/** TRESOR_* variables that are inputs of one command rather than settings of a process. */
export const COMMAND_VARIABLES: readonly { env: string; use: string }[] = [
  { env: 'TRESOR_CONFIG', use: 'The config file; the same as `--config`.' },
  {
    env: 'TRESOR_AUDIT_PUBLIC_KEY',
    use: '`tresor audit verify`: the checkpoint verifier key, as `GET /v1/audit/public-key` returns it, or `@file`.',
  },
  {
    env: 'TRESOR_DEV_KEYD_START_MS',
    use: '`tresor dev`: how long to wait for its keyd child to answer.',
  },
  {
    env: 'TRESOR_EXPORT_PASSPHRASE_FILE',
    use: '`tresor audit export` / `tresor audit verify`: a file holding the passphrase of an encrypted audit archive.',
  },
  {
    env: 'TRESOR_S3_ACCESS_KEY_ID_FILE',
    use: '`tresor restore` from `s3://…`: a file holding the access key id (or `--s3-access-key-id-file`; else `AWS_ACCESS_KEY_ID`).',
  },
  {
    env: 'TRESOR_S3_SECRET_ACCESS_KEY_FILE',
    use: '`tresor restore` from `s3://…`: a file holding the secret access key (or `--s3-secret-access-key-file`; else `AWS_SECRET_ACCESS_KEY`).',
  },
  {
    env: 'TRESOR_TOKEN',
    use: '`tresor status` and the commands that talk to a server (`tenant`, `person`, `token`, `apikey`, `backup`): the bearer credential, an operator token or a tenant API key (or `--token-file`; never a flag value). Unset, they use the profile’s session.',
  },
  {
    env: 'TRESOR_URL',
    use: 'The commands that talk to a server: its https origin (or `--url`; else the profile’s).',
  },
  {
    env: 'TRESOR_CA_FILE',
    use: 'The commands that talk to a server: the CA to trust for its certificate (or `--ca-file`; else the profile’s, else the system’s).',
  },
  {
    env: 'TRESOR_PROFILE',
    use: '`tresor login` and the commands that use its session: the profile file (or `--profile`; default `$XDG_CONFIG_HOME/tresor/profile.json` or `~/.config/tresor/profile.json`).',
  },

  {
    env: 'TRESOR_KEYD_WAIT_MS',
    use: '`tresor server`: how long to wait for keyd to answer before giving up (default 60 s; exit code 3).',
  },
];

/** A complete, valid config file for the page (a test checks it against the schema). */
export const EXAMPLE_CONFIG = {
  dataDir: '/var/lib/tresor',
  server: {
    host: '0.0.0.0',
    port: 8443,
    publicUrl: 'https://vault.example.com',
    tls: {
      certFile: '/etc/tresor/tls/server.crt',
      keyFile: '/etc/tresor/tls/server.key',
      keyPassphraseFile: '/etc/tresor/tls/server.key.pass',
    },
    trustProxy: ['10.0.0.0/8'],
    keyd: {
      address: '127.0.0.1:7443',
      clientCert: '/etc/tresor/keyd-client/server.crt',
      clientKey: '/etc/tresor/keyd-client/server.key',
      ca: '/etc/tresor/keyd-client/ca.crt',
    },
    audit: { origin: 'vault.example.com/audit' },
  },
  keyd: {
    dir: '/var/lib/tresor-keyd',
    provider: 'passphrase',
    listen: '127.0.0.1:7443',
    tlsCert: '/etc/tresor/keyd/keyd.crt',
    tlsKey: '/etc/tresor/keyd/keyd.key',
    tlsCa: '/etc/tresor/keyd/ca.crt',
    allowlist: '/etc/tresor/keyd/allowlist.json',
    passphraseFile: '/etc/tresor/keyd/passphrase',
  },
};

export function configurationMarkdown(schema: TSchema = CONFIG_FILE_SCHEMA): string {
  const settings = settingsOf(schema);
  const lines: string[] = [
    '# Configuration',
    '',
    '<!-- Generated from src/config/server-schema.ts and src/config/keyd-schema.ts by `npm run docs:config`. Do not edit by hand. -->',
    '',
    'Tresor’s processes read their settings from, highest precedence first: command-line flags,',
    '`TRESOR_*` environment variables, one JSON config file (named by `--config` or `TRESOR_CONFIG`;',
    '`tresor server` reads `dataDir` and `server`, `tresor keyd` reads `keyd`), and defaults.',
    '',
    '- **Validation.** A process checks everything at start and reports every problem at once, each',
    '  with its path in the file or its variable; unknown keys are errors (a misspelt setting is never',
    '  silently ignored). `tresor config check FILE` lists every problem of a file (its `keyd` section',
    '  included) together with the current environment, and exits 1; it prints `ok` and exits 0 when',
    '  the file is valid.',
    '- **Paths.** Relative paths in the config file are relative to the file’s folder (the `server`',
    '  section and `dataDir`; keyd reads them relative to its working directory); from flags and the',
    '  environment, to the working directory.',
    '- **Lists** are JSON arrays in the file and comma-separated in the environment.',
    '- **Secrets** come only from the environment or from a file named by their `*File` setting',
    '  (`*_FILE` variable); never from the config file or a flag, since command lines are visible to',
    '  every user of the machine. One trailing newline of a secret file is ignored. `tresor config',
    '  show` prints the resolved server configuration with every secret redacted.',
    '',
    '## Example',
    '',
    '```json',
    JSON.stringify(EXAMPLE_CONFIG, null, 2),
    '```',
  ];
  for (const section of sectionsOf(schema)) {
    const own = settings.filter((s) => parentOf(s.pointer) === section.pointer);
    if (own.length === 0) continue;
    lines.push('', `## ${section.pointer === '' ? 'Top level' : `\`${dottedOf(section.pointer)}\``}`, '');
    if (section.description) lines.push(section.description, '');
    lines.push(
      '| setting | environment | flag | value | default | description |',
      '|---|---|---|---|---|---|',
    );
    for (const s of own) lines.push(row(s));
  }
  lines.push(
    '',
    '## Variables of single commands',
    '',
    'These are inputs of one command, not settings of a process:',
    '',
    '| environment | use |',
    '|---|---|',
    ...COMMAND_VARIABLES.map((v) => `| \`${v.env}\` | ${cell(v.use)} |`),
    '',
  );
  return lines.join('\n');
}

function row(s: SettingInfo): string {
  const name = s.pointer.split('/').pop() ?? '';
  const value =
    s.secret === 'value'
      ? `**secret**, ${expectation(s.schema)}; environment or \`${name}File\` only`
      : s.secret === 'file'
        ? `path of a file holding a **secret**`
        : `${s.path ? 'path, ' : ''}${expectation(s.schema)}`;
  const fallback =
    s.schema.default !== undefined ? `\`${JSON.stringify(s.schema.default)}\`` : (s.defaultText ?? '');
  const flag = s.flag === undefined ? '' : `\`--${kebab(s.flag)}\``;
  return `| \`${name}\` | \`${s.env}\` | ${flag} | ${cell(value)} | ${cell(fallback)} | ${cell(s.description)} |`;
}

function parentOf(pointer: string): string {
  return pointer.slice(0, pointer.lastIndexOf('/'));
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}
