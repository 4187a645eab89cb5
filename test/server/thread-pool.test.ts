/**
 * bin/tresor.js gives libuv's thread pool 64 threads before anything uses it, so that a server's
 * tenant stores fsync more than 4 files at once (docs/architecture.md, "Durable commits over many
 * tenant files"). The pool makes all its threads when it is first used, so a running server's thread
 * count (/proc/<pid>/task) shows the pool's size. Node 20 reads its entry module through the pool, so
 * there the setting comes too late and only the environment variable sets the size: this test says
 * which it expects on the Node running it.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { startTresorStack, type TresorStack } from '../helpers/tresor-stack.ts';

const POOL = 64;
const setInEntry = Number(process.versions.node.split('.')[0]) >= 22;

function threadsOf(stack: TresorStack): number {
  const pid = stack.serverProcess?.pid;
  assert.ok(pid !== undefined, 'a server process');
  return readdirSync(`/proc/${pid}/task`).length;
}

describe('the server process’s thread pool', () => {
  const stacks: TresorStack[] = [];
  after(async () => {
    await Promise.all(stacks.map((s) => s.stop()));
  });

  it(`has ${POOL} threads unless the environment says otherwise${setInEntry ? '' : ' (Node 20: only from the environment)'}`, async () => {
    // Whatever the shell running the tests says: the stack's server inherits it.
    delete process.env.UV_THREADPOOL_SIZE;
    const stack = await startTresorStack();
    stacks.push(stack);
    // Ready means the server has read its files and the keyd socket: the pool is made.
    const threads = threadsOf(stack);
    if (setInEntry) assert.ok(threads >= POOL, `${threads} threads, want at least ${POOL}`);
    else assert.ok(threads < POOL, `${threads} threads on Node 20, where the entry cannot set the pool`);
  });

  it('keeps an operator’s own UV_THREADPOOL_SIZE', async () => {
    const stack = await startTresorStack({ env: { UV_THREADPOOL_SIZE: '96' } });
    stacks.push(stack);
    const threads = threadsOf(stack);
    assert.ok(threads >= 96, `${threads} threads, want at least 96`);
  });
});
