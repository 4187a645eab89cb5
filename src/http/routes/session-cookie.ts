/**
 * The console session cookie and the answer that hands a new session to the browser.
 *
 * The cookie is `__Host-tresor_session=<token>; Path=/; Secure; HttpOnly; SameSite=Strict`
 * (sessions.cookieOptions()), set on login and re-authentication and cleared (Max-Age=0) on
 * logout; the CSRF token goes to the page in the body, once per session.
 */
import { TresorError } from '../../errors.ts';
import type { PersonInfo } from '../../identity/accounts.ts';
import type { PeopleService } from '../../identity/people.ts';
import type { NewSession, SessionInfo, SessionService } from '../../identity/sessions.ts';
import { NO_STORE } from './identity-request.ts';

// Read at request time: a route module only captures its dependencies when built.
function cookieAttributes(sessions: SessionService) {
  const c = sessions.cookieOptions();
  return { name: c.name, attributes: `Path=${c.path}; Secure; HttpOnly; SameSite=Strict` };
}

/** `Set-Cookie` for a new session (RFC 6265bis §4.1; `__Host-` needs Secure, Path=/, no Domain). */
function setCookie(sessions: SessionService, token: string): string {
  const c = cookieAttributes(sessions);
  return `${c.name}=${token}; ${c.attributes}`;
}

export function clearCookie(sessions: SessionService): string {
  const c = cookieAttributes(sessions);
  return `${c.name}=; ${c.attributes}; Max-Age=0`;
}

export function sessionView(s: SessionInfo, person: PersonInfo) {
  return {
    id: s.id,
    personId: s.personId,
    side: s.side,
    role: person.role,
    tenant: s.tenant,
    factors: [...s.factors],
    fresh2faAt: s.fresh2faAt,
    idleExpiresAt: s.idleExpiresAt,
    absoluteExpiresAt: s.absoluteExpiresAt,
  };
}

/** A new session's answer: its cookie, and its CSRF token and view in the body (NewSessionBody). */
export async function newSessionAnswer(
  deps: { sessions: SessionService; people: PeopleService },
  created: NewSession,
) {
  const person = await deps.people.get(created.session.personId);
  if (!person) throw new TresorError('TRESOR_ERR_INTERNAL', 'a session without its person');
  return {
    status: 200 as const,
    headers: { ...NO_STORE, 'set-cookie': setCookie(deps.sessions, created.token) },
    body: { csrfToken: created.csrfToken, session: sessionView(created.session, person) },
  };
}
