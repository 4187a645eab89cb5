/**
 * The config schema is the one source of the settings: unknown keys are errors with their path,
 * every problem is reported at once, every TRESOR_* variable maps onto its schema path, secrets
 * come from their *_FILE and are never shown, and the code uses no TRESOR_* variable that is
 * neither a setting nor a documented command input.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Value } from 'typebox/value';
import { COMMAND_VARIABLES, EXAMPLE_CONFIG } from '../../src/config/docs.ts';
import {
  checkConfigFile,
  redactedServerConfig,
  resolveServerConfig,
} from '../../src/config/server-config.ts';
import { CONFIG_FILE_SCHEMA } from '../../src/config/server-schema.ts';
import { type SettingInfo, settingsOf } from '../../src/config/settings.ts';
import { gatherSettings } from '../../src/config/sources.ts';
import { problemsOf, writeConfigFile } from './fixture.ts';

const SETTINGS = settingsOf(CONFIG_FILE_SCHEMA);
const REPO = join(import.meta.dirname, '..', '..');

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tresor-schema-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const configFile = (content: unknown) => writeConfigFile(dir, content);

/** A valid value of a setting, as text (what the environment gives) and as the file holds it. */
function sample(s: SettingInfo): { text: string; value: unknown } {
  const schema = s.schema;
  if (Array.isArray(schema.enum)) return { text: String(schema.enum[1]), value: schema.enum[1] };
  if (schema.type === 'integer' || schema.type === 'number') {
    const n = (schema.maximum as number | undefined) ?? (schema.minimum as number) + 1;
    return { text: String(n), value: n };
  }
  if (schema.type === 'array' && (schema.items as { type?: string }).type !== 'string') {
    // A list of objects (backup destinations) is JSON in the environment.
    const value = [{ name: 'a', kind: 'folder', path: '/backups/a' }];
    return { text: JSON.stringify(value), value };
  }
  if (schema.type === 'array') return { text: 'a, b', value: ['a', 'b'] };
  if (schema.type === 'boolean') return { text: '1', value: true };
  return { text: 'some/value', value: s.path ? resolve('some/value') : 'some/value' };
}

describe('config schema', () => {
  it('names each setting of a process with its own TRESOR_* variable; every secret has a *_FILE variant', () => {
    for (const ofKeyd of [false, true]) {
      const envs = SETTINGS.filter((s) => s.pointer.startsWith('/keyd/') === ofKeyd).map((s) => s.env);
      assert.equal(new Set(envs).size, envs.length);
      for (const env of envs) assert.match(env, /^TRESOR_[A-Z0-9_]+$/);
    }
    for (const s of SETTINGS.filter((x) => x.secret === 'value')) {
      const viaFile = SETTINGS.find((f) => f.secretOf === s.pointer);
      assert.equal(viaFile?.env, `${s.env}_FILE`, s.dotted);
      assert.equal(s.flag, undefined, `${s.dotted}: a secret never has a flag`);
    }
  });

  it('maps each variable onto its path, converted to its type (table over the mapping)', () => {
    for (const s of SETTINGS) {
      if (s.secret === 'file') continue;
      const { text, value } = sample(s);
      const g = gatherSettings(CONFIG_FILE_SCHEMA, {}, { [s.env]: text });
      assert.deepEqual(g.problems, [], s.env);
      assert.deepEqual(g.values.get(s.pointer), value, `${s.env} → ${s.dotted}`);
      assert.equal(g.from.get(s.pointer), `env ${s.env}`);
      // One variable may serve both processes: TRESOR_KEYD_SOCKET is the socket keyd listens on
      // and the server dials.
      const sharing = SETTINGS.filter((x) => x.env === s.env).map((x) => x.pointer);
      assert.deepEqual([...g.values.keys()].toSorted(), sharing.toSorted(), `${s.env} sets nothing else`);
    }
  });

  it('maps each flag onto its path, above the variable', () => {
    const flagged = SETTINGS.filter((s) => s.flag !== undefined && !s.pointer.startsWith('/keyd/'));
    assert.ok(flagged.length >= 9);
    for (const s of flagged) {
      const { text, value } = sample(s);
      const g = gatherSettings(CONFIG_FILE_SCHEMA, { [s.flag ?? '']: text }, { [s.env]: text.slice(1) });
      assert.deepEqual(g.values.get(s.pointer), value, `--${s.flag} → ${s.dotted}`);
      assert.match(g.from.get(s.pointer) ?? '', /^flag --/);
    }
  });

  it('uses no TRESOR_* variable in the code that is neither a setting nor a documented command input', () => {
    const known = new Set([...SETTINGS.map((s) => s.env), ...COMMAND_VARIABLES.map((v) => v.env)]);
    const used = new Set<string>();
    const walk = (folder: string): void => {
      for (const name of readdirSync(folder)) {
        const path = join(folder, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith('.ts'))
          for (const m of readFileSync(path, 'utf8').matchAll(/\bTRESOR_[A-Z0-9_]*[A-Z0-9]\b/g))
            used.add(m[0]);
      }
    };
    walk(join(REPO, 'src'));
    const unmapped = [...used].filter(
      (v) => !v.startsWith('TRESOR_ERR_') && v !== 'TRESOR_CODE' && v !== 'TRESOR_KEYD' && !known.has(v),
    );
    assert.deepEqual(unmapped, []);
  });

  it('refuses an unknown key anywhere in the file, naming its path', () => {
    const file = configFile({
      colour: 'red',
      server: { tls: { certFlie: 'c.pem' }, console: { login: { lockout: 3 } } },
      keyd: { provder: 'pkcs11' },
    });
    const problems = checkConfigFile(file, {});
    assert.ok(problems.includes('config file: unknown setting colour'), problems.join('\n'));
    assert.ok(problems.includes('config file: unknown setting server.tls.certFlie'));
    assert.ok(problems.includes('config file: unknown setting server.console.login.lockout'));
    assert.ok(problems.includes('config file: unknown setting keyd.provder'));
    assert.equal(problems.length, 4);
  });

  it('reports several errors at once, each with its path, the value never repeated', () => {
    const file = configFile({
      dataDir: 7,
      server: {
        port: 70_000,
        trustProxy: ['10.0.0.1', ''],
        rateLimit: 'fast',
        logLevel: 'chatty-secret-word',
        access: { maxGrantMinutes: 0 },
      },
      keyd: { tenantKeyCryptoperiodDays: 0 },
    });
    const problems = checkConfigFile(file, { TRESOR_CLOSE_GRACE_DAYS: 'many' });
    assert.deepEqual(problems.toSorted(), [
      'config file dataDir must be a non-empty string',
      'config file keyd.tenantKeyCryptoperiodDays must be a number of at least 1',
      'config file server.access.maxGrantMinutes must be an integer from 1 to 10080',
      'config file server.logLevel must be one of fatal, error, warn, info, debug, trace, silent',
      'config file server.port must be an integer from 0 to 65535',
      'config file server.rateLimit must be an object',
      'config file server.trustProxy[1] must be a non-empty string',
      'env TRESOR_CLOSE_GRACE_DAYS must be an integer from 0 to 3650 (server.closeGraceDays)',
    ]);
  });

  it('reads a secret from its *_FILE (variable or file entry) and never shows it', () => {
    const secretFile = join(dir, 'key.pass');
    writeFileSync(secretFile, 'hunter2-very-secret\n', { mode: 0o600 });
    const viaEnv = resolveServerConfig(
      { tlsCert: 'c.pem', tlsKey: 'k.pem' },
      { TRESOR_TLS_KEY_PASSPHRASE_FILE: secretFile },
    );
    assert.equal(viaEnv.tls.kind === 'files' && viaEnv.tls.keyPassphrase, 'hunter2-very-secret');
    const file = configFile({
      server: { tls: { certFile: 'c.pem', keyFile: 'k.pem', keyPassphraseFile: 'key.pass' } },
    });
    const viaFile = resolveServerConfig({ config: file }, {});
    assert.equal(viaFile.tls.kind === 'files' && viaFile.tls.keyPassphrase, 'hunter2-very-secret');
    assert.doesNotMatch(JSON.stringify(redactedServerConfig(viaFile)), /hunter2/);

    const missing = problemsOf(() =>
      resolveServerConfig({ tlsCert: 'c', tlsKey: 'k' }, { TRESOR_TLS_KEY_PASSPHRASE_FILE: join(dir, 'no') }),
    );
    assert.deepEqual(missing, ['env TRESOR_TLS_KEY_PASSPHRASE_FILE: cannot read the secret file']);
    assert.match(
      problemsOf(() => resolveServerConfig({}, { TRESOR_TLS_KEY_PASSPHRASE: 'hunter2-very-secret' })).join(),
      /passphrase is set but no TLS key file/,
    );
  });

  it('never names a secret value in a problem', () => {
    const file = configFile({
      server: { tls: { certFile: 'c', keyFile: 'k', keyPassphrase: 'hunter2-in-file' } },
    });
    const problems = checkConfigFile(file, {});
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /server\.tls\.keyPassphrase: secrets do not belong/);
    assert.doesNotMatch(problems.join(), /hunter2/);
  });

  it('accepts the documented example', () => {
    assert.ok(Value.Check(CONFIG_FILE_SCHEMA, EXAMPLE_CONFIG));
  });
});
