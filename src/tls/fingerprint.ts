/**
 * Certificate fingerprints as allowlists name them. Operators copy them from `openssl x509
 * -fingerprint -sha256` (colon-separated, upper case) or from Node (`fingerprint256`, the same
 * form), or write plain hex: every form is normalised to 64 lower-case hex digits before comparing.
 */
import { X509Certificate } from 'node:crypto';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** SHA-256 of the certificate's DER encoding, exactly as Node's `X509Certificate.fingerprint256` gives it (`AB:CD:…`). */
export function fingerprint256(certPem: string | Buffer): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** `AB:CD:…` or `abcd…` → `abcd…` (64 hex digits); undefined when the input is not a SHA-256 fingerprint. */
export function normaliseFingerprint(fingerprint: string): string | undefined {
  const hex = fingerprint.replaceAll(':', '').trim().toLowerCase();
  return SHA256_HEX.test(hex) ? hex : undefined;
}
