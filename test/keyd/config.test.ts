/**
 * keyd's root-key choice: there is no default provider, the dev file needs an explicit flag that
 * says it is insecure, and it never serves on a TCP listener.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkRootKeyChoice, resolveKeydConfig } from '../../src/keyd/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'tresor-keyd-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const invalid = (pattern: RegExp) => (err: unknown) => {
  assert.equal((err as { code?: string }).code, 'TRESOR_ERR_CONFIG_INVALID');
  assert.match((err as Error).message, pattern);
  return true;
};

/** The TCP listener settings that pass the listen check, so that only the provider is judged. */
function tcpFlags(): Record<string, unknown> {
  const allowlist = join(dir, 'allowlist.json');
  writeFileSync(allowlist, '[]');
  return {
    listen: '127.0.0.1:7000',
    tlsCert: join(dir, 'cert.pem'),
    tlsKey: join(dir, 'key.pem'),
    tlsCa: join(dir, 'ca.pem'),
    allowlist,
  };
}

describe('keyd root-key choice', () => {
  it('has no default provider: the check names the production choices and the dev flag', () => {
    const config = resolveKeydConfig({ dir }, {});
    assert.equal(config.provider, undefined);
    assert.throws(
      () => checkRootKeyChoice(config),
      invalid(/--provider passphrase \| shamir \| pkcs11.*--insecure-dev-key-file/),
    );
  });

  it('takes a production provider from the flag or TRESOR_KEYD_PROVIDER', () => {
    assert.equal(checkRootKeyChoice(resolveKeydConfig({ dir, provider: 'passphrase' }, {})), 'passphrase');
    assert.equal(
      checkRootKeyChoice(resolveKeydConfig({ dir }, { TRESOR_KEYD_PROVIDER: 'shamir' })),
      'shamir',
    );
  });

  it('refuses the dev file without the insecure flag', () => {
    const config = resolveKeydConfig({ dir, provider: 'dev-file' }, {});
    assert.equal(config.insecureDevKeyFile, false);
    assert.throws(() => checkRootKeyChoice(config), invalid(/needs --insecure-dev-key-file/));
  });

  it('accepts the dev file on a Unix socket with the flag or TRESOR_KEYD_INSECURE_DEV_KEY_FILE=1', () => {
    const byFlag = resolveKeydConfig({ dir, provider: 'dev-file', insecureDevKeyFile: true }, {});
    assert.equal(checkRootKeyChoice(byFlag), 'dev-file');
    const byEnv = resolveKeydConfig(
      { dir, provider: 'dev-file' },
      { TRESOR_KEYD_INSECURE_DEV_KEY_FILE: '1' },
    );
    assert.equal(checkRootKeyChoice(byEnv), 'dev-file');
  });

  it('refuses the dev file on a TCP listener, even with the flag', () => {
    const config = resolveKeydConfig(
      { dir, provider: 'dev-file', insecureDevKeyFile: true, ...tcpFlags() },
      {},
    );
    assert.equal(config.listen.kind, 'tls');
    assert.throws(
      () => checkRootKeyChoice(config),
      invalid(/refusing the dev-file provider on a TCP listener/),
    );
  });

  it('refuses an unknown provider name', () => {
    assert.throws(
      () => resolveKeydConfig({ dir, provider: 'plain' }, {}),
      invalid(/provider must be one of/),
    );
  });
});

describe("keyd's own backups in its config", () => {
  it('defaults to two folders under its own folder, every 360 minutes, kept 1 and 7 days', () => {
    const config = resolveKeydConfig({ dir }, {});
    assert.deepEqual(config.backup, {
      intervalMinutes: 360,
      destinations: [
        {
          name: 'a',
          kind: 'folder',
          path: join(dir, 'backups', 'a'),
          retention: { keepAllDays: 1, keepDailyDays: 7 },
        },
        {
          name: 'b',
          kind: 'folder',
          path: join(dir, 'backups', 'b'),
          retention: { keepAllDays: 1, keepDailyDays: 7 },
        },
      ],
      defaultDestinations: true,
    });
  });

  it('takes destinations from the config file (paths against its folder) or the environment as JSON', () => {
    const file = join(dir, 'tresor.json');
    writeFileSync(
      file,
      JSON.stringify({
        keyd: {
          backup: {
            intervalMinutes: 60,
            destinations: [
              { name: 'near', kind: 'folder', path: 'keyd-backups', retention: { keepDailyDays: 3 } },
              {
                name: 'far',
                kind: 's3',
                region: 'eu-1',
                bucket: 'keyd',
                accessKeyIdFile: 'id',
                secretAccessKeyFile: 'secret',
              },
            ],
          },
        },
      }),
    );
    const config = resolveKeydConfig({ dir, config: file }, {});
    assert.equal(config.backup?.intervalMinutes, 60);
    assert.equal(config.backup?.defaultDestinations, false);
    assert.deepEqual(config.backup?.destinations[0], {
      name: 'near',
      kind: 'folder',
      path: join(dir, 'keyd-backups'),
      retention: { keepAllDays: 1, keepDailyDays: 3 },
    });
    assert.deepEqual(config.backup?.destinations[1], {
      name: 'far',
      kind: 's3',
      region: 'eu-1',
      bucket: 'keyd',
      prefix: '',
      forcePathStyle: false,
      accessKeyIdFile: join(dir, 'id'),
      secretAccessKeyFile: join(dir, 'secret'),
      timeoutSeconds: 60,
      retention: { keepAllDays: 1, keepDailyDays: 7 },
    });
    const fromEnv = resolveKeydConfig(
      { dir, config: file },
      {
        TRESOR_KEYD_BACKUP_DESTINATIONS: '[{"name":"x","kind":"folder","path":"/srv/keyd"}]',
        TRESOR_KEYD_BACKUP_INTERVAL_MINUTES: '0',
      },
    );
    assert.equal(fromEnv.backup?.intervalMinutes, 0);
    assert.deepEqual(
      fromEnv.backup?.destinations.map((d) => d.name),
      ['x'],
    );
  });

  it('refuses bad destinations clearly, naming the entry and never a value', () => {
    const env = (list: string) => ({ TRESOR_KEYD_BACKUP_DESTINATIONS: list });
    for (const [list, pattern] of [
      ['not json', /must be a JSON list/],
      ['[]', /1 to 16 destinations/],
      ['[{"name":"A","kind":"folder","path":"/x"}]', /destination 0\.name/],
      ['[{"name":"a","kind":"ftp","path":"/x"}]', /destination 0\.kind/],
      ['[{"name":"a","kind":"folder","path":"/x"},{"name":"a","kind":"folder","path":"/y"}]', /used twice/],
      ['[{"name":"a","kind":"folder","path":"/x","retention":{"keepAllDays":-1}}]', /retention\.keepAllDays/],
      ['[{"name":"a","kind":"s3","region":"r","bucket":"b","accessKeyIdFile":"i"}]', /secretAccessKeyFile/],
      ['[{"name":"a","kind":"folder","path":"/x","secret":"hunter2"}]', /unknown field/],
    ] as const) {
      assert.throws(() => resolveKeydConfig({ dir }, env(list)), invalid(pattern), list);
    }
    assert.throws(
      () => resolveKeydConfig({ dir }, { TRESOR_KEYD_BACKUP_INTERVAL_MINUTES: '-5' }),
      invalid(/backup\.intervalMinutes/),
    );
    try {
      resolveKeydConfig({ dir }, env('[{"name":"a","kind":"folder","path":"/x","secret":"hunter2"}]'));
    } catch (err) {
      assert.equal((err as Error).message.includes('hunter2'), false);
    }
  });
});
