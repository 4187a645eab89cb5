/*
 * The sign-in page's script (served as /signin/app.js, no build step): enrolment with a one-time
 * token, sign-in with password then a second factor, the session, sign-out. Plain DOM, no
 * framework; @simplewebauthn/browser (/signin/webauthn.js) runs the WebAuthn ceremonies.
 *
 * Security model:
 * - every request is same-origin JSON with `credentials: 'same-origin'`; the session cookie is
 *   HttpOnly, so this script never sees it;
 * - the CSRF token lives only in the `csrfToken` variable below — never in storage — so a reload
 *   forgets it (the server keeps the session; signing out then needs the tab that signed in);
 * - the enrolment token comes from the URL fragment (`#enrol=<token>`), which browsers never send
 *   to a server, and is wiped from the address bar and history at once;
 * - any refusal shows one text per flow, whatever the status: nothing tells whether an account
 *   exists, which step failed, or why;
 * - text goes into the page only through textContent (no HTML from data).
 */
const SIGN_IN_REFUSED = 'Sign-in failed. Check what you entered and try again.';
const ENROLMENT_REFUSED =
  'That did not work. Check the enrolment token and what you entered (a password needs at least 12 characters), then try again.';
const SIGN_OUT_FAILED = 'Signing out did not work. Reload the page and try again.';
const PASSWORDS_DIFFER = 'The two passwords differ.';
const SECTIONS = ['enrol', 'enrol-factor', 'recovery', 'signin', 'second-factor', 'session'];

/** The CSRF token of the session this tab opened; in memory only. */
let csrfToken = null;
/** The pending login's handle (five minutes, one attempt's worth of second factors). */
let loginHandle = null;
let enrolmentToken = null;
let totpFactorId = null;

const $ = (id) => document.getElementById(id);

class Refused extends Error {}

/** A same-origin JSON request; resolves with the parsed body, throws Refused on any non-2xx. */
async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (csrfToken !== null && method !== 'GET') headers['x-csrf-token'] = csrfToken;
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) throw new Refused(String(res.status));
  return res.status === 204 ? null : res.json();
}

function show(section) {
  for (const id of SECTIONS) $(id).hidden = id !== section;
}

function say(text) {
  const message = $('message');
  message.textContent = text;
  message.hidden = text === '';
}

/** Runs a step with its buttons disabled; any failure (refusal, network, WebAuthn) shows `refusal`. */
function step(refusal, run) {
  return async (event) => {
    event?.preventDefault();
    const buttons = [...document.querySelectorAll('button')];
    for (const b of buttons) b.disabled = true;
    try {
      say('');
      await run();
    } catch {
      say(refusal);
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  };
}

// --- enrolment ----------------------------------------------------------------------------------

function showRecoveryCodes(codes) {
  const list = $('recovery-codes');
  list.replaceChildren(
    ...codes.map((code) => {
      const item = document.createElement('li');
      const text = document.createElement('code');
      text.textContent = code;
      item.append(text);
      return item;
    }),
  );
  enrolmentToken = null;
  show('recovery');
}

async function setPassword() {
  const password = $('enrol-password').value;
  if (password !== $('enrol-password-repeat').value) {
    say(PASSWORDS_DIFFER);
    return;
  }
  enrolmentToken = $('enrol-token').value.trim();
  await api('POST', '/v1/enrolment/password', { enrolmentToken, password });
  $('enrol-password').value = '';
  $('enrol-password-repeat').value = '';
  show('enrol-factor');
}

async function registerPasskey() {
  const optionsJSON = await api('POST', '/v1/enrolment/webauthn/options', { enrolmentToken });
  const response = await SimpleWebAuthnBrowser.startRegistration({ optionsJSON });
  const done = await api('POST', '/v1/enrolment/webauthn', { enrolmentToken, response, label: 'Passkey' });
  showRecoveryCodes(done.recoveryCodes ?? []);
}

async function beginTotp() {
  const begun = await api('POST', '/v1/enrolment/totp', { enrolmentToken, label: 'Authenticator app' });
  totpFactorId = begun.factorId;
  $('totp-secret').textContent = begun.secret;
  $('totp-uri').textContent = begun.uri;
  $('enrol-totp-setup').hidden = false;
}

async function confirmTotp() {
  const code = $('totp-confirm-code').value.trim();
  const done = await api('POST', '/v1/enrolment/totp/confirm', {
    enrolmentToken,
    factorId: totpFactorId,
    code,
  });
  $('totp-confirm-code').value = '';
  $('totp-secret').textContent = '';
  $('totp-uri').textContent = '';
  showRecoveryCodes(done.recoveryCodes ?? []);
}

// --- sign-in ------------------------------------------------------------------------------------

async function beginSignIn() {
  const side = $('signin-side').value;
  const tenant = $('signin-tenant').value.trim();
  const pending = await api('POST', '/v1/auth/login', {
    side,
    ...(side === 'customer' ? { tenant } : {}),
    email: $('signin-email').value.trim(),
    password: $('signin-password').value,
  });
  $('signin-password').value = '';
  loginHandle = pending.handle;
  show('second-factor');
}

/** The end of every sign-in: keep the CSRF token in memory, show who is signed in. */
async function signedIn(created) {
  csrfToken = created.csrfToken;
  loginHandle = null;
  $('second-totp').value = '';
  $('second-recovery').value = '';
  await showSession();
}

/** A refused second factor spends the pending login: the next try starts from the password. */
function restartSignIn() {
  loginHandle = null;
  show('signin');
}

async function secondFactor(proof) {
  try {
    await signedIn(await api('POST', '/v1/auth/login/second-factor', { handle: loginHandle, ...proof }));
  } catch (error) {
    restartSignIn();
    throw error;
  }
}

async function passkeySignIn() {
  try {
    const optionsJSON = await api('POST', '/v1/auth/login/webauthn/options', { handle: loginHandle });
    const response = await SimpleWebAuthnBrowser.startAuthentication({ optionsJSON });
    await signedIn(await api('POST', '/v1/auth/login/webauthn', { handle: loginHandle, response }));
  } catch (error) {
    restartSignIn();
    throw error;
  }
}

// --- the session --------------------------------------------------------------------------------

async function showSession() {
  const { session, person } = await api('GET', '/v1/auth/session');
  $('session-email').textContent = person.email;
  $('session-side').textContent = session.side === 'operator' ? 'staff' : 'customer';
  $('session-role').textContent = session.role;
  $('session-tenant').textContent = session.tenant ?? '—';
  $('session-factors').textContent = session.factors.join(', ');
  $('session-idle-expires').textContent = session.idleExpiresAt;
  $('signout').hidden = csrfToken === null;
  $('signout-hint').hidden = csrfToken !== null;
  show('session');
}

async function signOut() {
  await api('POST', '/v1/auth/logout');
  csrfToken = null;
  show('signin');
}

// --- start --------------------------------------------------------------------------------------

/** The enrolment token from `#enrol=<token>`, removed from the address bar and history at once. */
function tokenFromFragment() {
  const match = /^#enrol=([A-Za-z0-9_-]{43})$/.exec(window.location.hash);
  if (window.location.hash !== '') history.replaceState(null, '', window.location.pathname);
  return match ? match[1] : null;
}

async function start() {
  $('enrol-password-form').addEventListener('submit', step(ENROLMENT_REFUSED, setPassword));
  $('enrol-passkey').addEventListener('click', step(ENROLMENT_REFUSED, registerPasskey));
  $('enrol-totp').addEventListener('click', step(ENROLMENT_REFUSED, beginTotp));
  $('totp-confirm-form').addEventListener('submit', step(ENROLMENT_REFUSED, confirmTotp));
  $('recovery-done').addEventListener('click', () => {
    $('recovery-codes').replaceChildren();
    show('signin');
  });
  $('signin-side').addEventListener('change', () => {
    $('signin-tenant-label').hidden = $('signin-side').value !== 'customer';
  });
  $('signin-form').addEventListener('submit', step(SIGN_IN_REFUSED, beginSignIn));
  $('second-totp-form').addEventListener(
    'submit',
    step(SIGN_IN_REFUSED, () => secondFactor({ totp: $('second-totp').value.trim() })),
  );
  $('second-recovery-form').addEventListener(
    'submit',
    step(SIGN_IN_REFUSED, () => secondFactor({ recoveryCode: $('second-recovery').value.trim() })),
  );
  $('second-passkey').addEventListener('click', step(SIGN_IN_REFUSED, passkeySignIn));
  $('second-cancel').addEventListener('click', restartSignIn);
  $('show-enrol').addEventListener('click', () => show('enrol'));
  $('signout').addEventListener('click', step(SIGN_OUT_FAILED, signOut));

  const token = tokenFromFragment();
  if (token !== null) {
    $('enrol-token').value = token;
    show('enrol');
    return;
  }
  try {
    await showSession();
  } catch {
    show('signin');
  }
}

document.addEventListener('DOMContentLoaded', () => {
  void start().finally(() => {
    document.body.dataset.ready = 'true';
  });
});
