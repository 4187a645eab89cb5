/**
 * Audit HMACs: a value an audit entry must let an auditor correlate but never reveal — a searched
 * value, say — appears only as HMAC-SHA-256 under the tenant's purpose-bound `audit-hmac` key from
 * keyd (never the data or blind-index key: one purpose per key). The key is derived per tenant, so
 * the same value searched twice in a tenant gives the same HMAC (an auditor sees "the same person
 * was looked up three times") while two tenants' HMACs of one value are unrelated. The entry also
 * names the key id, because a rotated key starts new HMACs.
 */
import { createHmac } from 'node:crypto';
import { encodeAad } from './aad.ts';
import { hkdf } from './hkdf.ts';

/** The tenant's audit-HMAC key: HKDF(audit-hmac data key, info = tenant). Wipe after use. */
export function deriveAuditHmacKey(auditKey: Uint8Array, tenant: string): Buffer {
  return hkdf(auditKey, encodeAad('audit-hmac-key', { tenant }).toString('base64'));
}

/** HMAC-SHA-256 of the value's NFC form, base64url. */
export function auditHmac(key: Uint8Array, value: string): string {
  return createHmac('sha256', key).update(value.normalize('NFC'), 'utf8').digest('base64url');
}
