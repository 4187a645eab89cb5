/** Console sign-in (src/http/routes/login.ts): public, the credential is in the body. */
import type { Declarations } from '../greybox-declare.ts';

export const login: Declarations = {
  'POST /v1/auth/login': {
    allow: 'everyone',
    own: (f) => ({
      path: '/v1/auth/login',
      body: { side: 'operator', email: f.loginEmail, password: f.loginPassword },
    }),
  },
  'POST /v1/auth/login/second-factor': {
    allow: 'everyone',
    own: (f) => ({ path: '/v1/auth/login/second-factor', body: { handle: f.ghost.handle, totp: '123456' } }),
  },
  'POST /v1/auth/login/webauthn/options': {
    allow: 'everyone',
    own: (f) => ({ path: '/v1/auth/login/webauthn/options', body: { handle: f.ghost.handle } }),
  },
  'POST /v1/auth/login/webauthn': {
    allow: 'everyone',
    own: (f) => ({ path: '/v1/auth/login/webauthn', body: { handle: f.ghost.handle, response: {} } }),
  },
  'POST /v1/auth/recovery-reset': {
    allow: 'everyone',
    own: (f) => ({
      path: '/v1/auth/recovery-reset',
      body: {
        side: 'operator',
        email: `${f.unique()}@nobody.test`,
        recoveryCode: 'ABCD-EFGH-IJKL-MNOP-QRST-UVWX',
        newPassword: 'a long enough new password 42',
      },
    }),
  },
};
