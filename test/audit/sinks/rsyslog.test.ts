/**
 * The syslog sink against a real rsyslogd (Debian's rsyslog + rsyslog-gnutls): imtcp with the
 * gtls stream driver in TLS-only mode (StreamDriver.Mode=1, RFC 5425), writing what its RFC 5424
 * parser understood to a file. If rsyslog is missing this test fails and says what to install:
 * a skipped interoperability test proves nothing.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, watch } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkpointRecord, entryRecord } from '../../../src/audit/sinks/jsonl-file.ts';
import { createSyslogSink } from '../../../src/audit/sinks/syslog.ts';
import { makeEntry, makePki, tempDir } from './helpers.ts';

const RSYSLOGD = '/usr/sbin/rsyslogd';
const GTLS_DRIVER = '/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so';
const BOM = '\uFEFF';
/** rsyslogd writes within a second or two; a stuck one fails the test, naming the file. */
const FILE_TIMEOUT_MS = 30_000;

/** Resolves with the file's text once `ready(text)` holds; rejects if rsyslogd exits first. */
async function waitForFile(
  path: string,
  ready: (text: string) => boolean,
  daemon: ChildProcess,
): Promise<string> {
  const folder = join(path, '..');
  const watcher = watch(folder);
  try {
    const exited = once(daemon, 'exit').then(([code]) => {
      throw new Error(`rsyslogd exited (${code}) before ${path} was ready`);
    });
    const signal = AbortSignal.timeout(FILE_TIMEOUT_MS);
    for (;;) {
      const text = existsSync(path) ? await readFile(path, 'utf8') : '';
      if (ready(text)) return text;
      if (signal.aborted)
        throw new Error(`rsyslogd did not write what was expected to ${path} within ${FILE_TIMEOUT_MS} ms`);
      // The deadline ends the wait too; the loop then reads the file once more before failing.
      await Promise.race([once(watcher, 'change', { signal }).catch(() => undefined), exited]);
    }
  } finally {
    watcher.close();
  }
}

test('a real rsyslogd receives the messages over TLS and parses them as RFC 5424', async (t) => {
  assert.ok(
    existsSync(RSYSLOGD) && existsSync(GTLS_DRIVER),
    `rsyslog with its GnuTLS driver is needed for this test: apt-get install rsyslog rsyslog-gnutls (${RSYSLOGD}, ${GTLS_DRIVER})`,
  );
  const dir = await tempDir(t);
  const pki = await makePki();
  await writeFile(join(dir, 'ca.pem'), pki.ca.certPem);
  await writeFile(join(dir, 'cert.pem'), pki.server.certPem);
  await writeFile(join(dir, 'key.pem'), pki.server.keyPem, { mode: 0o600 });
  const portFile = join(dir, 'port');
  const outFile = join(dir, 'received.log');
  await writeFile(
    join(dir, 'rsyslog.conf'),
    `global(
  workDirectory="${dir}"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="${dir}/ca.pem"
  defaultNetstreamDriverCertFile="${dir}/cert.pem"
  defaultNetstreamDriverKeyFile="${dir}/key.pem"
  maxMessageSize="64k"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="${portFile}")
template(name="fields" type="string"
  string="%pri%|%protocol-version%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
if $app-name == "tresor" then {
  action(type="omfile" file="${outFile}" template="fields")
}
`,
  );
  const daemon = spawn(RSYSLOGD, ['-n', '-f', join(dir, 'rsyslog.conf'), '-i', join(dir, 'rsyslogd.pid')], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  t.after(async () => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await once(daemon, 'exit');
    }
  });
  const port = Number((await waitForFile(portFile, (text) => /^\d+\s*$/.test(text), daemon)).trim());

  const sink = createSyslogSink({
    name: 'rsyslog',
    host: 'localhost',
    port,
    ca: pki.ca.certPem,
    hostname: 'node-1.tresor.test',
  });
  t.after(() => sink.close());
  const entries = [makeEntry(0), makeEntry(1, 'ten"ant]\\x'), makeEntry(2, null)];
  const note = 'tresor.test/audit\n3\nroot=\n\n— k sig\n';
  await sink.deliverEntries(entries);
  await sink.deliverCheckpoint(note, 3);

  const text = await waitForFile(outFile, (t) => t.split('\n').length > 4, daemon);
  const lines = text.trimEnd().split('\n');
  const fields = lines.map((line) => {
    const parts = line.split('|');
    return [...parts.slice(0, 7), parts.slice(7).join('|')];
  });
  assert.deepEqual(
    fields.map((f) => f.slice(0, 6)),
    [
      ['110', '1', 'node-1.tresor.test', 'tresor', String(process.pid), 'entry'],
      ['110', '1', 'node-1.tresor.test', 'tresor', String(process.pid), 'entry'],
      ['110', '1', 'node-1.tresor.test', 'tresor', String(process.pid), 'entry'],
      ['109', '1', 'node-1.tresor.test', 'tresor', String(process.pid), 'checkpoint'],
    ],
  );
  assert.deepEqual(
    fields.map((f) => f[6]),
    [
      '[tresor@32473 index="0" tenant="t-1"]',
      '[tresor@32473 index="1" tenant="ten\\"ant\\]\\\\x"]',
      '[tresor@32473 index="2"]',
      '[tresor@32473 size="3"]',
    ],
  );
  const messages = fields.map((f) => (f[7] ?? '').replace(/^\uFEFF/, ''));
  assert.deepEqual(messages, [...entries.map(entryRecord), checkpointRecord(note, 3)]);
  assert.ok(!messages.some((m) => m.includes(BOM)));
});
