/**
 * The strict JSON parser (src/http/json-body.ts): RFC 8259 grammar, I-JSON (RFC 7493) rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TresorError } from '../../src/errors.ts';
import { isAcceptedJsonMediaType, MAX_JSON_DEPTH, parseJsonBody } from '../../src/http/json-body.ts';

const parse = (text: string) => parseJsonBody(Buffer.from(text, 'utf8'));

function refusedWith(text: string, code: string): void {
  assert.throws(
    () => parse(text),
    (err: unknown) => err instanceof TresorError && err.code === code,
    text.slice(0, 40),
  );
}

describe('strict JSON body parser', () => {
  it('reads what JSON.parse reads for well-formed I-JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const text = JSON.stringify(value);
        const keysOk = !/"(__proto__|constructor|prototype)":/.test(text);
        fc.pre(keysOk);
        assert.deepEqual(parse(text), JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });

  it('treats an empty body as no body', () => {
    assert.equal(parseJsonBody(Buffer.alloc(0)), undefined);
  });

  it('refuses what RFC 8259 does not allow', () => {
    for (const text of [
      '{',
      '{"a":1,}',
      '[1,]',
      '01',
      '1.',
      '.5',
      '+1',
      'NaN',
      'Infinity',
      "'a'",
      '"\\x41"',
      '"a\tb"',
      'tru',
      '{"a" 1}',
      '{a:1}',
      '[1 2]',
      '"\\u12"',
      '1 2',
      ' ',
    ]) {
      refusedWith(text, 'TRESOR_ERR_MALFORMED_JSON');
    }
  });

  it('refuses duplicate keys however they are spelt (RFC 7493 §2.3)', () => {
    refusedWith('{"a":1,"a":2}', 'TRESOR_ERR_BAD_REQUEST');
    refusedWith('{"a":1,"\\u0061":2}', 'TRESOR_ERR_BAD_REQUEST');
    refusedWith('{"x":{"b":1,"b":1}}', 'TRESOR_ERR_BAD_REQUEST');
    assert.deepEqual(parse('[{"a":1},{"a":2}]'), [{ a: 1 }, { a: 2 }]);
  });

  it('refuses prototype keys at any depth', () => {
    for (const key of ['__proto__', 'constructor', 'prototype', '\\u005f\\u005fproto\\u005f\\u005f']) {
      refusedWith(`{"${key}":1}`, 'TRESOR_ERR_BAD_REQUEST');
      refusedWith(`[[{"ok":{"${key}":{}}}]]`, 'TRESOR_ERR_BAD_REQUEST');
    }
    assert.deepEqual(parse('{"proto":1,"Constructor":2}'), { proto: 1, Constructor: 2 });
  });

  it(`allows ${MAX_JSON_DEPTH} levels of nesting and refuses one more, without recursing further`, () => {
    assert.ok(parse(`${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`));
    refusedWith(
      `${'['.repeat(MAX_JSON_DEPTH + 1)}${']'.repeat(MAX_JSON_DEPTH + 1)}`,
      'TRESOR_ERR_BAD_REQUEST',
    );
    refusedWith('['.repeat(1_000_000), 'TRESOR_ERR_BAD_REQUEST');
  });

  it('refuses invalid UTF-8 and lone surrogates, keeps pairs', () => {
    assert.throws(() => parseJsonBody(Buffer.from([0x22, 0xff, 0x22])), TresorError);
    refusedWith('"\\udc00"', 'TRESOR_ERR_BAD_REQUEST');
    refusedWith('{"k\\ud800":1}', 'TRESOR_ERR_BAD_REQUEST');
    assert.equal(parse('"\\ud83d\\ude00"'), '😀');
  });

  it('names an offset, never the offending text', () => {
    try {
      parse('{"password": "hunter2", "password": "x"}');
      assert.fail('accepted');
    } catch (err) {
      assert.doesNotMatch((err as Error).message, /hunter2|password/);
      assert.match((err as Error).message, /offset \d+/);
    }
  });

  it('accepts application/json with at most charset=utf-8', () => {
    for (const t of [
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON;CHARSET=UTF-8',
      'application/json; charset="utf-8"',
    ]) {
      assert.ok(isAcceptedJsonMediaType(t), t);
    }
    for (const t of [
      'application/json; charset=iso-8859-1',
      'application/json; v=1',
      'application/jsonp',
      'text/json',
      '',
    ]) {
      assert.ok(!isAcceptedJsonMediaType(t), t);
    }
  });
});
