/**
 * `tresor audit verify` speed: builds a control store holding `entries` realistic audit entries
 * (~385-byte canonical leaves, every tree node, a signed checkpoint every 1,000 entries) in a
 * temporary folder under `dir`, then times the verifier over the read-only SQLite reader — reading
 * rows, leaf hashes, the canonical-form and own-index checks, the tree, every checkpoint — twice: on
 * this thread alone (verifyAuditLog), then as `tresor audit verify` runs it, with the leaf work on
 * worker threads (verifyAuditLogInParallel, one per core but one by default). The fixture build is not timed.
 * The target (audit issue) is ≥ 200,000 entries per second.
 *   npx tsx bench/audit-verify.ts [entries] [workers]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openAuditLogReader } from '../src/audit/log-reader.ts';
import {
  type VerifyInput,
  type VerifyReport,
  verifyAuditLog,
  verifyAuditLogInParallel,
} from '../src/audit/verify.ts';
import { buildAuditLogFixture } from '../test/audit/log-fixture.ts';

export interface AuditVerifyRun {
  seconds: number;
  entriesPerSecond: number;
  /** CPU time (user + system, all threads) the verification took: the figure that depends least on the machine's other load. */
  cpuSeconds: number;
  entriesPerCpuSecond: number;
}

/** The CLI's way (verifyAuditLogInParallel, `workers` worker threads), and on this thread alone. */
export interface AuditVerifyBench extends AuditVerifyRun {
  entries: number;
  workers: number;
  singleThread: AuditVerifyRun;
}

export async function benchAuditVerify(options: {
  entries: number;
  dir: string;
  workers?: number;
}): Promise<AuditVerifyBench> {
  const workers = options.workers ?? Math.max(0, availableParallelism() - 1);
  const folder = mkdtempSync(join(options.dir, 'tresor-bench-verify-'));
  try {
    const fixture = await buildAuditLogFixture({
      entries: options.entries,
      checkpointEvery: 1000,
      dir: folder,
      raw: true,
      witness: false,
    });
    const timed = async (verify: (input: VerifyInput) => VerifyReport | Promise<VerifyReport>) => {
      const reader = openAuditLogReader(fixture.dbPath);
      const cpu = process.cpuUsage();
      const start = process.hrtime.bigint();
      let report: VerifyReport;
      try {
        report = await verify({
          entries: reader.leafBatches(),
          checkpoints: reader.checkpoints(),
          verifierKey: fixture.verifierKey,
          origin: fixture.origin,
        });
      } finally {
        reader.close();
      }
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const used = process.cpuUsage(cpu);
      const cpuSeconds = (used.user + used.system) / 1e6;
      if (!report.ok || report.size !== options.entries) {
        throw new Error(`the benchmark log did not verify: ${JSON.stringify(report.problems.slice(0, 3))}`);
      }
      return {
        seconds,
        entriesPerSecond: report.size / seconds,
        cpuSeconds,
        entriesPerCpuSecond: report.size / cpuSeconds,
      };
    };
    const singleThread = await timed(verifyAuditLog);
    // Worker start-up (each loads the TypeScript loader) is counted: `tresor audit verify` pays it too.
    const parallel = await timed((input) => verifyAuditLogInParallel(input, { workers }));
    return { entries: options.entries, workers, ...parallel, singleThread };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

function line(what: string, entries: number, r: AuditVerifyRun): string {
  return (
    `${what}: ${entries} entries in ${r.seconds.toFixed(2)} s = ${Math.round(r.entriesPerSecond)} entries/s, ` +
    `${(r.seconds / (entries / 1e6)).toFixed(2)} s per million ` +
    `(CPU ${r.cpuSeconds.toFixed(2)} s = ${Math.round(r.entriesPerCpuSecond)} entries per CPU second)`
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const entries = Number(process.argv[2] ?? 1_000_000);
  const workers = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
  const r = await benchAuditVerify({ entries, dir: tmpdir(), ...(workers === undefined ? {} : { workers }) });
  console.log(line(`audit verify, ${r.workers} worker thread(s) (the CLI)`, r.entries, r));
  console.log(line('audit verify, one thread', r.entries, r.singleThread));
}
