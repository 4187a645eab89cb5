/**
 * The audit log's speed, in process, on real SQLite files (WAL, synchronous=FULL) in a temporary
 * folder under `dir`:
 *
 *   raw       store.write() of a ~300-byte row, no audit: the store's own durable insert rate
 *   audited   the same row + its audit event in the same transaction (the outbox), and the
 *             sequencer moving it into the Merkle log of a second store (the control store). The
 *             rate counts only writes whose entry is in the log: the run's time includes the final
 *             drain of the sequencer.
 *   proofs    inclusion and consistency proofs from the stored tree nodes of a 100,000-entry log
 *   verify    `tresor audit verify` over a 1,000,000-entry control store (audit-verify.ts)
 *
 *   npx tsx bench/audit.ts [seconds] [concurrency]
 */
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Kysely, Migration } from 'kysely';
import { sequencerOffloadOf } from '../src/audit/audit-log.ts';
import {
  type AuditEvent,
  appendAuditEvent,
  auditEventsMigration,
  type WithAuditEvents,
} from '../src/audit/event.ts';
import { createAuditLogReader } from '../src/audit/log.ts';
import { auditLogMigration, type WithAuditLog } from '../src/audit/log-schema.ts';
import { createAuditSequencer } from '../src/audit/sequencer.ts';
import { openSqliteStore } from '../src/store/sqlite/store.ts';
import type { Store } from '../src/store/types.ts';
import { type AuditVerifyBench, benchAuditVerify } from './audit-verify.ts';
import { measureAsync, type Rate, runAsync } from './measure.ts';

interface RowsDb extends WithAuditEvents {
  rows: { id: string; value: Buffer };
}

const rowsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('rows')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('value', 'blob', (c) => c.notNull())
      .execute();
  },
};

const TENANT = 'ten_0123456789abcdef01234567';

/**
 * The harness's own inputs come from one pool of random bytes filled once, and ids from a counter:
 * per-operation CSPRNG calls (four small randomBytes for an audited write, two for a raw one) cost
 * a fifth of the run's CPU and were charged to the audited side twice as much as to the baseline.
 */
const POOL = randomBytes(1 << 20);
const RUN = randomBytes(6).toString('hex');
let sequence = 0;
function uniqueId(): string {
  sequence += 1;
  return `${RUN}${sequence.toString(16).padStart(12, '0')}`;
}
function randomValue(bytes: number): Buffer {
  const offset = (sequence * 7919) % (POOL.length - bytes);
  return POOL.subarray(offset, offset + bytes);
}

function event(): AuditEvent {
  return {
    at: new Date().toISOString(),
    actor: { kind: 'api-key', id: 'ak_0123456789abcdef01234567' },
    tenant: TENANT,
    action: 'record.create',
    target: {
      collection: 'people',
      recordIds: [`rec_${uniqueId()}`],
      fields: ['email', 'name'],
    },
    outcome: 'success',
    requestId: uniqueId(),
    sourceAddress: '127.0.0.1',
    userAgent: 'tresor-bench/1',
  };
}

export interface AuditBench {
  concurrency: number;
  raw: { c1: Rate; cN: Rate };
  audited: { c1: Rate; cN: Rate };
  /** audited ÷ raw at concurrency N in each interleaved round, ascending; cN above is the median round. */
  ratiosN: number[];
  proofs: { inclusionC1: Rate; inclusionCN: Rate; consistencyCN: Rate; logSize: number };
  verify: AuditVerifyBench;
}

async function openPair(dir: string) {
  const tenant = await openSqliteStore<RowsDb>(join(dir, `tenant-${randomBytes(4).toString('hex')}.sqlite`), {
    '0001-audit': auditEventsMigration,
    '0002-rows': rowsMigration,
  });
  const control = await openSqliteStore<WithAuditLog & WithAuditEvents>(
    join(dir, `control-${randomBytes(4).toString('hex')}.sqlite`),
    { '0001-audit-events': auditEventsMigration, '0003-audit-log': auditLogMigration },
  );
  const offload = sequencerOffloadOf(control);
  const sequencer = createAuditSequencer({
    control,
    ...(offload ? { offload } : {}),
    openSource: async (source) =>
      (source === 'control' ? control : tenant) as unknown as Store<WithAuditEvents>,
    listSources: async () => [TENANT],
  });
  await sequencer.start();
  return { tenant, control, sequencer };
}

/** Writes per second whose entries reached the log: run, then drain, over the whole time. */
async function auditedRate(dir: string, concurrency: number, seconds: number): Promise<Rate> {
  const { tenant, control, sequencer } = await openPair(dir);
  try {
    const op = async () => {
      await tenant.write(async (trx) => {
        await trx
          .insertInto('rows')
          .values({ id: uniqueId(), value: randomValue(300) })
          .execute();
        await appendAuditEvent(trx, event());
      });
      if (!process.env.SEQOFF) sequencer.notify(TENANT);
    };
    await runAsync(op, concurrency, Math.min(0.5, seconds / 4));
    await sequencer.drain();
    const start = process.hrtime.bigint();
    const run = await runAsync(op, concurrency, seconds);
    await sequencer.drain();
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    return { ...run, opsPerSecond: run.operations / elapsed, seconds: elapsed };
  } finally {
    await sequencer.close();
    await tenant.close();
    await control.close();
  }
}

async function rawRate(dir: string, concurrency: number, seconds: number): Promise<Rate> {
  const { tenant, control, sequencer } = await openPair(dir);
  try {
    return await measureAsync(
      () =>
        tenant.write(async (trx) => {
          await trx
            .insertInto('rows')
            .values({ id: uniqueId(), value: randomValue(300) })
            .execute();
        }),
      concurrency,
      seconds,
    );
  } finally {
    await sequencer.close();
    await tenant.close();
    await control.close();
  }
}

async function proofRates(dir: string, concurrency: number, seconds: number, logSize: number) {
  const { tenant, control, sequencer } = await openPair(dir);
  try {
    for (let done = 0; done < logSize; done += 1000) {
      await tenant.write(async (trx) => {
        for (let i = 0; i < 1000; i++) await appendAuditEvent(trx, event());
      });
      await sequencer.drain(TENANT);
    }
    const reader = createAuditLogReader(control.db as Kysely<WithAuditLog>, () => sequencer.treeHead().size);
    const size = sequencer.treeHead().size;
    const inclusion = () => {
      const treeSize = size - randomInt(100);
      return reader.inclusion(randomInt(treeSize), treeSize);
    };
    const consistency = () => {
      const from = 1 + randomInt(size - 1);
      return reader.consistency(from, from + randomInt(size - from + 1));
    };
    return {
      inclusionC1: await measureAsync(inclusion, 1, seconds),
      inclusionCN: await measureAsync(inclusion, concurrency, seconds),
      consistencyCN: await measureAsync(consistency, concurrency, seconds),
      logSize: size,
    };
  } finally {
    await sequencer.close();
    await tenant.close();
    await control.close();
  }
}

/** One raw-insert run (for comparing and profiling). */
export function benchRawOnly(dir: string, concurrency: number, seconds: number): Promise<Rate> {
  return rawRate(dir, concurrency, seconds);
}

/** One audited-write run (for profiling: node --cpu-prof). */
export function benchAuditedOnly(dir: string, concurrency: number, seconds: number): Promise<Rate> {
  return auditedRate(dir, concurrency, seconds);
}

export async function benchAudit(options: {
  seconds: number;
  concurrency: number;
  dir: string;
  verifyEntries?: number;
  /** Interleaved raw/audited rounds at concurrency N (default 5). */
  rounds?: number;
}): Promise<AuditBench> {
  const dir = mkdtempSync(join(options.dir, 'tresor-bench-audit-'));
  try {
    const { seconds, concurrency } = options;
    const raw1 = await rawRate(dir, 1, seconds);
    const audited1 = await auditedRate(dir, 1, seconds);
    // At concurrency N the two alternate, round after round: this machine's speed drifts by a fifth
    // between runs of a few seconds, and a ratio of rates measured minutes apart measured the drift.
    const rounds: { raw: Rate; audited: Rate; ratio: number }[] = [];
    for (let i = 0; i < (options.rounds ?? 5); i++) {
      const raw = await rawRate(dir, concurrency, seconds);
      const audited = await auditedRate(dir, concurrency, seconds);
      rounds.push({ raw, audited, ratio: audited.opsPerSecond / raw.opsPerSecond });
    }
    rounds.sort((a, b) => a.ratio - b.ratio);
    const median = rounds[Math.floor(rounds.length / 2)] as (typeof rounds)[number];
    return {
      concurrency,
      raw: { c1: raw1, cN: median.raw },
      audited: { c1: audited1, cN: median.audited },
      ratiosN: rounds.map((r) => r.ratio),
      proofs: await proofRates(dir, concurrency, seconds, 100_000),
      verify: await benchAuditVerify({ entries: options.verifyEntries ?? 1_000_000, dir }),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const seconds = Number(process.argv[2] ?? 2);
  const concurrency = Number(process.argv[3] ?? 64);
  const r = await benchAudit({ seconds, concurrency, dir: tmpdir() });
  const f = (rate: Rate) => `${Math.round(rate.opsPerSecond).toLocaleString('en')}/s`;
  console.log(`raw durable insert         c=1 ${f(r.raw.c1)}   c=${concurrency} ${f(r.raw.cN)}`);
  console.log(
    `audited (entry in the log) c=1 ${f(r.audited.c1)}   c=${concurrency} ${f(r.audited.cN)}   ratio at c=${concurrency}: median ${(r.audited.cN.opsPerSecond / r.raw.cN.opsPerSecond).toFixed(2)}× of rounds ${r.ratiosN.map((x) => x.toFixed(2)).join(' ')}`,
  );
  console.log(
    `proofs (log of ${r.proofs.logSize}) inclusion c=1 ${f(r.proofs.inclusionC1)}  c=${concurrency} ${f(r.proofs.inclusionCN)}  consistency c=${concurrency} ${f(r.proofs.consistencyCN)}`,
  );
  console.log(
    `verify ${r.verify.entries.toLocaleString('en')} entries in ${r.verify.seconds.toFixed(2)} s = ${Math.round(r.verify.entriesPerSecond).toLocaleString('en')}/s ` +
      `(${r.verify.workers} workers; one thread ${Math.round(r.verify.singleThread.entriesPerSecond).toLocaleString('en')}/s)`,
  );
}
