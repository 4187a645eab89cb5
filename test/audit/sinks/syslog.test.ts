/**
 * The syslog sink against a real TLS collector written here: RFC 5425 octet-counted frames,
 * RFC 5424 header, structured data and BOM-prefixed MSG; reconnecting after the collector closes
 * or was down; refusing a collector whose certificate another CA issued or names another host.
 */
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { before, describe, test } from 'node:test';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { checkpointRecord, entryRecord } from '../../../src/audit/sinks/jsonl-file.ts';
import { createSyslogSink } from '../../../src/audit/sinks/syslog.ts';
import type { CertificateAndKey } from '../../../src/tls/dev-ca.ts';
import { untilEvent } from '../../helpers/wait.ts';
import { makeEntry, makePki, type TestPki } from './helpers.ts';

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** A collector: RFC 5425 §4.3 frames are `MSG-LEN SP SYSLOG-MSG`, read here byte-exactly. */
class Collector extends EventEmitter {
  readonly messages: Buffer[] = [];
  readonly sockets: TLSSocket[] = [];
  readonly clientErrors: Error[] = [];
  server: Server | undefined;

  async listen(cert: CertificateAndKey, port = 0): Promise<number> {
    this.server = createServer({ cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.2' }, (socket) => {
      this.sockets.push(socket);
      let buffer = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        for (;;) {
          const space = buffer.indexOf(0x20);
          if (space < 0) return;
          const length = Number(buffer.subarray(0, space).toString('ascii'));
          assert.ok(Number.isInteger(length) && length > 0, 'MSG-LEN is a positive decimal');
          if (buffer.length < space + 1 + length) return;
          this.messages.push(buffer.subarray(space + 1, space + 1 + length));
          buffer = buffer.subarray(space + 1 + length);
          this.emit('message');
        }
      });
      socket.on('error', () => undefined);
    });
    this.server.on('tlsClientError', (error) => this.clientErrors.push(error));
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as AddressInfo).port;
  }

  async until(count: number): Promise<void> {
    await untilEvent(`${count} syslog messages`, this, 'message', () => this.messages.length >= count);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

interface Parsed {
  pri: number;
  version: string;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  sdId: string;
  params: Record<string, string>;
  msg: Buffer;
}

/** RFC 5424 §6: HEADER SP STRUCTURED-DATA SP MSG, with §6.3.3 escapes undone. */
function parse(message: Buffer): Parsed {
  const text = message.toString('utf8');
  const header = /^<(\d{1,3})>(\d) (\S+) (\S+) (\S+) (\S+) (\S+) \[/.exec(text);
  assert.ok(header, `RFC 5424 header: ${text.slice(0, 80)}`);
  let i = header[0].length;
  const sdIdEnd = text.indexOf(' ', i);
  const sdId = text.slice(i, sdIdEnd);
  i = sdIdEnd;
  const params: Record<string, string> = {};
  while (text[i] === ' ') {
    const eq = text.indexOf('="', i);
    const key = text.slice(i + 1, eq);
    i = eq + 2;
    let value = '';
    while (text[i] !== '"') {
      if (text[i] === '\\' && ['"', '\\', ']'].includes(text[i + 1] ?? '')) i += 1;
      value += text[i];
      i += 1;
    }
    params[key] = value;
    i += 1;
  }
  assert.equal(text[i], ']');
  assert.equal(text[i + 1], ' ');
  const msgStart = Buffer.byteLength(text.slice(0, i + 2));
  return {
    pri: Number(header[1]),
    version: header[2] ?? '',
    timestamp: header[3] ?? '',
    hostname: header[4] ?? '',
    appName: header[5] ?? '',
    procId: header[6] ?? '',
    msgId: header[7] ?? '',
    sdId,
    params,
    msg: message.subarray(msgStart),
  };
}

describe('syslog sink', () => {
  let pki: TestPki;
  before(async () => {
    pki = await makePki();
  });

  test('sends RFC 5424 messages in octet-counted frames over TLS: header, escaped SD, BOM and JSON', async (t) => {
    const collector = new Collector();
    const port = await collector.listen(pki.server);
    t.after(() => collector.close());
    const sink = createSyslogSink({
      name: 'syslog',
      host: '127.0.0.1',
      port,
      ca: pki.ca.certPem,
      hostname: 'node-1.tresor.test',
    });
    t.after(() => sink.close());
    const tricky = makeEntry(1, 'ten"ant]\\x');
    const entries = [makeEntry(0), tricky, makeEntry(2, null)];
    const before = Date.now();
    await sink.deliverEntries(entries);
    await sink.deliverCheckpoint('tresor.test/audit\n3\nroot=\n\n— k sig\n', 3);
    await collector.until(4);

    const parsed = collector.messages.map(parse);
    for (const [i, p] of parsed.entries()) {
      assert.equal(p.version, '1');
      assert.equal(p.hostname, 'node-1.tresor.test');
      assert.equal(p.appName, 'tresor');
      assert.equal(p.procId, String(process.pid));
      assert.equal(p.sdId, 'tresor@32473');
      assert.match(p.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(Date.parse(p.timestamp) >= before - 1000 && Date.parse(p.timestamp) <= Date.now());
      assert.deepEqual(p.msg.subarray(0, 3), BOM, `message ${i} MSG starts with the UTF-8 BOM`);
    }
    // Facility 13 (log audit) × 8 + severity 6 (informational) / 5 (notice).
    assert.deepEqual(
      parsed.map((p) => [p.pri, p.msgId]),
      [
        [110, 'entry'],
        [110, 'entry'],
        [110, 'entry'],
        [109, 'checkpoint'],
      ],
    );
    assert.deepEqual(parsed[0]?.params, { index: '0', tenant: 't-1' });
    assert.deepEqual(parsed[1]?.params, { index: '1', tenant: 'ten"ant]\\x' });
    assert.match(collector.messages[1]?.toString('utf8') ?? '', /tenant="ten\\"ant\\]\\\\x"\]/);
    assert.deepEqual(parsed[2]?.params, { index: '2' });
    assert.deepEqual(parsed[3]?.params, { size: '3' });
    for (const [i, entry] of entries.entries()) {
      assert.equal(parsed[i]?.msg.subarray(3).toString('utf8'), entryRecord(entry));
    }
    assert.equal(
      parsed[3]?.msg.subarray(3).toString('utf8'),
      checkpointRecord('tresor.test/audit\n3\nroot=\n\n— k sig\n', 3),
    );
    assert.equal(collector.sockets.length, 1, 'one connection carries every batch');
  });

  test('reconnects after the collector closes the connection', async (t) => {
    const collector = new Collector();
    const port = await collector.listen(pki.server);
    t.after(() => collector.close());
    const sink = createSyslogSink({ name: 'syslog', host: 'localhost', port, ca: pki.ca.certPem });
    t.after(() => sink.close());

    await sink.deliverEntries([makeEntry(0)]);
    await collector.until(1);
    const first = collector.sockets[0];
    assert.ok(first);
    // The collector hangs up (as rsyslog does on restart); the socket closes once the sink answered.
    first.end();
    await once(first, 'close');

    await sink.deliverEntries([makeEntry(1)]);
    await collector.until(2);
    assert.equal(collector.sockets.length, 2);
    assert.deepEqual(
      collector.messages.map((m) => parse(m).params.index),
      ['0', '1'],
    );
  });

  test('fails while the collector is down and delivers once it is back', async (t) => {
    const probe = new Collector();
    const port = await probe.listen(pki.server);
    await probe.close();
    const sink = createSyslogSink({ name: 'syslog', host: '127.0.0.1', port, ca: pki.ca.certPem });
    t.after(() => sink.close());

    await assert.rejects(sink.deliverEntries([makeEntry(0)]), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'TRESOR_ERR_UNAVAILABLE');
      assert.match(error.message, /ECONNREFUSED/);
      return true;
    });
    const collector = new Collector();
    await collector.listen(pki.server, port);
    t.after(() => collector.close());
    await sink.deliverEntries([makeEntry(0)]);
    await collector.until(1);
    assert.equal(parse(collector.messages[0] ?? Buffer.alloc(0)).params.index, '0');
  });

  test('refuses a collector whose certificate another CA issued', async (t) => {
    const collector = new Collector();
    const port = await collector.listen(pki.otherServer);
    t.after(() => collector.close());
    const sink = createSyslogSink({ name: 'syslog', host: 'localhost', port, ca: pki.ca.certPem });
    t.after(() => sink.close());
    await assert.rejects(sink.deliverEntries([makeEntry(0)]), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'TRESOR_ERR_UNAVAILABLE');
      assert.match(error.message, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|certificate/i);
      return true;
    });
    assert.equal(collector.messages.length, 0);
  });

  test('refuses a collector whose certificate names another host', async (t) => {
    const collector = new Collector();
    const port = await collector.listen(pki.server);
    t.after(() => collector.close());
    const sink = createSyslogSink({
      name: 'syslog',
      host: '127.0.0.1',
      port,
      ca: pki.ca.certPem,
      servername: 'logs.elsewhere.test',
    });
    t.after(() => sink.close());
    await assert.rejects(sink.deliverEntries([makeEntry(0)]), /ERR_TLS_CERT_ALTNAME_INVALID|altname/i);
    assert.equal(collector.messages.length, 0);
  });

  test('refuses header fields RFC 5424 does not allow', () => {
    const base = { name: 'syslog', host: '127.0.0.1', port: 6514, ca: 'x' };
    assert.throws(() => createSyslogSink({ ...base, appName: 'has space' }), /appName/);
    assert.throws(() => createSyslogSink({ ...base, appName: 'a'.repeat(49) }), /appName/);
    assert.throws(() => createSyslogSink({ ...base, facility: 24 }), /facility/);
    assert.throws(() => createSyslogSink({ ...base, cert: 'only-cert' }), /cert and key/);
  });
});
