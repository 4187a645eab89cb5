/**
 * deploy/prometheus/ as an operator uses it: the scrape config passes `promtool check config` (with
 * the token and CA files it names put beside it, as an operator would), the alerting rules pass
 * `promtool check rules` and their unit tests (`promtool test rules`, tresor.rules.test.yml), the
 * Alertmanager route passes `amtool check-config`, and every metric a rule reads is one the server
 * exposes (metrics-http.test.ts checks the server's side of that list).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promtool, tool } from './scrape.ts';

const DEPLOY = join(import.meta.dirname, '../../deploy/prometheus');
const RULES = join(DEPLOY, 'tresor.rules.yml');

describe('deploy/prometheus', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mx-prometheus-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('holds a scrape config that promtool check config accepts', async () => {
    for (const file of readdirSync(DEPLOY)) copyFileSync(join(DEPLOY, file), join(dir, file));
    writeFileSync(join(dir, 'tresor-metrics.token'), 'tresor_op_placeholder\n', { mode: 0o600 });
    writeFileSync(join(dir, 'tresor-ca.pem'), '');
    const checked = await promtool(['check', 'config', join(dir, 'prometheus.yml')]);
    assert.equal(checked.code, 0, checked.output);
    assert.match(checked.output, /1 rule files found/);
  });

  it('holds alerting rules that promtool check rules accepts', async () => {
    const checked = await promtool(['check', 'rules', RULES]);
    assert.equal(checked.code, 0, checked.output);
  });

  it('raises the alerts its unit tests expect, and only those (promtool test rules)', async () => {
    const tested = await promtool(['test', 'rules', join(import.meta.dirname, 'tresor.rules.test.yml')]);
    assert.equal(tested.code, 0, tested.output);
  });

  it('holds an Alertmanager route that amtool check-config accepts', async () => {
    const checked = await tool('amtool', ['check-config', join(DEPLOY, 'alertmanager.yml')]);
    assert.equal(checked.code, 0, checked.output);
  });

  it('reads only metrics the server exposes', () => {
    const rules = readFileSync(RULES, 'utf8');
    const used = new Set([...rules.matchAll(/\b(tresor_[a-z_]+)/g)].map((m) => m[1] as string));
    const documented = readFileSync(join(import.meta.dirname, '../../docs/monitoring.md'), 'utf8');
    const unknown = [...used].filter((name) => !documented.includes(`\`${name.replace(/_bucket$/, '')}\``));
    assert.deepEqual(unknown, [], 'every metric a rule reads is listed in docs/monitoring.md');
  });
});
