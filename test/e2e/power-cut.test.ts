// backends: sqlite (power loss of the SQLite files in the data folder, on a FUSE file system; PostgreSQL's own fsync durability is test/store/pg-durability)
// drill: a power cut below the process
/**
 * Invariant 5 under power loss, not just kill -9: the data folder lives on a FUSE file system
 * (test/helpers/powercut-fs.py) that holds every write in memory until its file is fsynced and, on
 * a "power cut", drops everything unsynced. A real Tresor stack (server process, keyd process) takes
 * records under load; power is cut mid-load and the server killed; the folder is mounted again and
 * the server restarted: every record acknowledged with 201 is there and readable, and `tresor audit
 * verify` passes.
 *
 * The control experiment proves the test can fail: the same cut under a small writer that opens
 * SQLite with synchronous=OFF loses acknowledged rows, while the same writer with synchronous=FULL
 * loses none.
 *
 * Needs /dev/fuse, fuse3 and python3-fusepy (scripts/system-deps.mjs). The kernel here has no
 * dm-flakey, so the cut is made above the kernel's page cache, in the file system itself.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { operatorToken } from '../helpers/console.ts';
import { tresor } from '../helpers/keyd-process.ts';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { withDeadline } from '../helpers/wait.ts';

const deadline = <T>(promise: Promise<T>, ms: number, what: string) => withDeadline(what, promise, ms);

const POWERCUT_FS = join(import.meta.dirname, '..', 'helpers', 'powercut-fs.py');
const WRITER = join(import.meta.dirname, '..', 'helpers', 'powercut-writer.ts');
/** Debian's python3-fusepy is installed for the system Python, not for one a developer put first. */
const PYTHON = '/usr/bin/python3';
const MOUNT_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 30_000;
/** Tenants (files) the load is spread over. */
const TENANTS = 4;

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/**
 * A mounted power-cut file system over `backing`: `cut()` drops unsynced writes at once and unmounts
 * lazily; the file system process ends (`gone()`) once nothing holds a file of it any more.
 */
interface PowerCutMount {
  cut(): void;
  gone(): Promise<void>;
}

async function mount(backing: string, mountpoint: string): Promise<PowerCutMount> {
  const fs: ChildProcess = spawn(PYTHON, [POWERCUT_FS, backing, mountpoint], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = once(fs, 'exit');
  let out = '';
  fs.stdout?.setEncoding('utf8');
  await deadline(
    new Promise<void>((resolve, reject) => {
      fs.stdout?.on('data', (chunk: string) => {
        out += chunk;
        if (out.includes('ready')) resolve();
      });
      fs.once('exit', (code) => reject(new Error(`powercut-fs exited with ${code} before mounting`)));
    }),
    MOUNT_TIMEOUT_MS,
    'the power-cut file system to mount',
  );
  return {
    cut() {
      if (fs.stdin?.writable) fs.stdin.end('cut\n');
    },
    async gone() {
      if (fs.exitCode === null && fs.signalCode === null) {
        await deadline(exited, EXIT_TIMEOUT_MS, 'the power-cut file system to unmount');
      }
    },
  };
}

function tempRoot(): { backing: string; mountpoint: string } {
  const root = mkdtempSync(join(tmpdir(), 'guarantees-powercut-'));
  roots.push(root);
  const backing = join(root, 'backing');
  const mountpoint = join(root, 'mnt');
  mkdirSync(backing);
  mkdirSync(mountpoint);
  return { backing, mountpoint };
}

/** Runs the control writer on the mount until `acks` ids are acknowledged, then cuts power. */
async function cutUnderWriter(synchronous: 'FULL' | 'OFF', acks: number) {
  const { backing, mountpoint } = tempRoot();
  const fs = await mount(backing, mountpoint);
  const writer = spawn(
    process.execPath,
    ['--import', 'tsx', WRITER, join(mountpoint, 'w.sqlite'), synchronous],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const writerExit = once(writer, 'exit');
  const acked: string[] = [];
  let partial = '';
  writer.stdout.setEncoding('utf8');
  await deadline(
    new Promise<void>((resolve) => {
      writer.stdout.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        acked.push(...lines);
        if (acked.length >= acks) resolve();
      });
    }),
    120_000,
    `${acks} acknowledged writes`,
  );
  fs.cut(); // power is gone: the writer's later writes fail, nothing unsynced survives
  writer.kill('SIGKILL');
  await deadline(writerExit, EXIT_TIMEOUT_MS, 'the writer to die');
  await fs.gone();
  const file = join(backing, 'w.sqlite');
  const db = new Database(file);
  try {
    const table = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'acked'").get();
    const present = new Set(
      table ? (db.prepare('SELECT id FROM acked').all() as { id: string }[]).map((r) => r.id) : [],
    );
    return { acked, lost: acked.filter((id) => !present.has(id)) };
  } finally {
    db.close();
  }
}

describe('power cut below the process', () => {
  it('the test catches a store that acknowledges before syncing: synchronous=OFF loses acknowledged rows, FULL none', async () => {
    const off = await cutUnderWriter('OFF', 300);
    assert.ok(off.lost.length > 0, `synchronous=OFF lost none of ${off.acked.length} acknowledged rows`);
    const full = await cutUnderWriter('FULL', 300);
    assert.deepEqual(full.lost, [], `synchronous=FULL lost ${full.lost.length} of ${full.acked.length}`);
  });

  it('keeps every record acknowledged with 201 through a power cut, readable, and the audit log verifies', async () => {
    const { backing, mountpoint } = tempRoot();
    let fs = await mount(backing, mountpoint);
    let s: TresorStack | undefined;
    try {
      s = await startTresorStack({ dataDir: join(mountpoint, 'data'), logLevel: 'warn' });
      const stack = s;
      // Several tenants: each has its own SQLite file, whose batches the store fsyncs itself
      // (synchronous=NORMAL plus its own fdatasync of the WAL, in parallel across files).
      const apiKeys: string[] = [];
      for (let t = 0; t < TENANTS; t++) {
        const created = await stack.request('POST', '/v1/tenants', {
          token: await operatorToken(stack, 'tenants:create'),
          body: { name: `Power ${t}` },
        });
        assert.equal(created.status, 201, created.text);
        const { apiKey } = created.json<{ apiKey: string }>();
        const put = await stack.request('PUT', '/v1/collections/people', {
          token: apiKey,
          body: { fields: { email: { type: 'string', classification: 'personal', required: true } } },
        });
        assert.ok(put.status === 201 || put.status === 200, put.text);
        apiKeys.push(apiKey);
      }
      const verifierKey = (await stack.request('GET', '/v1/audit/public-key')).text.trim();

      // Load: writers post records until power is cut; a 201 is an acknowledged write.
      const acked = new Map<string, { email: string; apiKey: string }>();
      let cut = false;
      const writer = async (w: number) => {
        const apiKey = apiKeys[w % TENANTS] as string;
        for (let i = 0; !cut; i++) {
          const email = `w${w}-${i}@example.test`;
          const res = await stack
            .request('POST', '/v1/collections/people/records', { token: apiKey, body: { email } })
            .catch(() => undefined);
          if (res?.status === 201) acked.set(res.json<{ id: string }>().id, { email, apiKey });
          else if (cut || res === undefined) return;
        }
      };
      const writers = Array.from({ length: 8 }, (_, w) => writer(w));
      await deadline(
        (async () => {
          while (acked.size < 150) await new Promise((r) => setTimeout(r, 20));
        })(),
        150_000,
        '150 acknowledged records',
      );
      const ackedAtCut = new Map(acked);
      cut = true;
      fs.cut();
      await stack.kill9Server();
      await fs.gone();
      await Promise.all(writers);
      // Writes acknowledged while the cut was happening count too: they claimed durability.
      for (const [id, email] of acked) ackedAtCut.set(id, email);

      fs = await mount(backing, mountpoint);
      assert.ok(existsSync(join(mountpoint, 'data', 'control.sqlite')));
      await stack.startServer();
      const tenantsAcked = new Set([...ackedAtCut.values()].map((a) => a.apiKey));
      assert.equal(tenantsAcked.size, TENANTS, 'acknowledged writes in every tenant');
      for (const [id, { email, apiKey }] of ackedAtCut) {
        const res = await stack.request('GET', `/v1/collections/people/records/${id}`, { token: apiKey });
        assert.equal(
          res.status,
          200,
          `acknowledged record ${id}: ${res.status} ${res.text}\n${stack.serverOutput().slice(-4000)}`,
        );
        assert.equal(res.json<{ data: { email: string } }>().data.email, email);
      }
      await stack.stopServer();
      const verify = tresor([
        'audit',
        'verify',
        '--data-dir',
        stack.dataDir,
        '--public-key',
        verifierKey,
        '--json',
      ]);
      assert.equal(verify.status, 0, verify.stdout + verify.stderr);
      assert.equal((JSON.parse(verify.stdout) as { ok: boolean }).ok, true);
    } finally {
      await s?.stop().catch(() => undefined);
      fs.cut();
      await fs.gone().catch(() => undefined);
    }
  });
});
