// drill: keyd's store backed up and restored
/**
 * keyd's own backups end to end: the real `tresor keyd` process with the passphrase root key, its
 * config file's `keyd.backup` section, its schedule, `tresor keyd backup now|list` over its socket
 * and the offline `tresor keyd restore`, then a keyd started on the restored folder. Nothing is
 * mocked; every wait has a deadline.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { KeydBackupListing, OpsLogEntry } from '../../src/keyd/operations.ts';
import {
  type LocalS3,
  S3RVER_ACCESS_KEY_ID,
  S3RVER_SECRET_ACCESS_KEY,
  startLocalS3,
} from '../backup/s3-server.ts';
import { type KeydProcess, startKeyd, TRESOR_BIN, tresor } from '../helpers/keyd-process.ts';
import { waitFor } from '../helpers/wait.ts';

const PASSPHRASE = 'keyd backups passphrase, long enough';
const DEADLINE_MS = 180_000; // a loaded machine: generous, never a timed assertion

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface Keyd {
  root: string;
  dir: string;
  env: NodeJS.ProcessEnv;
  passphraseFile: string;
  folders: string[];
  process: KeydProcess;
}

/** keyd initialised with a passphrase and started with `keyd.backup` from a config file. */
async function keydWithBackups(
  backup: Record<string, unknown>,
  more: (root: string) => Record<string, unknown>[] = () => [],
): Promise<Keyd> {
  const root = mkdtempSync(join(tmpdir(), 'tresor-e2e-keyd-bk-'));
  roots.push(root);
  const dir = join(root, 'keyd');
  const passphraseFile = join(root, 'passphrase');
  writeFileSync(passphraseFile, `${PASSPHRASE}\n`, { mode: 0o600 });
  const folders = [join(root, 'dest-a'), join(root, 'dest-b')];
  const config = join(root, 'tresor.json');
  writeFileSync(
    config,
    JSON.stringify({
      keyd: {
        backup: {
          ...backup,
          destinations: [
            { name: 'a', kind: 'folder', path: 'dest-a', retention: backup.retention },
            { name: 'b', kind: 'folder', path: 'dest-b', retention: backup.retention },
            ...more(root),
          ],
          retention: undefined,
        },
      },
    }),
  );
  const env = {
    TRESOR_KEYD_DIR: dir,
    TRESOR_KEYD_PROVIDER: 'passphrase',
    TRESOR_KEYD_PASSPHRASE_FILE: passphraseFile,
    TRESOR_CONFIG: config,
  };
  const init = tresor(['keyd', 'init', '--json'], { env });
  assert.equal(init.status, 0, init.stderr);
  const process = await startKeyd([], { kind: 'unix', path: join(dir, 'keyd.sock') }, env);
  return { root, dir, env, passphraseFile, folders, process };
}

/**
 * The CLI without blocking this process: s3rver runs in it, and spawnSync would stop it from
 * answering the very command that waits for it.
 */
async function cliAsync(k: Pick<Keyd, 'env'>, args: string[]) {
  const run = promisify(execFile);
  try {
    const r = await run(process.execPath, [TRESOR_BIN, ...args], {
      env: { ...process.env, NO_COLOR: '1', ...k.env },
      timeout: DEADLINE_MS,
    });
    return { status: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return {
      status: typeof e.code === 'number' ? e.code : null,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    };
  }
}

function cli(k: Pick<Keyd, 'env'>, args: string[], input?: string) {
  return tresor(args, { env: k.env, ...(input === undefined ? {} : { input }) });
}

function json<T>(r: { status: number | null; stdout: string; stderr: string }): T {
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push({ path: p, bytes: readFileSync(p) });
  }
  return out;
}

/** The raw bytes and the text forms a key could be written in (as test/e2e/data-at-rest.test.ts scans). */
function encodings(raw: Buffer): Buffer[] {
  return [
    raw,
    Buffer.from(raw.toString('hex')),
    Buffer.from(raw.toString('hex').toUpperCase()),
    Buffer.from(raw.toString('base64')),
    Buffer.from(raw.toString('base64url')),
  ];
}

describe("keyd's own backups on keyd's schedule", () => {
  let k: Keyd;
  before(async () => {
    // Every 3 s; retention keeps only the newest, so the second scheduled backup deletes the first.
    k = await keydWithBackups({ intervalMinutes: 0.05, retention: { keepAllDays: 0, keepDailyDays: 0 } });
  });
  after(() => k.process.stop());

  it('takes backups by itself, applies retention after each and records every deletion in its ops log', async () => {
    const entries = await waitFor(
      'a scheduled keyd backup and a retention deletion in the ops log',
      async () => {
        const r = cli(k, ['keyd', 'log', '--json', '--limit', '1000']);
        if (r.status !== 0) return undefined;
        const log = (JSON.parse(r.stdout) as { entries: OpsLogEntry[] }).entries;
        return log.some((e) => e.op === 'deleteKeydBackup') ? log : undefined;
      },
      { timeoutMs: DEADLINE_MS, intervalMs: 500, diagnostics: () => k.process.stderr() },
    );
    const taken = entries.filter((e) => e.op === 'backupKeyd' && e.caller === 'system' && e.outcome === 'ok');
    assert.ok(taken.length >= 2, 'two scheduled backups at least');
    for (const e of taken) assert.match(e.detail ?? '', /^scheduled: backup \S+ held by a, b$/);
    const deleted = entries.filter((e) => e.op === 'deleteKeydBackup');
    for (const e of deleted) {
      assert.equal(e.caller, 'system');
      assert.equal(e.outcome, 'ok');
      assert.match(e.detail ?? '', /^backup \S+ at [ab]: aged out \(keep all 0 d, daily 0 d\)$/);
    }
    // What the folders hold agrees with the log: every deleted backup is gone from its folder.
    for (const e of deleted) {
      const [, id, dest] = /^backup (\S+) at ([ab]):/.exec(e.detail ?? '') ?? [];
      assert.equal(readdirSync(join(k.root, `dest-${dest}`)).includes(id as string), false);
    }
    assert.match(k.process.stderr(), /keyd backup taken/);
  });
});

describe('tresor keyd backup now, list and restore', () => {
  let k: Keyd;
  let verifierKey: string;
  let backupId: string;
  const dataKey = { keyId: '', wrapped: Buffer.alloc(0), key: Buffer.alloc(0) };

  before(async () => {
    k = await keydWithBackups({ intervalMinutes: 0 });
    const client = k.process.client();
    await client.call('createTenantKey', { tenant: 'acme' });
    const dk = await client.call('generateDataKey', { tenant: 'acme', purpose: 'data' });
    Object.assign(dataKey, { keyId: dk.keyId, wrapped: dk.wrapped, key: dk.key });
    verifierKey = cli(k, ['keyd', 'public-key', '--purpose', 'backup-manifest']).stdout.trim();
    const taken = json<{ backupId: string; destinations: { destination: string; ok: boolean }[] }>(
      cli(k, ['keyd', 'backup', 'now', '--json']),
    );
    backupId = taken.backupId;
    assert.deepEqual(taken.destinations, [
      { destination: 'a', ok: true },
      { destination: 'b', ok: true },
    ]);
  });
  after(() => k.process.stop());

  it('lists the backup at both destinations', () => {
    const listed = json<{ destinations: KeydBackupListing[] }>(cli(k, ['keyd', 'backup', 'list', '--json']));
    assert.deepEqual(
      listed.destinations.map((d) => [d.destination, d.backups.map((b) => [b.id, b.complete])]),
      [
        ['a', [[backupId, true]]],
        ['b', [[backupId, true]]],
      ],
    );
    const text = cli(k, ['keyd', 'backup', 'list']);
    assert.match(text.stdout, new RegExp(`^a\\t${backupId}\\t\\S+\\tyes$`, 'm'));
  });

  it('holds no plaintext key: neither the data key, nor the passphrase, nor the dev key file', () => {
    const needles = [...encodings(dataKey.key), Buffer.from(PASSPHRASE)];
    for (const folder of k.folders) {
      const files = filesUnder(folder);
      assert.ok(files.length >= 4, 'manifest, signature, keyring and a chunk at least');
      for (const { path, bytes } of files) {
        for (const needle of needles) assert.equal(bytes.includes(needle), false, `a key in ${path}`);
      }
      assert.equal(
        files.some((f) => f.path.endsWith('dev-root.key')),
        false,
      );
    }
  });

  it('restores offline into an empty folder, and a keyd on it unwraps the tenant key it had', async () => {
    const target = join(k.root, 'restored');
    const restored = json<{ backupId: string; provider: string }>(
      cli(k, [
        'keyd',
        'restore',
        '--from',
        k.folders[1] as string,
        '--to',
        target,
        '--secret-file',
        k.passphraseFile,
        '--verifier-key',
        verifierKey,
        '--json',
      ]),
    );
    assert.equal(restored.backupId, backupId);
    assert.equal(restored.provider, 'passphrase');
    const socket = join(k.root, 'restored.sock');
    const again = await startKeyd(
      ['--dir', target, '--socket', socket],
      { kind: 'unix', path: socket },
      {
        TRESOR_KEYD_PROVIDER: 'passphrase',
        TRESOR_KEYD_PASSPHRASE_FILE: k.passphraseFile,
      },
    );
    try {
      const { key } = await again.client().call('unwrapDataKey', {
        tenant: 'acme',
        purpose: 'data',
        keyId: dataKey.keyId,
        wrapped: dataKey.wrapped,
      });
      assert.ok(key.equals(dataKey.key));
    } finally {
      await again.stop();
    }
  });

  it('refuses a non-empty target, a tampered chunk and a wrong passphrase, leaving nothing behind', () => {
    const busy = join(k.root, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'keep'), 'x');
    const from = k.folders[0] as string;
    const restore = (to: string, input?: string) =>
      cli(
        k,
        [
          'keyd',
          'restore',
          '--from',
          from,
          '--to',
          to,
          ...(input ? [] : ['--secret-file', k.passphraseFile]),
        ],
        input,
      );
    const refused = restore(busy);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /TRESOR_ERR_RESTORE_TARGET_NOT_EMPTY/);
    assert.deepEqual(readdirSync(busy), ['keep']);

    const wrong = restore(join(k.root, 'r-wrong'), 'not the passphrase at all\n');
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /TRESOR_ERR_UNSEAL_FAILED/);
    assert.equal(wrong.stderr.includes(PASSPHRASE), false);

    const chunk = join(from, backupId, 'store-000000');
    const bytes = readFileSync(chunk);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    writeFileSync(chunk, bytes);
    const tampered = restore(join(k.root, 'r-tampered'));
    assert.equal(tampered.status, 1);
    assert.match(tampered.stderr, /TRESOR_ERR_BACKUP_INVALID: .*chunk 0/);
    assert.deepEqual(
      readdirSync(k.root).filter((n) => n.includes('r-wrong') || n.includes('r-tampered')),
      [],
    );
  });
});

describe('keyd backups on S3-compatible storage (s3rver on loopback)', () => {
  let k: Keyd;
  let s3: LocalS3;
  before(async () => {
    s3 = await startLocalS3('tresor-keyd');
    k = await keydWithBackups({ intervalMinutes: 0 }, (root) => {
      writeFileSync(join(root, 's3-key-id'), S3RVER_ACCESS_KEY_ID, { mode: 0o600 });
      writeFileSync(join(root, 's3-secret'), S3RVER_SECRET_ACCESS_KEY, { mode: 0o600 });
      return [
        {
          name: 'offsite',
          kind: 's3',
          endpoint: s3.endpoint,
          region: 'us-east-1',
          bucket: s3.bucket,
          prefix: 'keyd/',
          forcePathStyle: true,
          accessKeyIdFile: 's3-key-id',
          secretAccessKeyFile: 's3-secret',
        },
      ];
    });
  });
  after(async () => {
    await k.process.stop();
    await s3.remove();
  });

  it('backs up to the bucket, holds no data key there, and restores from s3://', async () => {
    const client = k.process.client();
    await client.call('createTenantKey', { tenant: 'acme' });
    const dk = await client.call('generateDataKey', { tenant: 'acme', purpose: 'data' });
    const taken = json<{ backupId: string; destinations: { destination: string; ok: boolean }[] }>(
      await cliAsync(k, ['keyd', 'backup', 'now', '--json']),
    );
    assert.deepEqual(
      taken.destinations.map((d) => [d.destination, d.ok]),
      [
        ['a', true],
        ['b', true],
        ['offsite', true],
      ],
    );
    const stored = s3.storedFiles();
    assert.ok(stored.some((f) => f.path.includes(taken.backupId)));
    for (const { path, bytes } of stored) {
      for (const needle of [...encodings(dk.key), Buffer.from(PASSPHRASE)]) {
        assert.equal(bytes.includes(needle), false, `a key in ${path}`);
      }
    }
    const target = join(k.root, 'from-s3');
    const restored = json<{ backupId: string }>(
      await cliAsync(k, [
        'keyd',
        'restore',
        '--from',
        `s3://${s3.bucket}/keyd/`,
        '--s3-endpoint',
        s3.endpoint,
        '--s3-access-key-id-file',
        join(k.root, 's3-key-id'),
        '--s3-secret-access-key-file',
        join(k.root, 's3-secret'),
        '--to',
        target,
        '--secret-file',
        k.passphraseFile,
        '--json',
      ]),
    );
    assert.equal(restored.backupId, taken.backupId);
    assert.ok(readdirSync(target).includes('keystore.sqlite'));
  });
});
