/**
 * The CLI profile: the console session `tresor login` saved, so later commands need no password.
 *
 *   --profile FILE, else env TRESOR_PROFILE, else $XDG_CONFIG_HOME/tresor/profile.json, else
 *   ~/.config/tresor/profile.json
 *
 * It holds the server's URL, the CA file to trust, the session cookie, its CSRF token and its
 * expiry: the cookie is a credential, so the file is written atomically with mode 0600 in a folder
 * made 0700, and never printed. `tresor logout` removes it.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { writeFileAtomic } from '../keyd/root/atomic-file.ts';

export interface Profile {
  url: string;
  caFile?: string;
  /** The value of the `__Host-tresor_session` cookie. */
  cookie: string;
  csrf: string;
  /** When the session ends at the latest (its absolute expiry). */
  expiresAt: string;
  email: string;
  personId: string;
}

export function profilePath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag) return resolve(flag);
  if (env.TRESOR_PROFILE) return resolve(env.TRESOR_PROFILE);
  const base = env.XDG_CONFIG_HOME ? env.XDG_CONFIG_HOME : join(homedir(), '.config');
  return join(base, 'tresor', 'profile.json');
}

function isProfile(value: unknown): value is Profile {
  const p = value as Partial<Profile> | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.url === 'string' &&
    typeof p.cookie === 'string' &&
    typeof p.csrf === 'string' &&
    typeof p.expiresAt === 'string' &&
    (p.caFile === undefined || typeof p.caFile === 'string')
  );
}

/** The saved profile, or undefined when there is none or it is not one (never its contents in an error). */
export function readProfile(path: string): Profile | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return isProfile(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export function saveProfile(path: string, profile: Profile): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(path, `${JSON.stringify(profile, null, 2)}\n`, 0o600);
}

export function removeProfile(path: string): void {
  rmSync(path, { force: true });
}
