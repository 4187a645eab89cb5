/**
 * Writes openapi.json at the repository root from the route schemas (npm run openapi).
 * CI regenerates it through test/http/openapi.test.ts and fails when the committed copy differs.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateOpenApiDocument } from '../src/http/openapi-document.ts';

const target = join(import.meta.dirname, '..', 'openapi.json');
writeFileSync(target, await generateOpenApiDocument());
process.stderr.write(`wrote ${target}\n`);
