import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CryptoError } from '../../src/crypto/index.ts';
import { toProblem } from '../../src/http/problem.ts';
import { KeydError } from '../../src/keyd/errors.ts';

describe('problem+json mapping', () => {
  it('fails closed with 503 when keyd is unreachable or sealed', () => {
    for (const code of ['TRESOR_ERR_KEYD_UNAVAILABLE', 'TRESOR_ERR_KEYD_SEALED'] as const) {
      const p = toProblem(new KeydError(code));
      assert.equal(p.status, 503);
      assert.equal(p.code, code);
      assert.match(p.type, /^https:\/\/tresor\.dev\/problems\/keyd-/);
    }
  });

  it('says nothing of internals for unknown errors', () => {
    const p = toProblem(new Error('secret path /var/lib/x and stack'));
    assert.deepEqual(p, {
      type: 'https://tresor.dev/problems/internal',
      title: 'Internal Server Error',
      status: 500,
      code: 'TRESOR_ERR_INTERNAL',
    });
  });

  it('treats a ciphertext that does not authenticate as a server-side fault without detail', () => {
    const p = toProblem(new CryptoError('TRESOR_ERR_DECRYPT_FAILED', 'x'));
    assert.equal(p.status, 500);
    assert.equal(p.detail, undefined);
  });

  it('gives client errors a detail and a stable type', () => {
    const p = toProblem(new KeydError('TRESOR_ERR_TENANT_KEY_DESTROYED'));
    assert.equal(p.status, 410);
    assert.equal(p.type, 'https://tresor.dev/problems/tenant-key-destroyed');
    assert.equal(p.detail, 'tenant key has been destroyed');
  });
});
