import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { CniError, Code } from "../lib/cni/errors.ts";
import { parseWith } from "../lib/cni/config.ts";
import { parseResult, type Result } from "../lib/cni/result.ts";
import { logLine, type PluginImpl, type Request } from "../lib/cni/skel.ts";
import { ipBatch } from "../lib/kernel/exec.ts";
import { showLink } from "../lib/kernel/link.ts";
import { readNetnsSysctls, SysctlError, writeNetnsSysctls } from "../lib/kernel/sysctl-ns.ts";
import {
  ALLOWLIST_FILE,
  Backup,
  backupPath,
  buildBackup,
  checkAllowlist,
  cniArgsMac,
  dataDirOf,
  hasLinkSettings,
  isEmptyBackup,
  linkCommands,
  linkMismatches,
  linkSettings,
  mergeBackups,
  renderBackup,
  resolveSettings,
  restoreSettings,
  sameSysctlValue,
  TuningConfig,
  withMac,
  type LinkSettings,
  type LinkState,
  type Settings,
} from "../lib/net/tuning.ts";

/**
 * tuning (meta plugin): sysctls in the container's network namespace and attributes of the
 * container interface (mac, mtu, promisc, allmulti, txQLen). The original values of whatever it
 * changes are saved under dataDir before the change and put back on DEL. Passes prevResult on,
 * with the interface's new MAC when it changed it.
 */
const tuning: PluginImpl<TuningConfig> = {
  parseConfig: (raw) => parseWith(TuningConfig, raw),

  add(req) {
    const prev = requirePrev(req);
    const s = resolveSettings(req.config, req.args, req.ifname);
    if (s.sysctls.length > 0 && existsSync(ALLOWLIST_FILE)) checkAllowlist(s.sysctls.map((x) => x.key), readFileSync(ALLOWLIST_FILE, "utf8"));
    const link = linkSettings(s);

    // Read everything that will change before changing anything: a missing key or link fails here.
    const originals = withSysctlKeys(s, () => readNetnsSysctls(s.sysctls.map((x) => x.path), req.netns));
    const before = hasLinkSettings(link) ? currentLink(req) : undefined;
    const file = backupPath(dataDirOf(req.config), req.containerId, req.ifname);
    const backup = mergeBackups(readBackup(file), buildBackup(link, before, s.sysctls, originals));
    if (!isEmptyBackup(backup)) writeBackup(file, backup);

    try {
      withSysctlKeys(s, () => writeNetnsSysctls(s.sysctls.map((x) => [x.path, x.value] as const), req.netns));
      applyLink(req, link);
    } catch (e) {
      restore(req, backup);
      rmSync(file, { force: true });
      throw e;
    }
    return s.mac ? withMac(prev, req.ifname, s.mac) : prev;
  },

  del(req) {
    // CNI_ARGS must still parse (the reference fails DEL on a bad one too); values are not re-validated.
    cniArgsMac(req.args);
    const file = backupPath(dataDirOf(req.config), req.containerId, req.ifname);
    const backup = readBackup(file);
    if (!backup) return;
    if (req.netnsState === "ok") {
      const errors = restore(req, backup);
      if (errors.length > 0) logLine(req.config.logFile, `tuning DEL: could not restore every original value: ${errors.join("; ")}`);
    }
    // The runtime will not call DEL again after success, so the file goes even if a restore failed.
    rmSync(file, { force: true });
  },

  check(req) {
    requirePrev(req);
    const s = resolveSettings(req.config, req.args, req.ifname);
    const current = withSysctlKeys(s, () => readNetnsSysctls(s.sysctls.map((x) => x.path), req.netns));
    s.sysctls.forEach((x, i) => {
      const cur = current[i];
      if (cur !== undefined && !sameSysctlValue(cur, x.value)) {
        throw new CniError(Code.Internal, `Error: Tuning configured value of ${x.key} is ${x.value}, current value is ${cur}`);
      }
    });
    const link = showLink(req.ifname, { netns: req.netns }) as LinkState | undefined;
    if (!link) throw new CniError(Code.Internal, `Cannot find container link ${req.ifname}`);
    const diff = linkMismatches(req.ifname, linkSettings(s), link);
    if (diff.length > 0) throw new CniError(Code.Internal, `Error: ${diff[0]}`, diff.join("; "));
  },
};
export default tuning;

function requirePrev(req: Request<TuningConfig>): Result {
  if (req.config.prevResult === undefined) throw new CniError(Code.InvalidConfig, "Required prevResult missing");
  return parseResult(req.config.prevResult, req.version);
}

function currentLink(req: Request<TuningConfig>): LinkState {
  const link = showLink(req.ifname, { netns: req.netns }) as LinkState | undefined;
  if (!link) throw new CniError(Code.Internal, `failed to get "${req.ifname}": link not found in the container namespace`);
  return link;
}

/** Applies link attributes in one ip process; a failure names the attribute the kernel refused. */
function applyLink(req: Request<TuningConfig>, want: LinkSettings) {
  const cmds = linkCommands(req.ifname, want);
  if (cmds.length === 0) return;
  const r = ipBatch(
    cmds.map((c) => c.argv),
    { netns: req.netns, allowFailure: true },
  );
  if (r.status === 0) return;
  const n = Number(/Command failed -:(\d+)/.exec(r.stderr)?.[1] ?? 0);
  const field = cmds[n - 1]?.field ?? "link attributes";
  const why = r.stderr.replace(/Command failed -:\d+/, "").trim();
  throw new CniError(Code.Internal, `failed to set ${field} of ${req.ifname}: ${why}`, field);
}

/** Puts saved values back, best effort: each failure is reported, none stops the others. */
function restore(req: Request<TuningConfig>, b: Backup): string[] {
  const errors: string[] = [];
  const sysctls = Object.entries(b.sysctl ?? {});
  if (sysctls.length > 0) {
    try {
      writeNetnsSysctls(sysctls, req.netns);
    } catch {
      // One refusal stops a batch; retry one by one so the rest still goes back.
      for (const entry of sysctls) {
        try {
          writeNetnsSysctls([entry], req.netns);
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
    }
  }
  const cmds = linkCommands(req.ifname, restoreSettings(b));
  if (cmds.length > 0 && ipBatch(cmds.map((c) => c.argv), { netns: req.netns, allowFailure: true }).status !== 0) {
    for (const c of cmds) {
      const r = ipBatch([c.argv], { netns: req.netns, allowFailure: true });
      // A link that is gone has nothing left to restore.
      if (r.status !== 0 && !/Cannot find device|does not exist/.test(r.stderr)) errors.push(`failed to restore ${c.field}: ${r.stderr.trim()}`);
    }
  }
  return errors;
}

/** Re-raises a kernel sysctl failure under the key the user wrote. */
function withSysctlKeys<T>(s: Settings, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (!(e instanceof SysctlError)) throw e;
    const key = s.sysctls.find((x) => x.path === e.path)?.key ?? e.path;
    throw new CniError(Code.Internal, `sysctl ${key}: ${e.reason}`, `/proc/sys/${e.path}`);
  }
}

function readBackup(file: string): Backup | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CniError(Code.IOFailure, `failed to open file ${JSON.stringify(file)}: ${(e as Error).message}`);
  }
  try {
    const parsed = Backup.safeParse(JSON.parse(text));
    // An unreadable file is treated as no file, as the reference does: nothing can be restored from it.
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function writeBackup(file: string, b: Backup) {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, renderBackup(b), { mode: 0o600 });
    renameSync(tmp, file);
  } catch (e) {
    throw new CniError(Code.IOFailure, `failed to save ${file}: ${(e as Error).message}`);
  }
}
