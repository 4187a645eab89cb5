/**
 * `tresor audit verify` speed: builds a control store holding `entries` realistic audit entries
 * (~385-byte canonical leaves, every tree node, a signed checkpoint every 1,000 entries) in a
 * temporary folder under `dir`, then times verifyAuditLog over the read-only SQLite reader — reading
 * rows, leaf hashes, the canonical-form and own-index checks, the tree, every checkpoint. The fixture
 * build is not timed. The target (audit issue) is ≥ 200,000 entries per second.
 *   npx tsx bench/audit-verify.ts [entries]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openAuditLogReader } from '../src/audit/log-reader.ts';
import { verifyAuditLog } from '../src/audit/verify.ts';
import { buildAuditLogFixture } from '../test/audit/log-fixture.ts';

export interface AuditVerifyBench {
  entries: number;
  seconds: number;
  entriesPerSecond: number;
  /** CPU time (user + system) the verification took: the figure that does not depend on the machine's other load. */
  cpuSeconds: number;
  entriesPerCpuSecond: number;
}

export async function benchAuditVerify(options: { entries: number; dir: string }): Promise<AuditVerifyBench> {
  const folder = mkdtempSync(join(options.dir, 'tresor-bench-verify-'));
  try {
    const fixture = await buildAuditLogFixture({
      entries: options.entries,
      checkpointEvery: 1000,
      dir: folder,
      raw: true,
      witness: false,
    });
    const reader = openAuditLogReader(fixture.dbPath);
    const cpu = process.cpuUsage();
    const start = process.hrtime.bigint();
    let report: ReturnType<typeof verifyAuditLog>;
    try {
      report = verifyAuditLog({
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
      entries: report.size,
      seconds,
      entriesPerSecond: report.size / seconds,
      cpuSeconds,
      entriesPerCpuSecond: report.size / cpuSeconds,
    };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const entries = Number(process.argv[2] ?? 1_000_000);
  const r = await benchAuditVerify({ entries, dir: tmpdir() });
  console.log(
    `audit verify: ${r.entries} entries in ${r.seconds.toFixed(2)} s = ${Math.round(r.entriesPerSecond)} entries/s ` +
      `(CPU ${r.cpuSeconds.toFixed(2)} s = ${Math.round(r.entriesPerCpuSecond)} entries per CPU second)`,
  );
}
