import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasControlCharacter } from '../src/text.ts';

describe('hasControlCharacter', () => {
  it('finds every C0 control character and DEL, and nothing else', () => {
    for (let c = 0; c < 0x80; c++) {
      const control = c < 0x20 || c === 0x7f;
      assert.equal(hasControlCharacter(`a${String.fromCharCode(c)}b`), control, `U+${c.toString(16)}`);
    }
    assert.equal(hasControlCharacter('Grüße, 東京 — ✓'), false, 'printable Unicode passes');
    assert.equal(hasControlCharacter('\u0085'), false, 'C1 controls are not refused here');
  });

  it('allows only the characters a caller names', () => {
    assert.equal(hasControlCharacter('a\nb', ['\n']), false);
    assert.equal(hasControlCharacter('a\tb', ['\n']), true);
    assert.equal(hasControlCharacter('a\t\nb', ['\t', '\n']), false);
    assert.equal(hasControlCharacter('a\rb', ['\t', '\n']), true);
  });
});
