/**
 * Brute force on the console sign-in: failed sign-ins (`auth.login` with outcome failure, or denied
 * by the throttle) counted per account and per client address within a window. The login throttle
 * (identity/login-throttle.ts) slows and locks; this raises the alert a person must look at.
 *
 * The account is the person id the identity service recorded (an unknown e-mail has none, and is
 * counted against its address only); the address is the request's source address.
 */

import { createThresholdWindow } from './threshold-window.ts';
import type { Detector } from './types.ts';

export interface BruteForceConfig {
  /** Failed sign-ins of one account within the window that raise `brute-force.account`. */
  accountFailures: number;
  /** Failed sign-ins from one address within the window that raise `brute-force.address`. */
  addressFailures: number;
  windowMs: number;
}

export function bruteForceDetector(config: BruteForceConfig): Detector {
  const accounts = createThresholdWindow({ threshold: config.accountFailures, windowMs: config.windowMs });
  const addresses = createThresholdWindow({ threshold: config.addressFailures, windowMs: config.windowMs });
  return {
    name: 'bruteForce',
    observe({ index, event }) {
      if (event.action !== 'auth.login' || event.outcome === 'success') return [];
      const signals = [];
      const personId = event.target?.personId;
      if (typeof personId === 'string') {
        const crossed = accounts.hit(personId, event.at, index);
        if (crossed)
          signals.push({
            kind: 'brute-force.account' as const,
            severity: 'high' as const,
            subject: { kind: 'account' as const, id: personId },
            at: event.at,
            evidence: crossed.evidence,
            count: crossed.weight,
          });
      }
      if (typeof event.sourceAddress === 'string' && event.sourceAddress !== '') {
        const crossed = addresses.hit(event.sourceAddress, event.at, index);
        if (crossed)
          signals.push({
            kind: 'brute-force.address' as const,
            severity: 'high' as const,
            subject: { kind: 'address' as const, id: event.sourceAddress },
            at: event.at,
            evidence: crossed.evidence,
            count: crossed.weight,
          });
      }
      return signals;
    },
  };
}
