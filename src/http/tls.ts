/**
 * The HTTPS server's TLS settings, following RFC 9325 (BCP 195, "Recommendations for Secure Use
 * of TLS and DTLS"):
 *
 * - TLS 1.2 minimum (§3.1.1: MUST NOT negotiate TLS 1.0/1.1), TLS 1.3 preferred — Node negotiates
 *   the highest both sides support;
 * - TLS 1.3 suites (all AEAD with ephemeral key exchange, RFC 8446 §9.1) and, for TLS 1.2, only
 *   ECDHE (forward secrecy, §4.1) with AES-GCM or ChaCha20-Poly1305 (AEAD, §4.2) — no RSA key
 *   transport, no CBC, no SHA-1 MACs; the server's order wins (§4.2 recommends honoring it);
 * - groups X25519 then P-256 (§4.2.1);
 * - no renegotiation, no compression (CRIME, §3.3), no TLS 1.2 session tickets: Node never rotates
 *   the ticket key, and a long-lived ticket key undoes forward secrecy (§3.4, §4.3).
 *
 * Certificates come from PEM files (reloaded by reloadCertificates on SIGHUP) or the dev CA.
 */
import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';
import { ensureDevTls } from '../config/dev-tls.ts';
import type { TlsSource } from '../config/server-config.ts';

export const TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

export const TLS_POLICY = {
  minVersion: 'TLSv1.2',
  maxVersion: 'TLSv1.3',
  ciphers: TLS_CIPHERS,
  honorCipherOrder: true,
  ecdhCurve: 'X25519:P-256',
  secureOptions:
    constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_COMPRESSION | constants.SSL_OP_NO_TICKET,
} as const satisfies SecureContextOptions;

export interface CertificateFiles {
  certFile: string;
  keyFile: string;
  keyPassphrase?: string;
}

/** Where the certificate files are: as configured, or the dev CA's (made on first use). */
export async function certificateFiles(tls: TlsSource, dataDir: string): Promise<CertificateFiles> {
  if (tls.kind === 'files') return tls;
  const dev = await ensureDevTls(dataDir);
  return { certFile: dev.certFile, keyFile: dev.keyFile };
}

/** The secure context options: the policy plus the certificate read from disk now. */
export function secureContextOptions(files: CertificateFiles): SecureContextOptions {
  const options: SecureContextOptions = {
    ...TLS_POLICY,
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
  };
  if (files.keyPassphrase !== undefined) options.passphrase = files.keyPassphrase;
  return options;
}
