/**
 * A small in-process measurement (not part of `npm run bench`): N audited-like writes (a record and
 * its audit event, one transaction) spread round-robin over T tenant stores (one SQLite file each),
 * C in flight, with the tenant stores' two commit modes:
 *   full     synchronous=FULL: SQLite fsyncs the WAL inside COMMIT, on the event loop (before);
 *   own      synchronous=NORMAL and the store's own fdatasync of the WAL in libuv's thread pool,
 *            awaited before the batch's writes resolve (store.ts `ownSync`; after).
 * Prints wall time, writes/s, the process's CPU time (user+system) and fsync batches per mode.
 *
 *   npx tsx bench/own-sync-writes.ts [--writes 2000] [--tenants 100] [--concurrency 32] [--dir DIR]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/store.ts';
import { insertRecord, RECORDS_MIGRATIONS, type RecordsDb } from '../test/store/fixtures/records.ts';

const { values } = parseArgs({
  options: {
    writes: { type: 'string', default: '2000' },
    tenants: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '32' },
    dir: { type: 'string' },
    modes: { type: 'string', default: 'full,own,full,own' },
  },
});
const writes = Number(values.writes);
const tenants = Number(values.tenants);
const concurrency = Number(values.concurrency);

async function run(mode: 'full' | 'own'): Promise<void> {
  const root = mkdtempSync(join(values.dir ?? tmpdir(), `own-sync-${mode}-`));
  const stores: SqliteStore<RecordsDb>[] = [];
  try {
    for (let t = 0; t < tenants; t++)
      stores.push(
        await openSqliteStore<RecordsDb>(join(root, `t${t}.sqlite`), RECORDS_MIGRATIONS, {
          ownSync: mode === 'own',
        }),
      );
    let next = 0;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= writes) return;
        const store = stores[i % tenants] as SqliteStore<RecordsDb>;
        await store.write((trx) => insertRecord(trx, `r${i}`, 'ciphertext-like value of some length'));
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const cpu = process.cpuUsage(cpu0);
    const batches = stores.reduce((n, s) => n + s.stats().batches, 0);
    console.log(
      `${mode.padEnd(4)}  writes=${writes} tenants=${tenants} c=${concurrency}  wall=${wallMs.toFixed(0)} ms  ` +
        `${((writes / wallMs) * 1000).toFixed(0)} writes/s  cpu=${((cpu.user + cpu.system) / 1000).toFixed(0)} ms ` +
        `(user ${(cpu.user / 1000).toFixed(0)}, sys ${(cpu.system / 1000).toFixed(0)})  batches=${batches}`,
    );
  } finally {
    for (const s of stores) await s.closeKeepingWal();
    rmSync(root, { recursive: true, force: true });
  }
}

for (const mode of values.modes.split(',')) await run(mode as 'full' | 'own');
