import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { openChunk, sealChunk } from '../../src/objects/chunk-cipher.ts';

describe('backup chunk encryption', () => {
  const key = randomBytes(32);
  const place = { backupId: '20260301T060000Z-00000001', index: 3, final: false };
  const plaintext = Buffer.from('SQLite format 3\u0000 and some pages');

  test('a chunk opens only at its own backup, index and final flag', () => {
    const stored = sealChunk(key, place, plaintext);
    assert.deepEqual(openChunk(key, place, stored), plaintext);
    assert.equal(stored.includes(plaintext.subarray(0, 15)), false, 'no plaintext in the stored chunk');
    const others = [
      { ...place, index: 4 }, // reordered
      { ...place, final: true }, // presented as the last one (truncation)
      { ...place, backupId: '20260301T060000Z-00000002' }, // spliced into another backup
    ];
    for (const other of others) {
      assert.throws(() => openChunk(key, other, stored), {
        code: 'TRESOR_ERR_BACKUP_INVALID',
        message: /does not decrypt at its place/,
      });
    }
    assert.throws(() => openChunk(randomBytes(32), place, stored), { code: 'TRESOR_ERR_BACKUP_INVALID' });
    assert.throws(() => openChunk(key, place, stored.subarray(0, 20)), {
      code: 'TRESOR_ERR_BACKUP_INVALID',
      message: /shorter than its nonce and tag/,
    });
  });

  test('the same plaintext seals differently each time (fresh nonce)', () => {
    assert.notDeepEqual(sealChunk(key, place, plaintext), sealChunk(key, place, plaintext));
  });
});
