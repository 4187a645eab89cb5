/**
 * Throughput measurement: run an operation for a fixed time after a short warm-up and report
 * operations per second. The run is cut into slices so a figure also says how steady it was —
 * on a shared 2-core machine a neighbour's burst shows up as a wide spread, not as a silent error.
 */

/** A throughput figure: the whole run's rate, and the slowest and fastest slice. */
export interface Rate {
  opsPerSecond: number;
  /** Slowest and fastest slice, ops/s. */
  min: number;
  max: number;
  operations: number;
  seconds: number;
}

const SLICES = 5;
/** Synchronous operations run in batches so reading the clock costs nothing measurable. */
const SYNC_BATCH = 32;
const NS_PER_S = 1e9;

const now = (): number => Number(process.hrtime.bigint());

function warmUpSeconds(seconds: number): number {
  return Math.min(0.5, seconds / 4);
}

function rate(operations: number, elapsedNs: number, slices: number[]): Rate {
  return {
    opsPerSecond: (operations * NS_PER_S) / elapsedNs,
    min: slices.length > 0 ? Math.min(...slices) : 0,
    max: slices.length > 0 ? Math.max(...slices) : 0,
    operations,
    seconds: elapsedNs / NS_PER_S,
  };
}

function runSync(op: () => void, seconds: number): Rate {
  const sliceNs = (seconds * NS_PER_S) / SLICES;
  const slices: number[] = [];
  let operations = 0;
  let elapsedNs = 0;
  for (let s = 0; s < SLICES; s++) {
    const start = now();
    let n = 0;
    let t = start;
    while (t - start < sliceNs) {
      for (let i = 0; i < SYNC_BATCH; i++) op();
      n += SYNC_BATCH;
      t = now();
    }
    slices.push((n * NS_PER_S) / (t - start));
    operations += n;
    elapsedNs += t - start;
  }
  return rate(operations, elapsedNs, slices);
}

/** Runs a synchronous operation for `seconds` (after a warm-up) and returns its rate. */
export function measureSync(op: () => void, seconds: number): Rate {
  runSync(op, warmUpSeconds(seconds));
  return runSync(op, seconds);
}

/** One timed run of `concurrency` loops, without warm-up (measureAsync adds one). */
export async function runAsync(
  op: () => Promise<unknown>,
  concurrency: number,
  seconds: number,
): Promise<Rate> {
  const sliceNs = (seconds * NS_PER_S) / SLICES;
  const start = now();
  const end = start + seconds * NS_PER_S;
  const slices: number[] = [];
  let sliceStart = start;
  let inSlice = 0;
  let operations = 0;

  async function worker(): Promise<void> {
    while (now() < end) {
      await op();
      const t = now();
      if (t > end) return; // finished after the deadline: not counted
      operations += 1;
      inSlice += 1;
      if (t - sliceStart >= sliceNs) {
        slices.push((inSlice * NS_PER_S) / (t - sliceStart));
        sliceStart = t;
        inSlice = 0;
      }
    }
  }

  await Promise.all(Array.from({ length: concurrency }, worker));
  return rate(operations, end - start, slices);
}

/**
 * Runs `concurrency` loops of an asynchronous operation for `seconds` (after a warm-up) and
 * returns the completed operations per second. Operations still in flight at the deadline are
 * awaited but not counted.
 */
export async function measureAsync(
  op: () => Promise<unknown>,
  concurrency: number,
  seconds: number,
): Promise<Rate> {
  await runAsync(op, concurrency, warmUpSeconds(seconds));
  return runAsync(op, concurrency, seconds);
}
