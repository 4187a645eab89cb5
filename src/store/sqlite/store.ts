/**
 * SQLite backend of Store: a write connection and a WAL reader connection on one file, migrations
 * applied at open. (First version: one transaction per write(); group commit replaces it.)
 */
import { Kysely, Migrator, SqliteDialect, type Transaction } from 'kysely';
import type { Migrations, Store } from '../types.ts';
import { openSqlite } from './open.ts';

export async function openSqliteStore<DB>(path: string, migrations: Migrations): Promise<Store<DB>> {
  const writer = new Kysely<DB>({ dialect: new SqliteDialect({ database: openSqlite(path) }) });
  const migrator = new Migrator({
    db: writer as Kysely<unknown>,
    provider: { getMigrations: async () => migrations },
  });
  const { error } = await migrator.migrateToLatest();
  if (error) {
    await writer.destroy();
    throw error;
  }
  const readerDb = openSqlite(path);
  const reader = new Kysely<DB>({ dialect: new SqliteDialect({ database: readerDb }) });
  return {
    location: path,
    db: reader,
    write<T>(work: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
      return writer.transaction().execute(work);
    },
    async healthy() {
      try {
        readerDb.prepare('SELECT 1').get();
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await writer.destroy();
      await reader.destroy();
    },
  };
}
