/**
 * The alerts section of the server configuration: the documented defaults, channels only when
 * configured, every half-configured channel refused at start with its problem named, and the
 * webhook secret and SMTP password read from their files and redacted wherever the config is shown.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, redactedServerConfig, resolveServerConfig } from '../../src/config/server-config.ts';

describe('alerts configuration', () => {
  let dir: string;
  const secret = 'w'.repeat(40);
  const password = 'smtp-password-value';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tresor-alerts-config-'));
    writeFileSync(join(dir, 'secret'), `${secret}\n`);
    writeFileSync(join(dir, 'password'), `${password}\n`);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const problems = (env: Record<string, string>): readonly string[] => {
    try {
      resolveServerConfig({}, { TRESOR_DATA_DIR: dir, ...env });
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.problems;
    }
    return [];
  };

  it('has the documented defaults and no channel unless one is configured', () => {
    const { alerts } = resolveServerConfig({}, { TRESOR_DATA_DIR: dir });
    assert.deepEqual(alerts, {
      windowMinutes: 15,
      bruteForceAccountFailures: 10,
      bruteForceAddressFailures: 20,
      noGrantRefusals: 1,
      staffRecordReads: 500,
      staffTenants: 5,
      exports: 3,
      checkIntervalSeconds: 60,
      backupOverdueMinutes: 720,
      certificateExpiringDays: 14,
      retryAttempts: 5,
      retryBaseMs: 2000,
    });
  });

  it('reads the secrets from their files and redacts them for display', () => {
    const config = resolveServerConfig(
      {},
      {
        TRESOR_DATA_DIR: dir,
        TRESOR_ALERTS_WEBHOOK_URL: 'https://siem.example/hook',
        TRESOR_ALERTS_WEBHOOK_SECRET_FILE: join(dir, 'secret'),
        TRESOR_ALERTS_SMTP_HOST: 'smtp.example',
        TRESOR_ALERTS_MAIL_FROM: 'tresor@example.com',
        TRESOR_ALERTS_MAIL_TO: 'a@example.com,b@example.com',
        TRESOR_ALERTS_SMTP_USER: 'tresor',
        TRESOR_ALERTS_SMTP_PASSWORD_FILE: join(dir, 'password'),
      },
    );
    assert.deepEqual(config.alerts.webhook, { url: 'https://siem.example/hook', secret });
    assert.equal(config.alerts.mail?.password, password);
    assert.equal(config.alerts.mail?.tls, 'starttls');
    assert.equal(config.alerts.mail?.port, 587);
    assert.deepEqual(config.alerts.mail?.to, ['a@example.com', 'b@example.com']);
    const shown = JSON.stringify(redactedServerConfig(config));
    assert.ok(!shown.includes(secret) && !shown.includes(password), 'no secret in the shown config');
  });

  it('refuses a half-configured channel, naming the problem', () => {
    assert.match(
      problems({
        TRESOR_ALERTS_WEBHOOK_URL: 'http://siem.example/hook',
        TRESOR_ALERTS_WEBHOOK_SECRET_FILE: join(dir, 'secret'),
      }).join('\n'),
      /alerts\.webhook\.url must be an https:\/\/ URL/,
    );
    assert.match(
      problems({ TRESOR_ALERTS_WEBHOOK_URL: 'https://siem.example/hook' }).join('\n'),
      /alerts\.webhook\.secret .* at least 32 bytes/,
    );
    assert.match(
      problems({ TRESOR_ALERTS_SMTP_HOST: 'smtp.example' }).join('\n'),
      /alerts\.mail needs host, from and to together/,
    );
    assert.match(
      problems({
        TRESOR_ALERTS_SMTP_HOST: 'smtp.example',
        TRESOR_ALERTS_MAIL_FROM: 'tresor@example.com',
        TRESOR_ALERTS_MAIL_TO: 'a@example.com',
        TRESOR_ALERTS_SMTP_USER: 'tresor',
      }).join('\n'),
      /user and alerts\.mail\.password go together/,
    );
    assert.ok(problems({ TRESOR_ALERTS_SMTP_TLS: 'maybe' }).length > 0, 'an unknown TLS mode');
    assert.ok(problems({ TRESOR_ALERTS_BRUTE_FORCE_ACCOUNT_FAILURES: '0' }).length > 0, 'a threshold of 0');
  });
});
