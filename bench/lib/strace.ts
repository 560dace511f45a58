import { basename, dirname } from "node:path";

/**
 * Reads an `strace -f -ttt` log of a libcni client run (see STRACE_ARGS) and answers: which plugin
 * processes ran, which processes each of them spawned (directly or through a helper such as
 * nsenter), and how each plugin's life split between its own work and waiting for children.
 */
export const STRACE_ARGS = [
  "strace",
  "-f",
  "-q",
  "-ttt",
  "--seccomp-bpf",
  "-e",
  "trace=execve,clone,clone3,fork,vfork,exit_group",
];

export interface Proc {
  pid: number;
  parent?: number;
  /** Successful execve paths, in order. */
  execs: string[];
  /** When it was created (the parent's clone entry) and first exec'd, and when it exited (seconds). */
  created?: number;
  execAt?: number;
  exitAt?: number;
}

export interface PluginProc {
  plugin: string;
  proc: Proc;
  /** Programs it caused to run, e.g. "iptables-restore", "nsenter→ip". */
  spawned: string[];
  lifetimeMs: number;
  /** Time from its exec to its first child (start-up and work before the first spawn). */
  firstSpawnMs: number;
  /** Sum of its direct children's lifetimes (spawns are synchronous in every plugin here). */
  childrenMs: number;
}

const LINE = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/;

export function parseTrace(text: string, pluginDir: string, pluginNames: readonly string[]): PluginProc[] {
  const procs = new Map<number, Proc>();
  const tgid = new Map<number, number>();
  const pending = new Map<number, { call: string; ts: number }>();
  const proc = (pid: number) => {
    let p = procs.get(pid);
    if (!p) {
      p = { pid, execs: [] };
      procs.set(pid, p);
    }
    return p;
  };
  const owner = (tid: number) => tgid.get(tid) ?? tid;

  for (const raw of text.split("\n")) {
    const m = LINE.exec(raw);
    if (!m) continue;
    const tid = Number(m[1]);
    let ts = Number(m[2]);
    let body = m[3]!;
    if (body.endsWith("<unfinished ...>")) {
      pending.set(tid, { call: body.slice(0, -"<unfinished ...>".length), ts });
      continue;
    }
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(body);
    if (resumed) {
      const start = pending.get(tid);
      pending.delete(tid);
      if (!start) continue;
      body = start.call + resumed[2];
      ts = start.ts;
    }
    if (body.startsWith("+++ exited") || body.startsWith("+++ killed")) {
      proc(owner(tid)).exitAt = ts;
      continue;
    }
    const call = /^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)/.exec(body);
    if (!call) continue;
    const [, name, args, ret] = call;
    if (name === "execve" && ret === "0") {
      const path = /^"((?:[^"\\]|\\.)*)"/.exec(args!)?.[1];
      const p = proc(owner(tid));
      if (path) p.execs.push(path);
      p.execAt ??= ts;
    } else if (name === "clone" || name === "clone3" || name === "fork" || name === "vfork") {
      const child = Number(ret);
      if (!(child > 0)) continue;
      if (/CLONE_THREAD/.test(args!)) {
        tgid.set(child, owner(tid));
      } else {
        const c = proc(child);
        c.parent = owner(tid);
        c.created = ts;
      }
    }
  }

  const isPlugin = (p: Proc) => {
    const last = p.execs[p.execs.length - 1];
    return last !== undefined && dirname(last) === pluginDir && pluginNames.includes(basename(last));
  };
  const plugins = new Map<number, PluginProc>();
  for (const p of procs.values()) {
    if (!isPlugin(p)) continue;
    plugins.set(p.pid, {
      plugin: basename(p.execs[p.execs.length - 1]!),
      proc: p,
      spawned: [],
      lifetimeMs: ms(p.execAt, p.exitAt),
      firstSpawnMs: NaN,
      childrenMs: 0,
    });
  }
  for (const p of procs.values()) {
    if (p.execs.length === 0) continue;
    // The nearest plugin above it is the one that caused it.
    let up = p.parent;
    while (up !== undefined && !plugins.has(up)) up = procs.get(up)?.parent;
    if (up === undefined) continue;
    const owner = plugins.get(up)!;
    owner.spawned.push(p.execs.map((e) => basename(e)).join("→"));
    if (p.parent === up) {
      owner.childrenMs += ms(p.created, p.exitAt);
      const sinceExec = ms(owner.proc.execAt, p.created);
      if (!(owner.firstSpawnMs <= sinceExec)) owner.firstSpawnMs = sinceExec;
    }
  }
  for (const pp of plugins.values()) if (Number.isNaN(pp.firstSpawnMs)) pp.firstSpawnMs = pp.lifetimeMs;
  return [...plugins.values()].sort((a, b) => (a.proc.execAt ?? 0) - (b.proc.execAt ?? 0));
}

const ms = (from?: number, to?: number) => (from !== undefined && to !== undefined ? (to - from) * 1000 : NaN);

/** "ip ×3, iptables-restore" from a list of program names. */
export function countPrograms(programs: readonly string[]): string {
  if (programs.length === 0) return "none";
  const counts = new Map<string, number>();
  for (const p of programs) counts.set(p, (counts.get(p) ?? 0) + 1);
  return [...counts].map(([p, n]) => (n > 1 ? `${p} ×${n}` : p)).join(", ");
}

/** strace options for timing flock(2) calls (-T appends each call's duration). */
export const FLOCK_STRACE_ARGS = ["strace", "-f", "-q", "-T", "--seccomp-bpf", "-e", "trace=flock"];

/** Milliseconds spent inside flock(2) calls (mostly blocked waiting for the lock) in such a log. */
export function flockMs(text: string): number {
  let total = 0;
  for (const line of text.split("\n")) {
    if (!/flock(\(| resumed>)/.test(line)) continue;
    const m = /<(\d+\.\d+)>\s*$/.exec(line);
    if (m) total += Number(m[1]) * 1000;
  }
  return total;
}
