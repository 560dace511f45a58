/** Blocks this thread for `ms` milliseconds: plugins are synchronous, short-lived processes. */
export function sleepMs(ms: number) {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
