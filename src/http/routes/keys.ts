/**
 * Every key a customer or an auditor needs to check what Tresor signed, with its purpose
 * (docs/verifying.md): the audit checkpoint key (C2SP signed notes), the deletion certificate
 * key (Ed25519 over a certificate's canonical JSON) and the backup manifest key (docs/backup.md). Public keys only; each is given as SPKI PEM,
 * which `openssl` and `node:crypto` read as is, and the checkpoint key also as its C2SP note
 * verifier key, whose name is the log's origin.
 *
 * Public, like /v1/audit/public-key: a customer whose tenant is closed (its keys revoked) must still
 * be able to check its deletion certificate.
 */
import { createPublicKey } from 'node:crypto';
import Type from 'typebox';
import type { AuditLog } from '../../audit/audit-log.ts';
import { parseVerifierKey } from '../../audit/note.ts';
import { defineRoute, type RouteModule } from '../route.ts';

export interface KeyRouteDeps {
  audit: Pick<AuditLog, 'verifierKey'>;
  /** One of keyd's signing keys: its name and raw 32-byte Ed25519 public key. */
  keydKey(purpose: KeydKeyPurpose): Promise<{ name: string; publicKey: Buffer }>;
}

export type KeydKeyPurpose = 'deletion-certificate' | 'backup-manifest' | 'trust-statement';

/** keyd's keys, in the order they are listed, with what each signs. */
const KEYD_KEYS: readonly { purpose: KeydKeyPurpose; signs: string }[] = [
  {
    purpose: 'deletion-certificate',
    signs: 'deletion certificates: Ed25519 over the UTF-8 bytes of `body` (RFC 8785 JSON)',
  },
  {
    purpose: 'backup-manifest',
    signs:
      'backup manifests: Ed25519 over `tresor-backup-manifest/v1\\n<backup id>\\n<SHA-256 hex of the manifest>\\n`',
  },
  {
    purpose: 'trust-statement',
    signs:
      'the live trust statement (/trust.json): Ed25519 over `tresor-trust/v1\\n<SHA-256 hex of the statement, RFC 8785 JSON>\\n`',
  },
];

const PublishedKey = Type.Object({
  purpose: Type.Union([
    Type.Literal('audit-checkpoint'),
    Type.Literal('deletion-certificate'),
    Type.Literal('backup-manifest'),
    Type.Literal('trust-statement'),
  ]),
  algorithm: Type.Literal('Ed25519'),
  name: Type.String({ description: 'The key name signatures carry (a checkpoint key: the log origin)' }),
  publicKey: Type.String({ description: 'SubjectPublicKeyInfo, PEM (RFC 8410)' }),
  verifierKey: Type.Optional(
    Type.String({ description: 'C2SP signed-note verifier key, name+keyid+base64 (checkpoint key only)' }),
  ),
  signs: Type.String({ description: 'What the key signs, and over which bytes' }),
});

/** The SPKI PEM of a raw Ed25519 public key. */
function spkiPem(raw: Buffer): string {
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
    format: 'jwk',
  });
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

export function keyRoutes(deps: KeyRouteDeps): RouteModule {
  // keyd's signing keys never change while it runs: each asked once, again only after a failure.
  const asked = new Map<KeydKeyPurpose, Promise<{ name: string; publicKey: Buffer }>>();
  const keydKey = (purpose: KeydKeyPurpose) => {
    let key = asked.get(purpose);
    if (!key) {
      key = deps.keydKey(purpose).catch((error: unknown) => {
        asked.delete(purpose);
        throw error;
      });
      asked.set(purpose, key);
    }
    return key;
  };
  return {
    name: 'keys',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/v1/keys',
        summary:
          'Every verifying key Tresor signs with, by purpose (audit checkpoints, deletion certificates, backup manifests)',
        tags: ['keys'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: 'none-public',
        schema: {
          response: {
            200: Type.Object({ keys: Type.Array(PublishedKey) }, { description: 'The verifying keys' }),
          },
        },
      }).handle(async () => {
        const verifierKey = await deps.audit.verifierKey();
        const checkpoint = parseVerifierKey(verifierKey);
        const keydKeys = await Promise.all(
          KEYD_KEYS.map(async (k) => ({ ...k, ...(await keydKey(k.purpose)) })),
        );
        return {
          status: 200,
          body: {
            keys: [
              {
                purpose: 'audit-checkpoint' as const,
                algorithm: 'Ed25519' as const,
                name: checkpoint.name,
                publicKey: spkiPem(checkpoint.publicKey),
                verifierKey,
                signs: 'C2SP signed notes of C2SP tlog-checkpoints: Ed25519 over the note text',
              },
              ...keydKeys.map((k) => ({
                purpose: k.purpose,
                algorithm: 'Ed25519' as const,
                name: k.name,
                publicKey: spkiPem(k.publicKey),
                signs: k.signs,
              })),
            ],
          },
        };
      }),
    ],
  };
}
