import { readFileSync } from "node:fs";
import { sleepMs } from "../sleep.ts";

/**
 * Daemons a plugin started and finds again by PID (dnsmasq for dnsname). A PID file can outlive
 * its process and the number be reused, so a PID is only signalled after its command line shows it
 * is the daemon meant (`matches`); a process that is gone, or a zombie, counts as not running.
 */

/** The argv of a live process, or undefined when there is none (or it is a zombie). */
export function processArgv(pid: number): string[] | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 1) return undefined;
  try {
    // A zombie keeps its PID but has an empty cmdline and state Z: it no longer serves anything.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (/\) Z /.test(stat)) return undefined;
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return raw === "" ? undefined : raw.replace(/\0$/, "").split("\0");
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` exists and is not a zombie. A process that is exiting has already dropped its
 * memory (an empty cmdline) but may still hold its sockets and files: it counts until it is gone.
 */
function exists(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Sends `signal` to `pid` if `matches` accepts its argv; false when no such process runs. */
export function signalIf(pid: number, matches: (argv: string[]) => boolean, signal: NodeJS.Signals): boolean {
  const argv = processArgv(pid);
  if (!argv || !matches(argv)) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops the matching process: SIGTERM, then SIGKILL if it has not exited after `graceMs`, and waits
 * (bounded) until it is gone, so the caller can remove the files it uses. False when none ran.
 */
export function stopProcess(pid: number, matches: (argv: string[]) => boolean, graceMs = 2000): boolean {
  if (!signalIf(pid, matches, "SIGTERM")) return false;
  const gone = (ms: number) => {
    for (let waited = 0; waited < ms; waited += 10) {
      if (!exists(pid)) return true;
      sleepMs(10);
    }
    return !exists(pid);
  };
  if (gone(graceMs)) return true;
  signalIf(pid, matches, "SIGKILL");
  gone(graceMs);
  return true;
}
