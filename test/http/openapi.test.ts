/**
 * The OpenAPI document: generated from the route schemas of every module in
 * src/http/routes/index.ts, equal to the committed openapi.json (regenerate with
 * `npm run openapi`), served at /v1/openapi.json, and rendered as the /docs reference page.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { generateOpenApiDocument } from '../../src/http/openapi-document.ts';
import { REFERENCE_PAGE_CSP } from '../../src/http/reference-page.ts';
import { buildTestApp } from './fixtures/harness.ts';

const COMMITTED = join(import.meta.dirname, '..', '..', 'openapi.json');

describe('OpenAPI', () => {
  it('matches the committed openapi.json (run `npm run openapi` after changing a route)', async () => {
    const generated = await generateOpenApiDocument();
    assert.equal(readFileSync(COMMITTED, 'utf8'), generated);
  });

  it('is OpenAPI 3.1 with bearer security, problem answers and no server-specific values', async () => {
    const doc = JSON.parse(await generateOpenApiDocument());
    assert.equal(doc.openapi, '3.1.0');
    assert.deepEqual(doc.servers, [{ url: '/', description: 'this Tresor server' }]);
    assert.deepEqual(doc.components.securitySchemes.bearer, {
      type: 'http',
      scheme: 'bearer',
      description: doc.components.securitySchemes.bearer.description,
    });
    assert.ok(doc.components.schemas.Problem);
    assert.deepEqual(doc.paths['/healthz'].get.security, []);
    assert.ok(doc.paths['/readyz'].get.responses['503'].content['application/problem+json']);
  });

  it('documents each route with its security and the problems its layers can give', async () => {
    const h = await buildTestApp();
    const doc = (await h.app.inject({ url: '/v1/openapi.json' })).json();
    const read = doc.paths['/v1/test/things/{id}'].get;
    assert.deepEqual(read.security, [{ bearer: [] }]);
    assert.deepEqual(Object.keys(read.responses).sort(), [
      '200',
      '400',
      '401',
      '403',
      '404',
      '429',
      'default',
    ]);
    const create = doc.paths['/v1/test/things'].post;
    for (const status of ['413', '415', '422']) {
      assert.equal(
        create.responses[status].content['application/problem+json'].schema.$ref,
        '#/components/schemas/Problem',
      );
    }
    assert.equal(create.requestBody.content['application/json'].schema.additionalProperties, false);
    assert.deepEqual(
      read.parameters.map((p: { in: string; name: string }) => `${p.in}:${p.name}`),
      ['path:id'],
    );
  });

  it('serves a reference page listing every operation, with a CSP that allows only its own style', async () => {
    const h = await buildTestApp();
    const res = await h.app.inject({ url: '/docs' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/html; charset=utf-8/);
    assert.equal(res.headers['content-security-policy'], REFERENCE_PAGE_CSP);
    assert.match(
      REFERENCE_PAGE_CSP,
      /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*'; frame-ancestors 'none'/,
    );
    assert.doesNotMatch(res.body, /<script|https?:\/\/(?!tresor\.dev)/);
    for (const path of ['/healthz', '/readyz', '/v1/test/things', '/v1/test/things/{id}'])
      assert.ok(res.body.includes(path), path);
    assert.match(res.body, /PATCH/);
  });
});
