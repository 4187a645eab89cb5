import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CRYPTO_ERROR_CODES } from '../../src/crypto/errors.ts';
import { CryptoError } from '../../src/crypto/index.ts';
import { ERRORS, type ErrorCode, type ErrorEntry, TresorError } from '../../src/errors.ts';
import { type Problem, toProblem } from '../../src/http/problem.ts';
import { KEYD_ERRORS, KeydError, type KeydErrorCode } from '../../src/keyd/errors.ts';

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

describe('the error catalogue over HTTP', () => {
  const codes = Object.keys(ERRORS) as ErrorCode[];
  const keydCodes = new Set<string>(Object.keys(KEYD_ERRORS));
  const cryptoCodes = new Set<string>(CRYPTO_ERROR_CODES);

  it('answers every code with the status and title of its catalogue entry', () => {
    for (const code of codes) {
      const entry: ErrorEntry = ERRORS[code];
      const p = toProblem(new TresorError(code, 'what went wrong', { field: 'name' }));
      if (entry.internal) {
        // Never named to a client: the same answer as an error outside the catalogue.
        assert.deepEqual(p, toProblem(new Error('x')), code);
        assert.equal(entry.status, 500, code);
        continue;
      }
      assert.equal(p.status, entry.status, code);
      assert.equal(p.title, entry.title, code);
      assert.equal(p.code, code);
      assert.equal(
        p.type,
        `https://tresor.dev/problems/${code.slice('TRESOR_ERR_'.length).toLowerCase().replaceAll('_', '-')}`,
      );
      if (entry.status < 500) {
        assert.equal(p.detail, 'what went wrong', code);
        assert.deepEqual((p as Problem & { errors?: unknown }).errors, { field: 'name' }, code);
      } else {
        // 5xx carry no detail of their own: at most the catalogue's fixed sentence, never the message.
        assert.equal(p.detail, entry.detail, code);
        assert.equal('errors' in p, false, code);
      }
    }
  });

  it('gives a fixed detail only to the key-service outages', () => {
    const withDetail = codes.filter((code) => (ERRORS[code] as ErrorEntry).detail !== undefined).sort();
    assert.deepEqual(withDetail, [
      'TRESOR_ERR_KEYD_SEALED',
      'TRESOR_ERR_KEYD_UNAVAILABLE',
      'TRESOR_ERR_KEY_EXHAUSTED',
    ]);
    for (const code of withDetail) {
      assert.equal(
        toProblem(new KeydError(code as KeydErrorCode)).detail,
        'the key service is not available; no data is served without it',
      );
    }
  });

  it("answers keyd's and crypto's errors as the catalogue says, whatever class carries the code", () => {
    for (const code of codes.filter((c) => keydCodes.has(c))) {
      assert.deepEqual(
        toProblem(new KeydError(code as KeydErrorCode)),
        toProblem(new TresorError(code, KEYD_ERRORS[code as keyof typeof KEYD_ERRORS])),
        code,
      );
    }
    for (const code of CRYPTO_ERROR_CODES) {
      assert.deepEqual(toProblem(new CryptoError(code, 'm')), toProblem(new KeydError(code, 'm')), code);
      assert.equal(toProblem(new CryptoError(code, 'm')).status, 500);
    }
  });

  it('keeps the answers keyd and crypto errors had before the catalogue was one table', () => {
    const expected: Record<string, [number, string]> = {
      TRESOR_ERR_KEYD_UNAVAILABLE: [503, 'Service Unavailable'],
      TRESOR_ERR_KEYD_SEALED: [503, 'Service Unavailable'],
      TRESOR_ERR_KEY_EXHAUSTED: [503, 'Service Unavailable'],
      TRESOR_ERR_REQUEST_INVALID: [400, 'Bad Request'],
      TRESOR_ERR_FORBIDDEN: [403, 'Forbidden'],
      TRESOR_ERR_TENANT_KEY_UNKNOWN: [404, 'Not Found'],
      TRESOR_ERR_KEY_ID_UNKNOWN: [404, 'Not Found'],
      TRESOR_ERR_TENANT_KEY_EXISTS: [409, 'Conflict'],
      TRESOR_ERR_TENANT_KEY_DESTROYED: [410, 'Gone'],
      TRESOR_ERR_TENANT_KEY_PENDING_DESTROY: [409, 'Conflict'],
      TRESOR_ERR_KEY_VERSION_RETIRED: [410, 'Gone'],
      TRESOR_ERR_KEY_VERSION_ACTIVE: [409, 'Conflict'],
      TRESOR_ERR_KEY_VERSION_IN_USE: [409, 'Conflict'],
      // Added with keyd's own backups: the catalogue's answer for a backup under way, as the server's.
      TRESOR_ERR_BACKUP_RUNNING: [409, 'A backup is running'],
    };
    for (const code of [...keydCodes, ...cryptoCodes] as KeydErrorCode[]) {
      const [status, title] = expected[code] ?? [500, 'Internal Server Error'];
      const p = toProblem(new KeydError(code));
      // A code the catalogue marks internal (keyd's TRESOR_ERR_BACKUP_FAILED) is never named to a client.
      const shown = (ERRORS as Record<string, ErrorEntry>)[code]?.internal ? 'TRESOR_ERR_INTERNAL' : code;
      assert.deepEqual([p.status, p.title, p.code], [status, title, shown], code);
    }
  });
});
