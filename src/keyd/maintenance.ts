/**
 * keyd's maintenance, on a timer, after unseal or when called: completes scheduled destructions
 * whose grace period is over and rotates tenant keys whose cryptoperiod ended (NIST SP 800-57
 * Part 1 §5.3), each as its own logged operation by caller `system`. One run at a time.
 */
import { type OpRecorder, toKeydError } from './op-record.ts';
import type { RootKeyProvider } from './root/types.ts';
import type { KeyStore } from './store.ts';
import type { TenantDestruction } from './tenant-destruction.ts';
import type { TenantKeys } from './tenant-keys.ts';

export interface MaintenanceReport {
  sealed: boolean;
  /** Key ids of the new versions made because a cryptoperiod ended. */
  rotated: string[];
  /** Tenants whose scheduled destruction was completed. */
  destroyed: string[];
  failed: { tenant: string; op: string; code: string }[];
}

export interface MaintenanceDeps {
  store: Pick<KeyStore, 'getTenant' | 'tenantsDueForDestruction' | 'tenantKeysDueForRotation'>;
  provider: Pick<RootKeyProvider, 'keyring'>;
  recorder: OpRecorder;
  tenantKeys: TenantKeys;
  destruction: TenantDestruction;
  clock: () => Date;
  /** True once the service is closing: maintenance then does nothing. */
  isClosed: () => boolean;
  /** 0 = never on a timer. */
  intervalSeconds: number;
  /** Told about every completed run (timer, unseal or direct), e.g. to log it. */
  onMaintenance?: ((report: MaintenanceReport) => void) | undefined;
}

export class Maintenance {
  readonly #deps: MaintenanceDeps;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<MaintenanceReport> | undefined;

  constructor(deps: MaintenanceDeps) {
    this.#deps = deps;
    if (deps.intervalSeconds > 0) {
      this.#timer = setInterval(() => {
        this.run().catch(() => undefined);
      }, deps.intervalSeconds * 1000);
      this.#timer.unref();
    }
  }

  /** Starts a run, or joins the one under way. */
  run(): Promise<MaintenanceReport> {
    this.#running ??= this.#maintain()
      .then((report) => {
        try {
          this.#deps.onMaintenance?.(report);
        } catch {
          // a listener's failure is not maintenance's
        }
        return report;
      })
      .finally(() => {
        this.#running = undefined;
      });
    return this.#running;
  }

  /** Stops the timer and waits for a run under way. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }

  async #maintain(): Promise<MaintenanceReport> {
    const { store, provider, recorder, tenantKeys, destruction } = this.#deps;
    const report: MaintenanceReport = { sealed: false, rotated: [], destroyed: [], failed: [] };
    if (!provider.keyring() || this.#deps.isClosed()) return { ...report, sealed: !provider.keyring() };
    const now = this.#deps.clock().toISOString();

    for (const tenant of await store.tenantsDueForDestruction(now)) {
      const rec = recorder.system('destroyTenantKey', tenant);
      try {
        const done = await recorder.execute(rec, () =>
          tenantKeys.locked(tenant, async () => {
            const view = await store.getTenant(tenant);
            const due = view?.tenant.state === 'pending-destroy' && (view.tenant.destroyAfter ?? '') <= now;
            if (!due) {
              rec.detail = 'skipped: no longer due';
              return false;
            }
            await destruction.shred(tenant, rec, 'grace period over');
            return true;
          }),
        );
        if (done) report.destroyed.push(tenant);
      } catch (err) {
        report.failed.push({ tenant, op: rec.op, code: toKeydError(err).code });
      }
    }

    for (const { tenant, version } of await store.tenantKeysDueForRotation(now)) {
      const rec = recorder.system('rotateTenantKey', tenant);
      try {
        const info = await recorder.execute(rec, () =>
          tenantKeys.locked(tenant, async () => {
            const view = await store.getTenant(tenant);
            const active = view?.keys.find((k) => k.state === 'active');
            const due =
              view?.tenant.state === 'active' &&
              active?.version === version &&
              (active.rotateAfter ?? '') <= now;
            if (!view || !due) {
              rec.detail = 'skipped: no longer due';
              return undefined;
            }
            return tenantKeys.rotate(
              tenant,
              view.keys,
              rec,
              'cryptoperiod over (NIST SP 800-57 Part 1 §5.3)',
            );
          }),
        );
        if (info) report.rotated.push(info.keyId);
      } catch (err) {
        report.failed.push({ tenant, op: rec.op, code: toKeydError(err).code });
      }
    }
    return report;
  }
}
