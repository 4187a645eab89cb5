/**
 * When each certificate in use expires, by role (`server`: the HTTPS one; `keyd-client`: the
 * server's mutual-TLS certificate towards keyd), read from its file at each scrape so a reload or a
 * replaced file shows. A certificate that cannot be read now is absent from that scrape.
 */
import { X509Certificate } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';
import { labelVocabulary, PLAIN_NAME } from './label-values.ts';

/** Role → a read of its PEM file (the leaf first). */
export type CertificateFiles = Readonly<Record<string, () => Buffer | string>>;

export function certificateMetrics(
  registry: Registry,
  certificates: () => CertificateFiles | undefined,
): void {
  const roles = labelVocabulary(PLAIN_NAME, 8);
  new Gauge({
    name: 'tresor_tls_certificate_expiry_timestamp_seconds',
    help: 'When each certificate in use expires (Unix time, its notAfter), by role.',
    labelNames: ['certificate'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [role, read] of Object.entries(certificates() ?? {})) {
        try {
          this.set({ certificate: roles.of(role) }, Date.parse(new X509Certificate(read()).validTo) / 1000);
        } catch {
          // unreadable now: absent from this scrape
        }
      }
    },
  });
}
