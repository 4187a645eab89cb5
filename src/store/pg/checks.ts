/**
 * What a PostgreSQL database must be before Tresor keeps data in it; checked on every open, and
 * the store refuses to open otherwise (with the setting to change in the message).
 *
 * - Durability: `fsync` on (without it a power cut can lose or corrupt commits that were
 *   acknowledged) and `synchronous_commit` on for this connection (set by the pool; checked here so
 *   a server or role default cannot override it unseen).
 * - Byte-order text: the database's collation and character classification are `C` (or `POSIX`),
 *   i.e. strings compare by their UTF-8 bytes, as SQLite compares them. Cursors and ids are compared
 *   and ordered as text (`WHERE id > $cursor ORDER BY id`), and a locale collation would page
 *   differently on the two backends or skip rows. Checking the database rather than adding
 *   COLLATE "C" to every text column also covers expressions (coalesce(), text pulled out of JSON,
 *   literals), which a column collation does not reach; and LC_CTYPE C makes lower() change only
 *   ASCII letters, as SQLite's does (people.email's CHECK relies on it).
 */
import { TresorError } from '../../errors.ts';

export interface PgDatabaseFacts {
  fsync: string;
  synchronousCommit: string;
  /** pg_database.datlocprovider: 'c' libc, 'i' ICU, 'b' builtin (PostgreSQL 17+); absent before 15. */
  localeProvider: string | null;
  collate: string;
  ctype: string;
  database: string;
  encoding: string;
}

export const PG_FACTS_QUERY = `SELECT current_setting('fsync') AS fsync,
  current_setting('synchronous_commit') AS synchronous_commit,
  to_jsonb(d) ->> 'datlocprovider' AS locale_provider,
  d.datcollate AS collate, d.datctype AS ctype, d.datname AS database,
  pg_encoding_to_char(d.encoding) AS encoding
  FROM pg_database d WHERE d.datname = current_database()`;

const BYTE_ORDER_LOCALES = new Set(['C', 'POSIX']);

/** Throws TRESOR_ERR_CONFIG_INVALID naming what is wrong, or returns. */
export function assertUsableDatabase(facts: PgDatabaseFacts): void {
  if (facts.fsync !== 'on') {
    throw new TresorError(
      'TRESOR_ERR_CONFIG_INVALID',
      `PostgreSQL runs with fsync = ${facts.fsync}: acknowledged writes would not survive a power cut; set fsync = on in postgresql.conf`,
    );
  }
  if (facts.synchronousCommit !== 'on') {
    throw new TresorError(
      'TRESOR_ERR_CONFIG_INVALID',
      `PostgreSQL connection runs with synchronous_commit = ${facts.synchronousCommit}, not on: acknowledged writes could be lost`,
    );
  }
  if (facts.encoding !== 'UTF8') {
    throw new TresorError(
      'TRESOR_ERR_CONFIG_INVALID',
      `PostgreSQL database ${facts.database} has encoding ${facts.encoding}; Tresor needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')`,
    );
  }
  const provider = facts.localeProvider ?? 'c';
  const byteOrder =
    (provider === 'c' || provider === 'b') &&
    BYTE_ORDER_LOCALES.has(facts.collate) &&
    BYTE_ORDER_LOCALES.has(facts.ctype);
  if (!byteOrder) {
    throw new TresorError(
      'TRESOR_ERR_CONFIG_INVALID',
      `PostgreSQL database ${facts.database} sorts text by ${facts.collate} (ctype ${facts.ctype}, provider ${provider}); Tresor needs byte order: CREATE DATABASE … TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`,
    );
  }
}

export function factsFromRow(row: Record<string, unknown>): PgDatabaseFacts {
  const text = (key: string) => String(row[key] ?? '');
  return {
    fsync: text('fsync'),
    synchronousCommit: text('synchronous_commit'),
    localeProvider:
      row.locale_provider === null || row.locale_provider === undefined ? null : text('locale_provider'),
    collate: text('collate'),
    ctype: text('ctype'),
    database: text('database'),
    encoding: text('encoding'),
  };
}
