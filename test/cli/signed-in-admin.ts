/**
 * TEST-ONLY. The first operator admin of a test stack, made the way the operations guide makes it
 * and only with the CLI: `tresor init` on the data folder, `tresor enrol` and `tresor enrol confirm`
 * with real TOTP codes (oathtool), `tresor login` into a profile file of its own. Every secret met
 * on the way is collected, so tests can prove none reaches a command's output.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SESSION_COOKIE, totpCodes } from '../helpers/console.ts';
import type { TresorStack } from '../helpers/tresor-stack.ts';
import { exited, type Run, tresor } from './cli-run.ts';

export const ADMIN_PASSWORD = 'amber trellis 9 quietly';

export interface SignedInAdmin {
  email: string;
  personId: string;
  /** Files of the admin's secrets. */
  files: { link: string; password: string; totpSecret: string; recoveryCodes: string; profile: string };
  totpSecret: string;
  /**
   * The secrets of two more TOTP factors added over HTTP after the login (the tests here spend a
   * dozen codes: with three factors, codes come three times as fast). The server tries each.
   */
  moreTotpSecrets: string[];
  /** The environment of a command run as this admin: the profile, URL and CA in TRESOR_* variables. */
  env: NodeJS.ProcessEnv;
  secrets: string[];
  nextCode(): Promise<string>;
  /** Every run so far (for the no-secret checks). */
  runs: Run[];
  run(args: string[], env?: NodeJS.ProcessEnv): Promise<Run>;
}

export async function signedInAdmin(
  s: TresorStack,
  dir: string,
  email = 'admin@cli.test',
): Promise<SignedInAdmin> {
  const files = {
    link: join(dir, 'enrol-link'),
    password: join(dir, 'admin-password'),
    totpSecret: join(dir, 'admin-totp'),
    recoveryCodes: join(dir, 'admin-recovery-codes'),
    profile: join(dir, 'profile.json'),
  };
  const runs: Run[] = [];
  const env = { TRESOR_PROFILE: files.profile, TRESOR_URL: s.url, TRESOR_CA_FILE: s.caFile };
  const run = async (args: string[], extra: NodeJS.ProcessEnv = {}) => {
    const r = await tresor(args, { env: { ...env, ...extra } });
    runs.push(r);
    return r;
  };
  const { nextCodeOf } = totpCodes();

  const init = exited(
    await run(['init', '--data-dir', s.dataDir, '--email', email, '--out-file', files.link]),
    0,
  );
  const personId = /\((psn_[0-9a-f]{24})\)/.exec(init.stdout)?.[1];
  assert.ok(personId, init.stdout);
  writeFileSync(files.password, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
  // The link names the configured console origin; the test server listens on a port of its own.
  const begun = exited(
    await run([
      'enrol',
      '--link-file',
      files.link,
      '--password-file',
      files.password,
      '--totp-secret-file',
      files.totpSecret,
      '--json',
    ]),
    0,
  );
  const { factorId } = JSON.parse(begun.stdout) as { factorId: string };
  const totpSecret = readFileSync(files.totpSecret, 'utf8').trim();
  const totpSecrets = [totpSecret];
  const code = () => nextCodeOf(totpSecrets);
  exited(
    await run([
      'enrol',
      'confirm',
      '--link-file',
      files.link,
      '--factor-id',
      factorId,
      '--code',
      await code(),
      '--recovery-codes-file',
      files.recoveryCodes,
    ]),
    0,
  );
  exited(
    await run(['login', '--email', email, '--password-file', files.password, '--code', await code()]),
    0,
  );
  const token = /#enrol=([A-Za-z0-9_-]{43})/.exec(readFileSync(files.link, 'utf8'))?.[1] ?? '';
  const profile = JSON.parse(readFileSync(files.profile, 'utf8')) as { cookie: string; csrf: string };
  const moreTotpSecrets: string[] = [];
  for (const label of ['second', 'third']) {
    const headers = { cookie: `${SESSION_COOKIE}=${profile.cookie}`, 'x-csrf-token': profile.csrf };
    const added = await s.request('POST', '/v1/factors/totp', { headers, body: { label } });
    assert.equal(added.status, 200, added.text);
    const { factorId: id, secret } = added.json<{ factorId: string; secret: string }>();
    const confirmed = await s.request('POST', '/v1/factors/totp/confirm', {
      headers,
      body: { factorId: id, code: await nextCodeOf([secret]) },
    });
    assert.equal(confirmed.status, 200, confirmed.text);
    moreTotpSecrets.push(secret);
    totpSecrets.push(secret);
  }
  const secrets = [
    token,
    ADMIN_PASSWORD,
    totpSecret,
    ...moreTotpSecrets,
    ...readFileSync(files.recoveryCodes, 'utf8').trim().split('\n'),
    profile.cookie,
    profile.csrf,
  ];
  return { email, personId, files, totpSecret, moreTotpSecrets, env, secrets, nextCode: code, runs, run };
}
