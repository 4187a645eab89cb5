/** What `tresor login` and `tresor logout` do (login.ts declares them). */
import { CliFailure, call, checkCode, connect, profileOf, reauthenticate } from './api-client.ts';
import { info, out, readSecret, readSecretFile, usageError } from './io.ts';
import { profilePath, readProfile, removeProfile, saveProfile } from './profile.ts';

export interface LoginFlags {
  url?: string;
  caFile?: string;
  profile?: string;
  json?: boolean;
  email: string;
  passwordFile: string;
  code?: string;
  tenant?: string;
}

export type LogoutFlags = Omit<LoginFlags, 'email' | 'passwordFile' | 'code' | 'tenant'>;
export type StepUpFlags = LogoutFlags & { code?: string };
export type PasswordFlags = StepUpFlags & { currentPasswordFile: string; newPasswordFile: string };

async function totpCode(command: string, flag: string | undefined): Promise<string> {
  if (flag !== undefined) return checkCode(command, flag) ?? '';
  if (!process.stdin.isTTY) throw usageError(command, 'give --code with a current TOTP code');
  return checkCode(command, (await readSecret('TOTP code: ')).trim()) ?? '';
}

export async function loginCommand(flags: LoginFlags): Promise<void> {
  const command = 'tresor login';
  const password = readSecretFile(command, '--password-file', flags.passwordFile);
  if (password === '') throw usageError(command, '--password-file is empty');
  const code = await totpCode(command, flags.code);
  const conn = connect(command, flags, { credential: 'none' });
  const account = {
    side: flags.tenant === undefined ? 'operator' : 'customer',
    email: flags.email,
    ...(flags.tenant !== undefined ? { tenant: flags.tenant } : {}),
  };
  const begun = await call<{ handle: string }>(conn, 'POST', '/v1/auth/login', { ...account, password });
  const done = await call(conn, 'POST', '/v1/auth/login/second-factor', {
    handle: begun.body.handle,
    totp: code,
  });
  const profile = profileOf(done.headers, done.body, {
    url: conn.base.origin,
    caFile: conn.caFile,
    email: flags.email,
  });
  if (!profile) throw new CliFailure('the server answered the login with no session');
  const path = profilePath(flags.profile);
  saveProfile(path, profile);
  if (flags.json)
    out(
      { personId: profile.personId, email: profile.email, expiresAt: profile.expiresAt, profile: path },
      true,
    );
  else
    out(
      `signed in as ${profile.email} (${profile.personId}) until ${profile.expiresAt}; session saved to ${path}`,
      false,
    );
}

export async function logoutCommand(flags: LogoutFlags): Promise<void> {
  const command = 'tresor logout';
  const path = profilePath(flags.profile);
  const profile = readProfile(path);
  if (!profile) {
    info(`${command}: no session saved in ${path}`);
    return;
  }
  // Always the profile's session, whatever TRESOR_TOKEN holds: that is what logout ends.
  const conn = connect(command, flags, { credential: 'none' });
  conn.credential = { kind: 'session', profile, path };
  try {
    await call(conn, 'POST', '/v1/auth/logout');
  } catch (err) {
    // A session the server no longer knows has ended already; anything else keeps the profile to retry.
    if (!(err instanceof CliFailure && err.code === 'TRESOR_ERR_UNAUTHENTICATED')) throw err;
  }
  removeProfile(path);
  if (flags.json) out({ loggedOut: true, profile: path }, true);
  else out(`signed out; ${path} removed`, false);
}

export async function stepUpCommand(flags: StepUpFlags): Promise<void> {
  const command = 'tresor step-up';
  const path = profilePath(flags.profile);
  const profile = readProfile(path);
  if (!profile) throw usageError(command, `no session saved in ${path}: run tresor login`);
  const code = await totpCode(command, flags.code);
  const conn = connect(command, flags, { credential: 'none' });
  const credential = { kind: 'session' as const, profile, path };
  await reauthenticate(conn, credential, code);
  if (flags.json) out({ personId: credential.profile.personId, fresh: true }, true);
  else out('second factor passed: steps that need it are open for 5 minutes', false);
}

export async function passwordCommand(flags: PasswordFlags): Promise<void> {
  const command = 'tresor password';
  if (flags.currentPasswordFile === '-' && flags.newPasswordFile === '-')
    throw usageError(command, 'only one of the password files can be - (stdin)');
  const path = profilePath(flags.profile);
  const profile = readProfile(path);
  if (!profile) throw usageError(command, `no session saved in ${path}: run tresor login`);
  const currentPassword = readSecretFile(command, '--current-password-file', flags.currentPasswordFile);
  const newPassword = readSecretFile(command, '--new-password-file', flags.newPasswordFile);
  if (currentPassword === '' || newPassword === '') throw usageError(command, 'a password file is empty');
  // Always the profile's session, whatever TRESOR_TOKEN holds: a person changes their own password.
  const conn = connect(command, flags, { credential: 'none' });
  const credential = { kind: 'session' as const, profile, path };
  conn.credential = credential;
  const done = await call(conn, 'POST', '/v1/auth/password', { currentPassword, newPassword });
  const renewed = profileOf(done.headers, done.body, {
    url: credential.profile.url,
    caFile: credential.profile.caFile,
    email: credential.profile.email,
  });
  if (!renewed) throw new CliFailure('the server answered the password change with no session');
  saveProfile(path, renewed);
  if (flags.json) out({ personId: renewed.personId, passwordChanged: true, profile: path }, true);
  else out(`password changed; every other session ended; this session renewed and saved to ${path}`, false);
}
