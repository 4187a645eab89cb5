/**
 * The `audit.sinks` configuration: valid arrays become typed configs, every mistake names its
 * field, secrets are accepted only from files, and createSinks reads those files at start.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { createSinks, parseSinkConfig } from '../../../src/audit/sinks/config.ts';
import { makePki, tempDir } from './helpers.ts';

const WHERE = 'tresor.json: audit.sinks';

test('parses file, syslog and webhook sinks', () => {
  const json = [
    { kind: 'file', name: 'siem-file', path: '/var/log/tresor/audit.jsonl', maxBytes: 1048576, keep: 5 },
    {
      kind: 'syslog',
      name: 'rsyslog',
      host: 'logs.internal',
      port: 6514,
      caFile: '/etc/ca.pem',
      facility: 10,
    },
    {
      kind: 'webhook',
      name: 'siem',
      url: 'https://siem.test/hook',
      secretFile: '/run/secrets/hmac',
      timeoutMs: 5000,
    },
  ];
  assert.deepEqual(parseSinkConfig(json, WHERE), json);
  assert.deepEqual(parseSinkConfig([], WHERE), []);
});

test('names the bad field in each error', () => {
  const cases: [unknown, RegExp][] = [
    [{}, /audit\.sinks: must be an array/],
    [[null], /audit\.sinks\[0\]: must be an object/],
    [[{ kind: 'kafka', name: 'k' }], /\[0\]\.kind: must be "file", "syslog" or "webhook"/],
    [[{ kind: 'file', name: 'Bad Name', path: '/a', maxBytes: 1, keep: 1 }], /\[0\]\.name: must match/],
    [[{ kind: 'file', name: 'f', path: '/a', keep: 1 }], /\[0\]\.maxBytes: required/],
    [
      [{ kind: 'file', name: 'f', path: '/a', maxBytes: 1.5, keep: 1 }],
      /\[0\]\.maxBytes: must be an integer/,
    ],
    [
      [{ kind: 'file', name: 'f', path: '', maxBytes: 1, keep: 1 }],
      /\[0\]\.path: must be a non-empty string/,
    ],
    [
      [{ kind: 'file', name: 'f', path: '/a', maxBytes: 1, keep: 1, mode: 644 }],
      /\[0\]\.mode: unknown field/,
    ],
    [
      [{ kind: 'syslog', name: 's', host: 'h', port: 70000, caFile: '/ca' }],
      /\[0\]\.port: must be an integer from 1 to 65535/,
    ],
    [
      [{ kind: 'syslog', name: 's', host: 'h', port: 1, caFile: '/ca', certFile: '/c' }],
      /\[0\]\.keyFile: certFile and keyFile go together/,
    ],
    [
      [{ kind: 'syslog', name: 's', host: 'h', port: 1, caFile: '/ca', appName: 'a b' }],
      /\[0\]\.appName: must be 1-48 printable/,
    ],
    [
      [{ kind: 'webhook', name: 'w', url: 'http://siem.test/', secretFile: '/s' }],
      /\[0\]\.url: must be an https: URL/,
    ],
    [
      [{ kind: 'webhook', name: 'w', url: 'https://u:p@siem.test/', secretFile: '/s' }],
      /\[0\]\.url: must not carry credentials/,
    ],
    [[{ kind: 'webhook', name: 'w', url: 'not a url', secretFile: '/s' }], /\[0\]\.url: not a valid URL/],
    [
      [
        { kind: 'file', name: 'same', path: '/a', maxBytes: 1, keep: 1 },
        { kind: 'file', name: 'same', path: '/b', maxBytes: 1, keep: 1 },
      ],
      /\[1\]\.name: "same" is used by another sink/,
    ],
  ];
  for (const [json, message] of cases) assert.throws(() => parseSinkConfig(json, WHERE), message);
});

test('refuses an inline secret and points to secretFile', () => {
  assert.throws(
    () =>
      parseSinkConfig(
        [{ kind: 'webhook', name: 'w', url: 'https://siem.test/', secret: 'hunter2-hunter2' }],
        WHERE,
      ),
    (error: Error) => {
      assert.match(
        error.message,
        /\[0\]\.secret: secrets are never inline; put it in a file and name it in secretFile/,
      );
      assert.ok(!error.message.includes('hunter2'), 'the error does not repeat the secret');
      return true;
    },
  );
});

test('createSinks reads the certificate and secret files, and names a file it cannot read', async (t) => {
  const dir = await tempDir(t);
  const pki = await makePki();
  await writeFile(join(dir, 'ca.pem'), pki.ca.certPem);
  await writeFile(join(dir, 'hmac'), `${randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
  await writeFile(join(dir, 'short'), 'too-short\n', { mode: 0o600 });
  const configs = parseSinkConfig(
    [
      { kind: 'file', name: 'file', path: join(dir, 'audit.jsonl'), maxBytes: 1000, keep: 2 },
      { kind: 'syslog', name: 'syslog', host: '127.0.0.1', port: 6514, caFile: join(dir, 'ca.pem') },
      { kind: 'webhook', name: 'siem', url: 'https://siem.test/', secretFile: join(dir, 'hmac') },
    ],
    WHERE,
  );
  const sinks = createSinks(configs);
  assert.deepEqual(
    sinks.map((s) => s.name),
    ['file', 'syslog', 'siem'],
  );
  await Promise.all(sinks.map((s) => s.close()));

  const short = parseSinkConfig(
    [{ kind: 'webhook', name: 'siem', url: 'https://siem.test/', secretFile: join(dir, 'short') }],
    WHERE,
  );
  assert.throws(() => createSinks(short), /sink siem: secretFile must hold at least 32 bytes/);
  const missing = parseSinkConfig(
    [{ kind: 'syslog', name: 'syslog', host: 'h', port: 1, caFile: join(dir, 'nope.pem') }],
    WHERE,
  );
  assert.throws(() => createSinks(missing), /sink syslog: caFile .*nope\.pem cannot be read \(ENOENT\)/);
});
