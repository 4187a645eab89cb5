/** TOTP codes for tests: from otpauth, and from oathtool (an independent implementation). */
import { execFileSync } from 'node:child_process';
import { Secret, TOTP } from 'otpauth';

/** The RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret at a time, computed by otpauth. */
export function totpCode(secret: string, at: Date): string {
  return new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 }).generate({
    timestamp: at.getTime(),
  });
}

/** A code from oathtool (OATH Toolkit), an implementation independent of otpauth. */
export function oathtool(secret: string, time: Date): string {
  const utc = `${time.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  return execFileSync('oathtool', ['--totp', '-b', secret, '-N', utc], { encoding: 'utf8' }).trim();
}
