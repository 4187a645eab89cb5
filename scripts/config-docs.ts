/**
 * Writes docs/configuration.md from the config schema (npm run docs:config).
 * test/config/docs.test.ts regenerates it and fails when the committed copy differs.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configurationMarkdown } from '../src/config/docs.ts';

const target = join(import.meta.dirname, '..', 'docs', 'configuration.md');
writeFileSync(target, configurationMarkdown());
process.stderr.write(`wrote ${target}\n`);
