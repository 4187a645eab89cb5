/**
 * The minimal sign-in page (until the full console comes): GET /signin and its three static
 * assets — the page's own script and stylesheet (src/http/console/) and @simplewebauthn/browser's
 * UMD bundle. Every file is read once, when the module is built (at start); nothing is rendered
 * per request and no request input reaches an answer.
 *
 * Public and unaudited like /docs: they carry no data, and the page does everything through the
 * public login and enrolment routes and the session routes, which audit themselves.
 *
 * The page's Content-Security-Policy (CSP Level 3) allows scripts, styles and fetches only from
 * 'self' — no inline script or style, no eval, no third-party origin — forbids any form submission
 * (the script handles every form; without it nothing is posted, or put in a URL), framing and
 * <base>.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import Type from 'typebox';
import { defineRoute, type RouteDefinition, type RouteModule } from '../route.ts';

export const SIGNIN_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const CONSOLE_DIR = join(import.meta.dirname, '..', 'console');

/** The package's exports map hides dist/; its CommonJS entry sits in script/, next to it. */
function webauthnBundlePath(): string {
  const entry = createRequire(import.meta.url).resolve('@simplewebauthn/browser');
  return join(dirname(entry), '..', 'dist', 'bundle', 'index.umd.min.js');
}

interface StaticFile {
  url: string;
  summary: string;
  contentType: string;
  body: string;
  headers?: Record<string, string>;
}

function staticRoute(file: StaticFile): RouteDefinition {
  return defineRoute({
    method: 'GET',
    url: file.url,
    summary: file.summary,
    tags: ['console'],
    auth: 'none',
    secondFactor: false,
    authorize: 'public',
    audit: 'none-public',
    schema: { response: { 200: Type.String({ description: file.contentType.split(';')[0] }) } },
  }).handle(async () => ({
    status: 200,
    // no-cache: the browser revalidates, so a new version is picked up at the next start.
    headers: { 'content-type': file.contentType, 'cache-control': 'no-cache', ...file.headers },
    body: file.body,
  }));
}

export function signinRoutes(): RouteModule {
  const read = (name: string) => readFileSync(join(CONSOLE_DIR, name), 'utf8');
  return {
    name: 'signin',
    routes: [
      staticRoute({
        url: '/signin',
        summary: 'Console sign-in and enrolment page (HTML)',
        contentType: 'text/html; charset=utf-8',
        body: read('signin.html'),
        headers: { 'content-security-policy': SIGNIN_PAGE_CSP },
      }),
      staticRoute({
        url: '/signin/app.js',
        summary: 'The sign-in page’s script',
        contentType: 'text/javascript; charset=utf-8',
        body: read('signin.js'),
      }),
      staticRoute({
        url: '/signin/app.css',
        summary: 'The sign-in page’s stylesheet',
        contentType: 'text/css; charset=utf-8',
        body: read('signin.css'),
      }),
      staticRoute({
        url: '/signin/webauthn.js',
        summary: 'The @simplewebauthn/browser bundle the sign-in page uses',
        contentType: 'text/javascript; charset=utf-8',
        body: readFileSync(webauthnBundlePath(), 'utf8'),
      }),
    ],
  };
}
