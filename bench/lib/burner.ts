import { Worker } from "node:worker_threads";

/**
 * Runs `fn` with one core kept busy by a spinning thread of the benchmark's own process: a busy
 * node, where pods start and stop in bulk, without starting any program. On this 2-core machine
 * the plugins then share the other core with the client and the kernel.
 */
export async function withOneCoreBusy<T>(fn: () => Promise<T>): Promise<T> {
  const spinner = new Worker("for (;;) {}", { eval: true });
  try {
    return await fn();
  } finally {
    await spinner.terminate();
  }
}
