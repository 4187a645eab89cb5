/**
 * The development CA: certificates that Node's TLS stack and OpenSSL accept for what they are
 * issued for (and only that), with the RFC 5280 extensions an auditor expects to see.
 */
// @peculiar/x509 needs the Reflect metadata polyfill loaded first (see src/tls/dev-ca.ts).
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { before, describe, test } from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import * as x509 from '@peculiar/x509';
import {
  type CertificateAndKey,
  createDevCa,
  fingerprint256,
  issueCertificate,
} from '../../src/tls/dev-ca.ts';
import { normaliseFingerprint } from '../../src/tls/fingerprint.ts';

const DAY_MS = 86_400_000;

describe('dev CA', () => {
  let ca: CertificateAndKey;
  let server: CertificateAndKey;
  let client: CertificateAndKey;

  before(async () => {
    ca = await createDevCa({ commonName: 'Tresor dev CA' });
    server = await issueCertificate(ca, {
      commonName: 'tresor.local',
      sans: { dns: ['localhost', 'tresor.local'], ip: ['127.0.0.1', '::1'] },
      usage: 'server',
      days: 30,
    });
    client = await issueCertificate(ca, { commonName: 'api-1', usage: 'client', days: 30 });
  });

  test('makes a self-signed ECDSA P-256 CA that may sign certificates and nothing else', () => {
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, 'CN=Tresor dev CA');
    assert.ok(cert.checkIssued(cert) && cert.verify(cert.publicKey));
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const parsed = new x509.X509Certificate(ca.certPem);
    const constraints = parsed.getExtension(x509.BasicConstraintsExtension);
    assert.ok(constraints?.ca && constraints.critical);
    assert.equal(constraints.pathLength, 0);
    const usage = parsed.getExtension(x509.KeyUsagesExtension);
    assert.equal(usage?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    const algorithm = parsed.signatureAlgorithm as unknown as { name: string; hash: { name: string } };
    assert.deepEqual([algorithm.name, algorithm.hash.name], ['ECDSA', 'SHA-256']);
  });

  test('issues a server certificate for its SANs, signed by the CA, for serverAuth only', () => {
    const cert = new X509Certificate(server.certPem);
    const caCert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, false);
    assert.ok(cert.checkIssued(caCert) && cert.verify(caCert.publicKey));
    assert.equal(
      cert.subjectAltName,
      'DNS:localhost, DNS:tresor.local, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    assert.equal(cert.checkHost('tresor.local'), 'tresor.local');
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    const parsed = new x509.X509Certificate(server.certPem);
    assert.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.critical, true);
    assert.equal(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
  });

  test('issues a client certificate for clientAuth only', () => {
    const cert = new X509Certificate(client.certPem);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.equal(cert.subject, 'CN=api-1');
    assert.equal(cert.subjectAltName, undefined);
  });

  test('links each certificate to its issuer by key identifier', () => {
    const caSki = new x509.X509Certificate(ca.certPem).getExtension(
      x509.SubjectKeyIdentifierExtension,
    )?.keyId;
    for (const leaf of [server, client]) {
      const parsed = new x509.X509Certificate(leaf.certPem);
      assert.ok(caSki);
      assert.equal(parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, caSki);
      assert.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    }
  });

  test('writes private keys as PKCS#8 PEM matching their certificates', () => {
    for (const pair of [ca, server, client]) {
      assert.match(pair.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
      const key = createPrivateKey(pair.keyPem);
      assert.equal(key.asymmetricKeyType, 'ec');
      const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
      const fromCert = new X509Certificate(pair.certPem).publicKey.export({ type: 'spki', format: 'der' });
      assert.deepEqual(fromKey, fromCert);
    }
  });

  test('gives every certificate a distinct positive serial and the validity asked for', async () => {
    const again = await issueCertificate(ca, { commonName: 'api-1', usage: 'client', days: 7 });
    const serials = [ca, server, client, again].map((c) => new X509Certificate(c.certPem).serialNumber);
    assert.equal(new Set(serials).size, 4);
    for (const serial of serials)
      assert.ok(Number.parseInt((serial as string).slice(0, 2), 16) < 0x80, serial);
    const cert = new X509Certificate(again.certPem);
    const lifetime = Date.parse(cert.validTo) - Date.now();
    assert.ok(Math.abs(lifetime - 7 * DAY_MS) < 60_000, `valid for ${lifetime} ms`);
    assert.ok(Date.parse(cert.validFrom) <= Date.now());
  });

  test('refuses a server certificate without a name to check, and malformed input', async () => {
    await assert.rejects(
      issueCertificate(ca, { commonName: 'x', usage: 'server', days: 1 }),
      /subject alternative name/,
    );
    await assert.rejects(
      issueCertificate(ca, { commonName: 'x', sans: { ip: ['not-an-ip'] }, usage: 'server', days: 1 }),
      /not an IP/,
    );
    await assert.rejects(issueCertificate(ca, { commonName: 'x', usage: 'client', days: 0 }), /days/);
  });

  test('escapes a common name so it cannot add attributes', async () => {
    const cert = await issueCertificate(ca, { commonName: 'a,O=Evil', usage: 'client', days: 1 });
    assert.doesNotMatch(new X509Certificate(cert.certPem).subject, /^O=/m);
  });

  test("computes fingerprint256 exactly as Node's X509Certificate does, and normalises its forms", () => {
    const expected = new X509Certificate(client.certPem).fingerprint256;
    assert.equal(fingerprint256(client.certPem), expected);
    const hex = expected.replaceAll(':', '').toLowerCase();
    assert.equal(normaliseFingerprint(expected), hex);
    assert.equal(normaliseFingerprint(hex.toUpperCase()), hex);
    assert.equal(normaliseFingerprint('AB:CD'), undefined);
    assert.equal(normaliseFingerprint(`${hex}00`), undefined);
  });

  test('its certificates complete a mutual TLS 1.3 handshake in Node', async () => {
    const tlsServer = createServer({
      cert: server.certPem,
      key: server.keyPem,
      ca: ca.certPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    });
    const accepted = once(tlsServer, 'secureConnection') as Promise<[TLSSocket]>;
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
    const { port } = tlsServer.address() as { port: number };
    const socket = connect({
      host: '127.0.0.1',
      port,
      servername: 'tresor.local',
      ca: ca.certPem,
      cert: client.certPem,
      key: client.keyPem,
    });
    try {
      await once(socket, 'secureConnect');
      assert.equal(socket.authorized, true);
      const [peer] = await accepted;
      assert.equal(peer.authorized, true);
      assert.equal(peer.getPeerCertificate().fingerprint256, fingerprint256(client.certPem));
      peer.destroy();
    } finally {
      socket.destroy();
      await new Promise((resolve) => tlsServer.close(resolve));
    }
  });
});
