/**
 * Stores that tell the audit sequencer about their writes: which source is notified, when (after
 * a successful write only), one wrapper per underlying store, and a tenant's outbox drained into
 * the log before its store is wiped.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { auditedTenantStores, notifyingStore } from '../../src/audit/notifying-store.ts';
import type { Store } from '../../src/store/types.ts';

/** A store that runs no SQL: `write` hands `work` a placeholder transaction. */
function fakeStore(location: string, fail = false): Store<unknown> {
  return {
    location,
    db: {} as Store<unknown>['db'],
    async write(work) {
      if (fail) throw new Error('write fails');
      return work({} as never);
    },
    healthy: async () => true,
    close: async () => {},
  };
}

/** A sequencer that records what it was told, in order. */
function recordingSequencer() {
  const calls: string[] = [];
  return {
    calls,
    sequencer: {
      notify: (source: string) => void calls.push(`notify ${source}`),
      drain: async (source?: string) => void calls.push(`drain ${source}`),
    },
  };
}

describe('notifying stores', () => {
  it('notifies the source after a successful write, and not after a failed one', async () => {
    const { calls, sequencer } = recordingSequencer();
    const store = notifyingStore(fakeStore('control'), 'control', () => sequencer);
    assert.equal(await store.write(async () => 42), 42);
    assert.deepEqual(calls, ['notify control']);

    const failing = notifyingStore(fakeStore('t', true), 'ten_a', () => sequencer);
    await assert.rejects(
      failing.write(async () => 1),
      /write fails/,
    );
    assert.deepEqual(calls, ['notify control']);
  });

  it('writes without notifying before the sequencer exists', async () => {
    const store = notifyingStore(fakeStore('control'), 'control', () => undefined);
    assert.equal(await store.write(async () => 'done'), 'done');
    assert.equal(store.location, 'control');
  });

  it('hands out one wrapper per underlying tenant store, notifying as that tenant', async () => {
    const { calls, sequencer } = recordingSequencer();
    const underlying = new Map([
      ['ten_a', fakeStore('a')],
      ['ten_b', fakeStore('b')],
    ]);
    const stores = auditedTenantStores(
      {
        create: async (tenant) => underlying.get(tenant) as Store<unknown>,
        open: async (tenant) => underlying.get(tenant) as Store<unknown>,
        exists: async (tenant) => underlying.has(tenant),
        destroy: async () => {},
      },
      () => sequencer,
    );
    const a = await stores.open('ten_a');
    assert.equal(await stores.open('ten_a'), a, 'the same wrapper again');
    assert.notEqual(await stores.open('ten_b'), a);
    await a.write(async () => undefined);
    await (await stores.create('ten_b')).write(async () => undefined);
    assert.deepEqual(calls, ['notify ten_a', 'notify ten_b']);
  });

  it("moves a tenant's outbox, and the control outbox that holds its reads, into the log before its store is wiped", async () => {
    const { calls, sequencer } = recordingSequencer();
    const present = new Set(['ten_a']);
    const stores = auditedTenantStores(
      {
        create: async () => fakeStore('x'),
        open: async () => fakeStore('x'),
        exists: async (tenant) => present.has(tenant),
        destroy: async (tenant) => {
          calls.push(`destroy ${tenant}`);
          present.delete(tenant);
        },
      },
      () => sequencer,
    );
    await stores.destroy('ten_a');
    assert.deepEqual(calls, ['drain ten_a', 'drain control', 'destroy ten_a']);
    calls.length = 0;
    await stores.destroy('ten_a');
    assert.deepEqual(
      calls,
      ['drain control', 'destroy ten_a'],
      'no store: its outbox has nothing to drain, its reads may still be in the control outbox',
    );
  });
});
