/**
 * TEST-ONLY. Which storage backend a test run uses: `TRESOR_TEST_BACKEND=sqlite|postgres` (default
 * sqlite). scripts/run-tests.mjs runs the files whose first line says `// backends: sqlite postgres`
 * a second time with `postgres`. On postgres, every stack or store a helper makes gets a fresh
 * database of its own (test/helpers/pg.ts: the machine's PostgreSQL, C collation; named
 * `tresor_test_<random>`, or TRESOR_TEST_PG_PREFIX's prefix), dropped when the stack or store is closed.
 */
import type { DatabaseConfig } from '../../src/config/server-config.ts';

import { freshPgDatabase, testPgPrefix } from './pg.ts';

export type TestBackend = 'sqlite' | 'postgres';

export function testBackend(): TestBackend {
  const raw = process.env.TRESOR_TEST_BACKEND;
  if (raw === undefined || raw === '' || raw === 'sqlite') return 'sqlite';
  if (raw === 'postgres') return 'postgres';
  throw new Error(`TRESOR_TEST_BACKEND must be sqlite or postgres, not ${JSON.stringify(raw)}`);
}

/** True on the PostgreSQL pass: for the few assertions that read a backend's own files or tables. */
export const onPostgres = testBackend() === 'postgres';

export interface TestDatabase {
  database: DatabaseConfig;
  /** TRESOR_* settings that point a server at it (none on SQLite). */
  env: Record<string, string>;
  /** Drops the database (PostgreSQL); nothing on SQLite. Idempotent. */
  drop(): Promise<void>;
}

/** Where a new stack's data goes on this run's backend: SQLite in its data folder, or a fresh database. */
export async function testDatabase(backend: TestBackend = testBackend()): Promise<TestDatabase> {
  if (backend === 'sqlite') return { database: { kind: 'sqlite' }, env: {}, drop: async () => undefined };
  const fresh = await freshPgDatabase({ prefix: testPgPrefix('tresor_test') });
  return {
    database: { kind: 'postgres', url: fresh.url },
    env: { TRESOR_DATABASE_URL: fresh.url },
    drop: () => fresh.drop(),
  };
}
