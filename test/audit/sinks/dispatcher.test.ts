/**
 * The dispatcher: independent loops per sink, durable cursors that resume without gaps or loss,
 * checkpoints after the entries they cover, and a status that says what failed without saying
 * what the secret or the entries are.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { createSinkDispatcher } from '../../../src/audit/sinks/dispatcher.ts';
import { createJsonlFileSink } from '../../../src/audit/sinks/jsonl-file.ts';
import type { AuditSink, SequencedEntry } from '../../../src/audit/sinks/types.ts';
import { createWebhookSink } from '../../../src/audit/sinks/webhook.ts';
import { untilEvent } from '../../helpers/wait.ts';
import { CUSTOMER_MARKER, MemoryLog, makePki, tempDir, WebhookReceiver } from './helpers.ts';

/** A destination that records what it accepted, as `e<index>` and `c<size>`, and says so by event. */
class RecordingSink extends EventEmitter implements AuditSink {
  readonly received: string[] = [];
  /** While set, deliveries wait for it: a destination that hangs. */
  gate: Promise<void> | undefined;
  /** Deliveries to refuse before accepting again. */
  refuse = 0;

  constructor(readonly name: string) {
    super();
  }

  async deliverEntries(entries: readonly SequencedEntry[]): Promise<void> {
    await this.gate;
    this.check();
    this.received.push(...entries.map((e) => `e${e.index}`));
    this.emit('delivered');
  }

  async deliverCheckpoint(_note: string, size: number): Promise<void> {
    await this.gate;
    this.check();
    this.received.push(`c${size}`);
    this.emit('delivered');
  }

  async close(): Promise<void> {}

  async until(item: string): Promise<void> {
    await untilEvent(`delivery of ${item}`, this, 'delivered', () => this.received.includes(item));
  }

  private check(): void {
    if (this.refuse > 0) {
      this.refuse -= 1;
      throw new Error('destination refused the batch');
    }
  }
}

const FAST_RETRY = { initialMs: 2, maxMs: 10 };

test('a hanging sink and a failing sink hold up neither the caller of notify() nor another sink', async (t) => {
  const log = new MemoryLog();
  const hanging = new RecordingSink('hanging');
  let release = () => {};
  hanging.gate = new Promise((resolve) => {
    release = resolve;
  });
  const failing = new RecordingSink('failing');
  failing.refuse = Number.POSITIVE_INFINITY;
  const healthy = new RecordingSink('healthy');
  const warnings = new EventEmitter();
  const dispatcher = createSinkDispatcher({
    sinks: [hanging, failing, healthy],
    stateDir: await tempDir(t),
    readEntries: log.readEntries,
    readCheckpoints: log.readCheckpoints,
    retry: FAST_RETRY,
    logger: { info() {}, warn: (o: object) => warnings.emit('warn', o), error() {} },
  });
  t.after(() => dispatcher.close());
  const failingReported = once(warnings, 'warn');

  log.append(3);
  const returned = dispatcher.notify();
  assert.equal(returned, undefined, 'notify() is fire-and-forget');
  await healthy.until('e2');
  log.append(2).checkpoint();
  dispatcher.notify();
  await healthy.until('c5');
  assert.deepEqual(healthy.received, ['e0', 'e1', 'e2', 'e3', 'e4', 'c5']);
  assert.deepEqual(hanging.received, []);

  // The warning is logged after status() was updated.
  const [warning] = (await failingReported) as [{ sink: string }];
  assert.equal(warning.sink, 'failing');
  const byName = Object.fromEntries(dispatcher.status().map((s) => [s.name, s]));
  assert.equal(byName.failing?.failing, true);
  assert.equal(byName.failing?.deliveredIndex, -1);
  assert.match(byName.failing?.lastError ?? '', /destination refused the batch/);
  assert.equal(byName.hanging?.deliveredIndex, -1);
  assert.equal(byName.hanging?.failing, false);

  // Released and recovered, both catch up on their own, in order.
  release();
  hanging.gate = undefined;
  failing.refuse = 0;
  await dispatcher.flush();
  for (const sink of [hanging, failing]) assert.deepEqual(sink.received, healthy.received);
  assert.deepEqual(
    dispatcher.status().map((s) => [s.name, s.deliveredIndex, s.lastCheckpointSize, s.failing, s.lastError]),
    [
      ['hanging', 4, 5, false, undefined],
      ['failing', 4, 5, false, undefined],
      ['healthy', 4, 5, false, undefined],
    ],
  );
});

test('the cursor is persisted atomically and a new dispatcher resumes from it: no gaps, no loss', async (t) => {
  const stateDir = await tempDir(t);
  const log = new MemoryLog().append(4).checkpoint().append(1);
  const first = new RecordingSink('siem');
  const options = {
    stateDir,
    readEntries: log.readEntries,
    readCheckpoints: log.readCheckpoints,
    batchSize: 2,
  };
  const before = createSinkDispatcher({ sinks: [first], ...options });
  await before.flush();
  await before.close();
  assert.deepEqual(first.received, ['e0', 'e1', 'e2', 'e3', 'c4', 'e4']);
  const cursorPath = join(stateDir, 'siem.cursor.json');
  assert.deepEqual(JSON.parse(await readFile(cursorPath, 'utf8')), { nextIndex: 5, checkpointSize: 4 });
  assert.equal((await stat(cursorPath)).mode & 0o777, 0o600);

  // Committed while the process was down.
  log.append(3).checkpoint();
  const second = new RecordingSink('siem');
  const after = createSinkDispatcher({ sinks: [second], ...options });
  t.after(() => after.close());
  await after.flush();
  assert.deepEqual(second.received, ['e5', 'e6', 'e7', 'c8']);
  assert.deepEqual(after.status(), [
    { name: 'siem', deliveredIndex: 7, lastCheckpointSize: 8, failing: false },
  ]);
});

test('a refused batch is delivered again from the same cursor (at least once, in order)', async (t) => {
  const log = new MemoryLog().append(6);
  const sink = new RecordingSink('siem');
  sink.refuse = 2;
  const dispatcher = createSinkDispatcher({
    sinks: [sink],
    stateDir: await tempDir(t),
    readEntries: log.readEntries,
    readCheckpoints: log.readCheckpoints,
    batchSize: 4,
    retry: FAST_RETRY,
  });
  t.after(() => dispatcher.close());
  await dispatcher.flush();
  assert.deepEqual(sink.received, ['e0', 'e1', 'e2', 'e3', 'e4', 'e5']);
});

test('checkpoints follow the entries they cover, interleaved as committed', async (t) => {
  const dir = await tempDir(t);
  const log = new MemoryLog().append(3).checkpoint().append(4).checkpoint().append(3).checkpoint().append(2);
  const recording = new RecordingSink('recording');
  const file = createJsonlFileSink({
    name: 'file',
    path: join(dir, 'audit.jsonl'),
    maxBytes: 1 << 20,
    keep: 1,
  });
  const dispatcher = createSinkDispatcher({
    sinks: [recording, file],
    stateDir: join(dir, 'state'),
    readEntries: log.readEntries,
    readCheckpoints: log.readCheckpoints,
    batchSize: 100,
  });
  t.after(() => dispatcher.close());
  await dispatcher.flush();
  const expected = [
    'e0',
    'e1',
    'e2',
    'c3',
    'e3',
    'e4',
    'e5',
    'e6',
    'c7',
    'e7',
    'e8',
    'e9',
    'c10',
    'e10',
    'e11',
  ];
  assert.deepEqual(recording.received, expected);
  const lines = (await readFile(join(dir, 'audit.jsonl'), 'utf8')).trim().split('\n');
  assert.deepEqual(
    lines.map((l) => JSON.parse(l)).map((r) => (r.type === 'entry' ? `e${r.index}` : `c${r.size}`)),
    expected,
  );
});

test('a checkpoint whose entries are not readable yet waits for them', async (t) => {
  const log = new MemoryLog().append(2);
  log.checkpoints.push({ size: 4, note: 'early' });
  const sink = new RecordingSink('siem');
  const dispatcher = createSinkDispatcher({
    sinks: [sink],
    stateDir: await tempDir(t),
    readEntries: log.readEntries,
    readCheckpoints: log.readCheckpoints,
  });
  t.after(() => dispatcher.close());
  await dispatcher.flush();
  assert.deepEqual(sink.received, ['e0', 'e1']);
  log.append(2);
  dispatcher.notify();
  await sink.until('c4');
  assert.deepEqual(sink.received, ['e0', 'e1', 'e2', 'e3', 'c4']);
});

test('status() and the log report a failing webhook without its secret, URL token or entry contents', async (t) => {
  const pki = await makePki();
  const secret = randomBytes(32);
  const receiver = new WebhookReceiver(secret, () => 503);
  const url = await receiver.start(pki.server);
  t.after(() => receiver.close());
  const logged: string[] = [];
  const warned = new EventEmitter();
  const logger = {
    info: (o: object, m?: string) => logged.push(JSON.stringify(o) + (m ?? '')),
    warn: (o: object, m?: string) => {
      logged.push(JSON.stringify(o) + (m ?? ''));
      warned.emit('warn');
    },
    error: (o: object, m?: string) => logged.push(JSON.stringify(o) + (m ?? '')),
  };
  const log = new MemoryLog().append(3);
  const dispatcher = createSinkDispatcher({
    sinks: [createWebhookSink({ name: 'siem', url, secret, ca: pki.ca.certPem })],
    stateDir: await tempDir(t),
    readEntries: log.readEntries,
    readCheckpoints: log.readCheckpoints,
    logger,
    retry: FAST_RETRY,
  });
  t.after(() => dispatcher.close());
  await untilEvent('two warnings', warned, 'warn', () => logged.length >= 2);

  const [status] = dispatcher.status();
  assert.equal(status?.failing, true);
  assert.equal(status?.deliveredIndex, -1);
  assert.match(
    status?.lastError ?? '',
    /TRESOR_ERR_UNAVAILABLE: webhook sink siem \(127\.0\.0\.1:\d+\): answered HTTP 503/,
  );
  const visible = [JSON.stringify(dispatcher.status()), ...logged];
  for (const text of visible) {
    assert.ok(!text.includes(secret.toString('hex')), 'no secret (hex)');
    assert.ok(!text.includes(secret.toString('base64')), 'no secret (base64)');
    assert.ok(!text.includes('url-token'), 'no URL query');
    assert.ok(!text.includes(CUSTOMER_MARKER), 'no entry contents');
  }
  assert.ok(receiver.requests.length >= 2, 'it kept retrying');
});

test('refuses to resume from a cursor file it cannot read, rather than starting over', async (t) => {
  const stateDir = await tempDir(t);
  await writeFile(join(stateDir, 'siem.cursor.json'), '{"nextIndex": -3}');
  const log = new MemoryLog().append(2);
  const sink = new RecordingSink('siem');
  const warned = new EventEmitter();
  const dispatcher = createSinkDispatcher({
    sinks: [sink],
    stateDir,
    readEntries: log.readEntries,
    readCheckpoints: log.readCheckpoints,
    retry: FAST_RETRY,
    logger: { info() {}, warn: () => warned.emit('warn'), error() {} },
  });
  await once(warned, 'warn');
  assert.equal(dispatcher.status()[0]?.failing, true);
  assert.match(dispatcher.status()[0]?.lastError ?? '', /cursor file .* needs non-negative integers/);
  assert.deepEqual(sink.received, []);
  const pending = dispatcher.flush();
  await dispatcher.close();
  await assert.rejects(pending, /closed/);
});

test('refuses sink names that could not be file names, and duplicates', async (t) => {
  const stateDir = await tempDir(t);
  const log = new MemoryLog();
  const make = (names: string[]) =>
    createSinkDispatcher({
      sinks: names.map((n) => new RecordingSink(n)),
      stateDir,
      readEntries: log.readEntries,
      readCheckpoints: log.readCheckpoints,
    });
  assert.throws(() => make(['../etc']), /must match/);
  assert.throws(() => make(['a', 'a']), /duplicate/);
});
