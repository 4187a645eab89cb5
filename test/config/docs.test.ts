/**
 * docs/configuration.md is generated from the config schema and equal to the committed page
 * (regenerate with `npm run docs:config` after changing a setting).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { configurationMarkdown } from '../../src/config/docs.ts';
import { CONFIG_FILE_SCHEMA } from '../../src/config/server-schema.ts';
import { settingsOf } from '../../src/config/settings.ts';

const COMMITTED = join(import.meta.dirname, '..', '..', 'docs', 'configuration.md');

describe('docs/configuration.md', () => {
  it('matches the schema (run `npm run docs:config` after changing a setting)', () => {
    assert.equal(readFileSync(COMMITTED, 'utf8'), configurationMarkdown());
  });

  it('lists every setting with its variable, and marks the secrets', () => {
    const page = configurationMarkdown();
    for (const s of settingsOf(CONFIG_FILE_SCHEMA)) assert.ok(page.includes(`| \`${s.env}\` |`), s.env);
    assert.match(page, /\| `keyPassphrase` \| `TRESOR_TLS_KEY_PASSPHRASE` \| {2}\| \*\*secret\*\*/);
    assert.match(page, /\| `keyPassphraseFile` \| `TRESOR_TLS_KEY_PASSPHRASE_FILE` \|/);
  });
});
