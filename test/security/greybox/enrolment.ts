/** Enrolment with a one-time enrolment token (src/http/routes/enrolment.ts): public, the token is in the body. */
import type { Declarations } from '../greybox-declare.ts';

export const enrolment: Declarations = {
  'POST /v1/enrolment/password': {
    allow: 'everyone',
    own: (f) => ({
      path: '/v1/enrolment/password',
      body: { enrolmentToken: f.ghost.enrolment, password: 'a long enough new password 42' },
    }),
  },
  'POST /v1/enrolment/totp': {
    allow: 'everyone',
    own: (f) => ({ path: '/v1/enrolment/totp', body: { enrolmentToken: f.ghost.enrolment } }),
  },
  'POST /v1/enrolment/totp/confirm': {
    allow: 'everyone',
    own: (f) => ({
      path: '/v1/enrolment/totp/confirm',
      body: { enrolmentToken: f.ghost.enrolment, factorId: f.ghost.factor, code: '123456' },
    }),
  },
  'POST /v1/enrolment/webauthn/options': {
    allow: 'everyone',
    own: (f) => ({ path: '/v1/enrolment/webauthn/options', body: { enrolmentToken: f.ghost.enrolment } }),
  },
  'POST /v1/enrolment/webauthn': {
    allow: 'everyone',
    own: (f) => ({
      path: '/v1/enrolment/webauthn',
      body: { enrolmentToken: f.ghost.enrolment, response: {} },
    }),
  },
};
