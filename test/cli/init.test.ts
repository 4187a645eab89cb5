/**
 * `tresor init` as an operator runs it on the server's data folder: offline before the first start,
 * and beside a running server. It makes the first operator admin as a person who has not enrolled,
 * prints the one-time enrolment link once (or writes it 0600), fixes the audit origin or keeps the
 * fixed one, refuses a second run and a different origin (exit 1), and its audit entry reaches the
 * log within seconds while the server runs, or at the server's next start.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';
import { auditLog, exited, type LogEntry, tresor, untilLogged } from './cli-run.ts';

const LINK = /^https:\/\/[^/]+\/signin#enrol=([A-Za-z0-9_-]{43})$/;

interface InitJson {
  person: { id: string; role: string; side: string; email: string; enrolledAt: string | null };
  auditOrigin: string;
  enrolmentLink?: string;
  enrolmentExpiresAt: string;
}

function fixedOrigin(dataDir: string): string | undefined {
  const db = new Database(join(dataDir, 'control.sqlite'), { readonly: true });
  try {
    return (db.prepare('SELECT origin FROM audit_log_identity').get() as { origin: string } | undefined)
      ?.origin;
  } finally {
    db.close();
  }
}

function operatorAdmins(dataDir: string): number {
  const db = new Database(join(dataDir, 'control.sqlite'), { readonly: true });
  try {
    return (
      db.prepare("SELECT count(*) AS n FROM people WHERE role = 'operator-admin'").get() as { n: number }
    ).n;
  } finally {
    db.close();
  }
}

const byInit = (id: string) => (e: LogEntry) =>
  e.action === 'person.create' &&
  e.actor.kind === 'system' &&
  e.actor.id === 'init' &&
  e.outcome === 'success' &&
  e.target?.personId === id;

describe('tresor init, offline on a fresh data folder', () => {
  let root: string;
  let dataDir: string;
  let created: InitJson;
  let stack: TresorStack | undefined;

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'tresor-init-'));
    dataDir = join(root, 'data');
  });
  after(async () => {
    await stack?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it('creates an operator admin who has not enrolled, fixes the given audit origin, prints the link once', async () => {
    const run = exited(
      await tresor([
        'init',
        '--data-dir',
        dataDir,
        '--email',
        'first@init.test',
        '--audit-origin',
        'vault.init.test/audit/one',
        '--json',
      ]),
      0,
    );
    created = JSON.parse(run.stdout) as InitJson;
    assert.equal(created.person.role, 'operator-admin');
    assert.equal(created.person.side, 'operator');
    assert.equal(created.person.email, 'first@init.test');
    assert.equal(created.person.enrolledAt, null);
    assert.equal(created.auditOrigin, 'vault.init.test/audit/one');
    assert.match(created.enrolmentLink ?? '', LINK);
    assert.equal(run.stderr, '');
    assert.equal(fixedOrigin(dataDir), 'vault.init.test/audit/one');
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
  });

  it('refuses a second run: an operator admin exists (exit 1, nobody created)', async () => {
    const again = exited(await tresor(['init', '--data-dir', dataDir, '--email', 'second@init.test']), 1);
    assert.match(again.stderr, /^tresor: TRESOR_ERR_CONFLICT: .*operator admin already/m);
    assert.equal(again.stdout, '');
    assert.equal(operatorAdmins(dataDir), 1);
  });

  it('puts its audit entry in the log at the next start of the server', async () => {
    assert.equal(
      auditLog(dataDir).filter(byInit(created.person.id)).length,
      0,
      'not sequenced before a start',
    );
    stack = await startTresorStack({ dataDir, firstAdmin: false });
    // The sequencer moves every outbox at start, before the server listens.
    assert.equal(auditLog(dataDir).filter(byInit(created.person.id)).length, 1);
    assert.equal(fixedOrigin(dataDir), 'vault.init.test/audit/one', 'the server kept the origin init fixed');
  });

  it('refuses bad input as usage (exit 2) and changes nothing', async () => {
    const fresh = join(root, 'other');
    const run = exited(await tresor(['init', '--data-dir', fresh, '--email', 'not-an-address']), 2);
    assert.match(run.stderr, /tresor init: email/);
    assert.equal(operatorAdmins(fresh), 0);
    exited(await tresor(['init', '--data-dir', fresh]), 2);
    const origin = exited(
      await tresor(['init', '--data-dir', fresh, '--email', 'a@init.test', '--audit-origin', 'has space']),
      2,
    );
    assert.match(origin.stderr, /--audit-origin/);
    assert.equal(operatorAdmins(fresh), 0);
  });

  it('writes the link to a new 0600 file with --out-file, and keeps it off stdout', async () => {
    const fresh = join(root, 'third');
    const file = join(root, 'enrol-link');
    const run = exited(
      await tresor(['init', '--data-dir', fresh, '--email', 'third@init.test', '--out-file', file]),
      0,
    );
    const link = readFileSync(file, 'utf8').trim();
    const token = LINK.exec(link)?.[1];
    assert.ok(token, link);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(run.stdout.includes(token), false);
    assert.equal(run.stderr.includes(token), false);
    assert.match(run.stdout, /^audit origin: tresor\/audit\/[0-9a-f]{8}$/m);
    assert.match(run.stdout, /written to .*enrol-link \(mode 0600\)/);
  });
});

describe('tresor init beside a running server', () => {
  let s: TresorStack;
  before(async () => {
    s = await startTresorStack({ firstAdmin: false });
  });
  after(async () => {
    await s.stop();
  });

  it('keeps the origin the server fixed and refuses a different --audit-origin (exit 1, nobody created)', async () => {
    const fixed = fixedOrigin(s.dataDir);
    assert.ok(fixed);
    const run = exited(
      await tresor([
        'init',
        '--data-dir',
        s.dataDir,
        '--email',
        'x@init.test',
        '--audit-origin',
        'other.test/audit',
      ]),
      1,
    );
    assert.match(run.stderr, /^tresor: TRESOR_ERR_CONFIG_INVALID: .*never changes/m);
    assert.equal(operatorAdmins(s.dataDir), 0);
  });

  it('creates the first operator admin, reports the fixed origin, and its entry is sequenced within seconds', async () => {
    const run = exited(
      await tresor(['init', '--data-dir', s.dataDir, '--email', 'live@init.test', '--json']),
      0,
    );
    const created = JSON.parse(run.stdout) as InitJson;
    assert.equal(created.auditOrigin, fixedOrigin(s.dataDir));
    await untilLogged(s.dataDir, 'person.create by system init', byInit(created.person.id));
  });
});
