/**
 * a. Envelope encryption in process, 1 KiB values, against raw AES-256-GCM.
 *
 *   baseline     createCipheriv/createDecipheriv on 1 KiB with a fresh 96-bit nonce, no AAD
 *   encrypt      sealEnvelope with a data key; AAD = the field's context (tenant, collection,
 *                record, field, version) and the versioned header
 *   encrypt+wrap a new data key's full cost: random key and key id, the key sealed under a
 *                tenant-like key (as keyd wraps it), then the value sealed under the key
 *   decrypt      openEnvelope of a sealed value
 *   unwrap+decrypt  open the wrapped data key with the tenant-like key, then the value
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KEY_BYTES, NONCE_BYTES, newKeyId, openEnvelope, sealEnvelope, wipe } from '../src/crypto/index.ts';
import { measureSync } from './measure.ts';
import { baselineFigure, compared, type Section } from './report.ts';

export const VALUE_BYTES = 1024;

/** AAD purposes as the vault (field values) and keyd (wrapped data keys, src/keyd/data-keys.ts) use them. */
export const FIELD_AAD = 'field';
const DATA_KEY_AAD = 'data-key';

export function fieldContext(tenant: string, record: number) {
  return { tenant, collection: 'customers', record: `rec_${record}`, field: 'email', version: 1 };
}

export function benchInProcess(seconds: number): Section {
  const value = randomBytes(VALUE_BYTES);
  const tenant = 'acme';
  const context = fieldContext(tenant, 42);
  const tenantKey = randomBytes(KEY_BYTES);
  const tenantKeyId = 'tk.0123456789abcdef.v1';
  const dataKey = randomBytes(KEY_BYTES);
  const dataKeyId = newKeyId('dk');
  const wrapAad = { tenant, keyId: dataKeyId, purpose: 'data' };
  const wrapped = sealEnvelope(tenantKey, tenantKeyId, dataKey, DATA_KEY_AAD, wrapAad);
  const sealed = sealEnvelope(dataKey, dataKeyId, value, FIELD_AAD, context);

  const rawNonce = randomBytes(NONCE_BYTES);
  const rawCipher = createCipheriv('aes-256-gcm', dataKey, rawNonce);
  const rawCiphertext = Buffer.concat([rawCipher.update(value), rawCipher.final()]);
  const rawTag = rawCipher.getAuthTag();

  const rawEncrypt = baselineFigure(
    'raw AES-256-GCM encrypt',
    measureSync(() => {
      const cipher = createCipheriv('aes-256-gcm', dataKey, randomBytes(NONCE_BYTES));
      Buffer.concat([cipher.update(value), cipher.final()]);
      cipher.getAuthTag();
    }, seconds),
  );
  const encrypt = compared(
    'encrypt (sealEnvelope, field AAD)',
    measureSync(() => {
      sealEnvelope(dataKey, dataKeyId, value, FIELD_AAD, context);
    }, seconds),
    rawEncrypt,
  );
  const encryptWrap = compared(
    'encrypt+wrap (new data key, wrap, seal)',
    measureSync(() => {
      const keyId = newKeyId('dk');
      const key = randomBytes(KEY_BYTES);
      sealEnvelope(tenantKey, tenantKeyId, key, DATA_KEY_AAD, { tenant, keyId, purpose: 'data' });
      sealEnvelope(key, keyId, value, FIELD_AAD, context);
      wipe(key);
    }, seconds),
    rawEncrypt,
  );

  const rawDecrypt = baselineFigure(
    'raw AES-256-GCM decrypt',
    measureSync(() => {
      const decipher = createDecipheriv('aes-256-gcm', dataKey, rawNonce);
      decipher.setAuthTag(rawTag);
      Buffer.concat([decipher.update(rawCiphertext), decipher.final()]);
    }, seconds),
  );
  const decrypt = compared(
    'decrypt (openEnvelope, field AAD)',
    measureSync(() => {
      openEnvelope(dataKey, dataKeyId, sealed, FIELD_AAD, context);
    }, seconds),
    rawDecrypt,
  );
  const unwrapDecrypt = compared(
    'unwrap+decrypt (open data key, open value)',
    measureSync(() => {
      const key = openEnvelope(tenantKey, tenantKeyId, wrapped, DATA_KEY_AAD, wrapAad);
      openEnvelope(key, dataKeyId, sealed, FIELD_AAD, context);
      wipe(key);
    }, seconds),
    rawDecrypt,
  );
  wipe(tenantKey, dataKey);

  return {
    id: 'in-process',
    title: 'a. In process, 1 KiB values',
    groups: [
      { title: 'encrypt', figures: [rawEncrypt, encrypt, encryptWrap] },
      { title: 'decrypt', figures: [rawDecrypt, decrypt, unwrapDecrypt] },
    ],
    facts: [],
    notes: [
      `One core, synchronous. The raw baselines draw a fresh nonce but have no header, AAD or checks; ` +
        'the envelope adds the key-id header, the AAD encoding of the field context and length checks.',
    ],
  };
}
