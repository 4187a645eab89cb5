/**
 * docs/security/threat-model.md points each claim at a test: every test file it names must exist, and
 * it names at least one test for each of its seven attackers.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MODEL = readFileSync(join(ROOT, 'docs', 'security', 'threat-model.md'), 'utf8');

it('names only test files that exist, and tests for each attacker', () => {
  const sections = MODEL.split(/^## /m).slice(1);
  assert.equal(sections.length, 7, 'seven attackers');
  for (const section of sections) {
    const tests = [...section.matchAll(/`(test\/[^`\s]+\.test\.ts)`/g)].map((m) => m[1] ?? '');
    assert.ok(tests.length > 0, `no test named under "${section.split('\n')[0]}"`);
    const missing = tests.filter((t) => !existsSync(join(ROOT, t)));
    assert.deepEqual(missing, [], `under "${section.split('\n')[0]}"`);
  }
});
