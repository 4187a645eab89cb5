/** The sign-in page and its assets (src/http/routes/signin.ts): public. */
import type { Declarations } from '../greybox-declare.ts';

export const signin: Declarations = Object.fromEntries(
  ['/signin', '/signin/app.js', '/signin/app.css', '/signin/webauthn.js'].map((path) => [
    `GET ${path}`,
    { allow: 'everyone', own: () => ({ path }) },
  ]),
);
