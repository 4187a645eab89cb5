/**
 * A development certificate authority: the certificates `tresor dev` and the tests need for the
 * HTTPS server and for mTLS between the server and keyd, made in-process so nobody runs openssl
 * by hand. Production operators bring certificates from their own PKI; nothing here is special
 * about them.
 *
 * Choices: ECDSA P-256 with SHA-256 (NIST SP 800-57 Part 1 §5.6: 128-bit security); RFC 5280
 * extensions — basicConstraints CA:true (pathLen 0) only on the CA, CA:false on leaves, both
 * critical (§4.2.1.9); keyUsage critical (§4.2.1.3); extendedKeyUsage serverAuth or clientAuth so a
 * client certificate cannot serve as a server's and back (§4.2.1.12); subject and authority key
 * identifiers (§4.2.1.1–2); a positive random 128-bit serial (§4.1.2.2: at most 20 octets; CA/B
 * Forum: at least 64 bits of randomness). Private keys leave as PKCS#8 PEM.
 */
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata
// polyfill loaded before it; a side-effect import keeps that ordering explicit.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

export { fingerprint256 } from './fingerprint.ts';

/** A certificate and its private key, both PEM. */
export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

export interface IssueCertificateOptions {
  commonName: string;
  sans?: { dns?: string[]; ip?: string[] };
  /** server: TLS server authentication (needs at least one SAN); client: TLS client authentication (mTLS). */
  usage: 'server' | 'client';
  days: number;
}

const EC_KEY: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const DAY_MS = 86_400_000;
/** Backdating absorbs small clock differences between the machines that check the certificate. */
const BACKDATE_MS = 5 * 60_000;

// Node's webcrypto is the WebCrypto @peculiar/x509 expects; passed explicitly, never set globally.
const crypto = webcrypto;

/** A self-signed CA certificate valid for `days` (default 10 years) that may sign leaf certificates only. */
export async function createDevCa(options: {
  commonName: string;
  days?: number;
}): Promise<CertificateAndKey> {
  const keys = await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
  const { notBefore, notAfter } = validity(options.days ?? 3650);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: distinguishedName(options.commonName),
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { certPem: cert.toString('pem'), keyPem: await exportPkcs8(keys.privateKey) };
}

/** A leaf certificate signed by `ca` for TLS server or client authentication. */
export async function issueCertificate(
  ca: CertificateAndKey,
  options: IssueCertificateOptions,
): Promise<CertificateAndKey> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await crypto.subtle.importKey('pkcs8', pemBody(ca.keyPem), EC_KEY, false, ['sign']);
  const keys = await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']);
  const names = subjectAltNames(options);
  if (options.usage === 'server' && names.length === 0) {
    throw new TypeError('a server certificate needs at least one DNS or IP subject alternative name');
  }
  const { notBefore, notAfter } = validity(options.days);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(
      [options.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey, false, crypto),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: distinguishedName(options.commonName),
      issuer: caCert.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGNING,
      extensions,
    },
    crypto,
  );
  return { certPem: cert.toString('pem'), keyPem: await exportPkcs8(keys.privateKey) };
}

function subjectAltNames(options: IssueCertificateOptions): x509.JsonGeneralName[] {
  const dns = options.sans?.dns ?? [];
  const ip = options.sans?.ip ?? [];
  for (const address of ip) {
    if (isIP(address) === 0) throw new TypeError(`not an IP address: ${address}`);
  }
  return [
    ...dns.map((value) => ({ type: 'dns' as const, value })),
    ...ip.map((value) => ({ type: 'ip' as const, value })),
  ];
}

/** RFC 4514 string with the common name escaped, so a name like `a,b` cannot add attributes. */
function distinguishedName(commonName: string): string {
  if (commonName.length === 0 || commonName.length > 64) {
    throw new TypeError('common name must be 1-64 characters (RFC 5280 ub-common-name)');
  }
  return `CN=${commonName.replace(/[,+"\\<>;=#]/g, (c) => `\\${c}`)}`;
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isInteger(days) || days < 1) throw new TypeError('days must be a positive integer');
  const now = Date.now();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * DAY_MS) };
}

/** 16 random bytes with the top bit cleared (DER INTEGER stays positive) and a non-zero first byte (no leading-zero trim). */
function randomSerial(): string {
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01;
  return serial.toString('hex');
}

async function exportPkcs8(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  try {
    return x509.PemConverter.encode(der, 'PRIVATE KEY');
  } finally {
    der.fill(0);
  }
}

function pemBody(pem: string): Buffer {
  const [der] = x509.PemConverter.decode(pem);
  if (der === undefined) throw new TypeError('no PEM block found in private key');
  return Buffer.from(der);
}
