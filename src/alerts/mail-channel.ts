/**
 * Alerts by e-mail over SMTP (nodemailer): one plain-text mail per opened alert to the configured
 * recipients. TLS is `starttls` (required: the mail is refused if the server does not offer it),
 * `implicit` (SMTPS, usually port 465) or `none` (a relay on the same host); the server certificate
 * is checked against `ca` when given, else the system roots. Credentials come from the config's
 * secret files; errors name the SMTP response code or the socket error, never the credentials.
 */
import { createTransport } from 'nodemailer';
import { TresorError } from '../errors.ts';
import type { AlertChannel } from './alert-channel.ts';
import { alertMail } from './alert-message.ts';

export interface MailChannelOptions {
  host: string;
  port: number;
  tls: 'starttls' | 'implicit' | 'none';
  from: string;
  to: readonly string[];
  user?: string;
  password?: string;
  ca?: string | Buffer;
  timeoutMs?: number;
}

export function createMailChannel(options: MailChannelOptions): AlertChannel {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const transport = createTransport({
    host: options.host,
    port: options.port,
    secure: options.tls === 'implicit',
    requireTLS: options.tls === 'starttls',
    ignoreTLS: options.tls === 'none',
    ...(options.user !== undefined && options.password !== undefined
      ? { auth: { user: options.user, pass: options.password } }
      : {}),
    tls: { minVersion: 'TLSv1.2', ...(options.ca ? { ca: options.ca } : {}) },
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    logger: false,
    debug: false,
  });
  return {
    name: 'mail',
    async send(message) {
      const { subject, text } = alertMail(message);
      try {
        await transport.sendMail({ from: options.from, to: [...options.to], subject, text });
      } catch (error) {
        const e = error as { responseCode?: number; code?: string };
        const reason = e.responseCode ? `SMTP ${e.responseCode}` : (e.code ?? 'send failed');
        throw new TresorError('TRESOR_ERR_UNAVAILABLE', `alerts mail (${options.host}): ${reason}`);
      }
    },
    async close() {
      transport.close();
    },
  };
}
