/**
 * No merge leftovers: a conflict marker committed by mistake (one once sat in a comment of
 * src/backup/index.ts, where it compiled and passed every other check) fails here. Every file git
 * tracks is read; a line that starts with seven `<`, `>` or `|` and a space, or is exactly seven `=`,
 * is a leftover.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MARKER = new RegExp(`^(?:${['<', '>', '|'].map((c) => `\\${c}{7} `).join('|')}|={7}$)`, 'm');

test('no tracked file holds a merge conflict marker', () => {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean);
  assert.ok(files.length > 100, `git listed only ${files.length} files`);
  const found: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(`${ROOT}${file}`, 'utf8');
    } catch {
      continue; // a tracked symlink to a folder, or a file deleted in the work tree
    }
    const hit = MARKER.exec(text);
    if (hit) found.push(`${file}: ${JSON.stringify(hit[0])}`);
  }
  assert.deepEqual(found, []);
});

test('the marker pattern finds a real leftover and ignores lookalikes', () => {
  assert.ok(MARKER.test(`a\n${'<'.repeat(7)} HEAD\nb`));
  assert.ok(MARKER.test(`a\n${'='.repeat(7)}\nb`));
  assert.ok(!MARKER.test(`${'='.repeat(8)}\n| a | b |\n`));
});
