import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";

/** One command as bench/worker measured it (see bench/worker/main.go). */
export interface Run {
  code: number;
  /** Fork-to-exit wall time. */
  wallMs: number;
  /** User + system CPU of the whole process tree the command waited for. */
  cpuMs: number;
  /** Peak resident set of the largest single process in that tree. */
  maxRssKb: number;
  stdout: string;
  stderr: string;
}

interface Wire {
  id: number;
  code: number;
  wallNs: number;
  userUs: number;
  sysUs: number;
  maxRssKb: number;
  stdout: string;
  stderr: string;
  error?: string;
}

/**
 * Client side of the Go worker living in a network namespace: `run()` sends one request and resolves
 * with its measurement; any number may be in flight (the worker runs them concurrently).
 */
export class Worker {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<number, { resolve: (r: Run) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private exited: Promise<void>;

  constructor(netns: string, workerPath: string) {
    this.proc = spawn("ip", ["netns", "exec", netns, workerPath], { stdio: ["pipe", "pipe", "pipe"] });
    this.proc.stderr.on("data", (d: Buffer) => process.stderr.write(`[worker ${netns}] ${d}`));
    createInterface({ input: this.proc.stdout }).on("line", (line) => this.onLine(line));
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code) => {
        for (const p of this.pending.values()) p.reject(new Error(`bench worker in ${netns} exited (${code})`));
        this.pending.clear();
        resolve();
      });
    });
  }

  run(argv: readonly string[], env: Record<string, string>, stdin = ""): Promise<Run> {
    const id = this.nextId++;
    const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.proc.stdin.write(`${JSON.stringify({ id, argv, env: envList, stdin })}\n`);
    });
  }

  private onLine(line: string) {
    const w = JSON.parse(line) as Wire;
    const p = this.pending.get(w.id);
    if (!p) return;
    this.pending.delete(w.id);
    if (w.error && w.code === -1) {
      p.reject(new Error(`bench worker could not run the command: ${w.error}`));
      return;
    }
    p.resolve({
      code: w.code,
      wallMs: w.wallNs / 1e6,
      cpuMs: (w.userUs + w.sysUs) / 1e3,
      maxRssKb: w.maxRssKb,
      stdout: w.stdout,
      stderr: w.stderr,
    });
  }

  async close() {
    this.proc.stdin.end();
    await this.exited;
  }
}
