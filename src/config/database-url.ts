/**
 * The PostgreSQL URL of `database.url` (TRESOR_DATABASE_URL). It may carry a password, so it is a
 * secret-bearing value: what is shown of it anywhere (config show, logs, errors, the audit log's
 * config digests) is `redactDatabaseUrl`'s form, with the password replaced; problems with it
 * name the setting, never the value.
 */

export interface DatabaseTarget {
  /** The URL as configured (password included): for the PostgreSQL client only. */
  url: string;
  /** The same URL with its password replaced: for every message, log and listing. */
  shown: string;
}

const REDACTED_PASSWORD = 'redacted';

/** `url` with its password (if any) replaced; anything that does not parse is withheld whole. */
export function redactDatabaseUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '[redacted: not a URL]';
  }
  if (u.password !== '') u.password = REDACTED_PASSWORD;
  // A password may also ride in the query (`?password=`): withheld the same way.
  for (const key of [...u.searchParams.keys()])
    if (key.toLowerCase() === 'password') u.searchParams.set(key, REDACTED_PASSWORD);
  return u.toString();
}

/**
 * Why `url` is not a usable PostgreSQL URL, in words that never repeat it (null when it is):
 * `postgres://` or `postgresql://`, a host, and a database name.
 */
export function databaseUrlProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:')
    return 'must be a postgres:// (or postgresql://) URL';
  if (u.hostname === '') return 'must name the database host';
  const name = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (name === '' || name.includes('/')) return 'must name one database (postgres://host/database)';
  return null;
}

/** The configured database and its shown form. */
export function databaseTarget(url: string): DatabaseTarget {
  return { url, shown: redactDatabaseUrl(url) };
}
