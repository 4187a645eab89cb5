/**
 * The two locks keyd's service needs, both FIFO so no caller starves:
 * - RootLock: every tenant and signing operation holds it shared; root-key rotation and retirement
 *   hold it exclusively, so no operation reads a row wrapped by a root version being retired.
 * - KeyedMutex: one tenant's operations run one at a time from reading its keys to queueing their
 *   ops-log entry, so a rotation or destruction never interleaves with a data-key operation.
 * Locks are held only for in-memory work and synchronous commits, never while waiting for a
 * group-committed ops-log entry to become durable.
 */

export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release = (): void => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => held);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}

interface Waiter {
  exclusive: boolean;
  grant: () => void;
}

export class RootLock {
  #readers = 0;
  #writer = false;
  readonly #queue: Waiter[] = [];

  #pump(): void {
    for (;;) {
      const next = this.#queue[0];
      if (!next || this.#writer) return;
      if (next.exclusive) {
        if (this.#readers > 0) return;
        this.#writer = true;
      } else {
        this.#readers += 1;
      }
      this.#queue.shift();
      next.grant();
    }
  }

  async #acquire(exclusive: boolean): Promise<void> {
    await new Promise<void>((grant) => {
      this.#queue.push({ exclusive, grant });
      this.#pump();
    });
  }

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#readers -= 1;
      this.#pump();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#writer = false;
      this.#pump();
    }
  }
}
