/** What the config tests share: a config file written into a test's folder, and the problems a resolve refuses with. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/server-config.ts';

/** Writes `content` (JSON, or text as is) to a new file in `dir`; returns its path. */
export function writeConfigFile(dir: string, content: unknown): string {
  const path = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** The problems of the ConfigError that `fn` throws; fails when it throws none. */
export function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}
