/**
 * The refusal of identity's credential checks (API keys, operator tokens and passwords, console
 * logins and sessions), in its own file so each service imports it without importing another.
 */
import { TresorError } from '../errors.ts';

/** The one failure of every authentication: it says nothing of why. */
export function unauthenticated(): TresorError {
  return new TresorError('TRESOR_ERR_UNAUTHENTICATED', 'invalid, expired or revoked credentials');
}
