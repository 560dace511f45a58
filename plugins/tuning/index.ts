import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { CniError, Code } from "../../lib/cni/errors.ts";
import { parseWith } from "../../lib/cni/config.ts";
import type { Result } from "../../lib/cni/result.ts";
import { parseResult } from "../../lib/cni/result-schema.ts";
import { logLine, type PluginImpl, type Request } from "../../lib/cni/skel.ts";
import { applyNetns, IpLineError, snapshotNetns, SysctlError } from "../../lib/kernel/netns-batch.ts";
import type { LinkSet } from "../../lib/kernel/link.ts";
import { readNoFollow, replaceFile } from "../../lib/safe-file.ts";
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
  type Settings,
} from "./tuning.ts";

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
    if (s.sysctls.length > 0 && existsSync(ALLOWLIST_FILE))
      checkAllowlist(
        s.sysctls.map((x) => x.key),
        readFileSync(ALLOWLIST_FILE, "utf8"),
      );
    const link = linkSettings(s);

    // Read everything that will change before changing anything: a missing key or link fails here.
    const before = kernelErrorsNamed(s, () =>
      snapshotNetns(
        req.netns,
        s.sysctls.map((x) => x.path),
        hasLinkSettings(link) ? req.ifname : "",
      ),
    );
    if (hasLinkSettings(link) && !before.link)
      throw new CniError(Code.Internal, `failed to get "${req.ifname}": link not found in the container namespace`);
    const file = backupPath(dataDirOf(req.config), req.containerId, req.ifname);
    const backup = mergeBackups(readBackup(file), buildBackup(link, before.link, s.sysctls, before.sysctls));
    if (!isEmptyBackup(backup)) writeBackup(file, backup);

    const cmds = linkCommands(req.ifname, link);
    try {
      kernelErrorsNamed(
        s,
        () =>
          applyNetns(
            req.netns,
            s.sysctls.map((x) => [x.path, x.value] as const),
            cmds.map((c) => c.op),
          ),
        cmds,
      );
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
    // Nothing saved, or a file nothing can be restored from: only the file itself to clean up.
    if (!backup) return rmSync(file, { force: true });
    if (req.netnsState === "ok") {
      const errors = restore(req, backup);
      if (errors.length > 0)
        logLine(req.config.logFile, `tuning DEL: could not restore every original value: ${errors.join("; ")}`);
    }
    // The runtime will not call DEL again after success, so the file goes even if a restore failed.
    rmSync(file, { force: true });
  },

  check(req) {
    requirePrev(req);
    const s = resolveSettings(req.config, req.args, req.ifname);
    const current = kernelErrorsNamed(s, () =>
      snapshotNetns(
        req.netns,
        s.sysctls.map((x) => x.path),
        req.ifname,
      ),
    );
    s.sysctls.forEach((x, i) => {
      const cur = current.sysctls[i];
      if (cur !== undefined && !sameSysctlValue(cur, x.value)) {
        throw new CniError(
          Code.Internal,
          `Error: Tuning configured value of ${x.key} is ${x.value}, current value is ${cur}`,
        );
      }
    });
    const link = current.link;
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

/** Puts saved values back, best effort: each failure is reported, none stops the others. */
function restore(req: Request<TuningConfig>, b: Backup): string[] {
  const sysctls = Object.entries(b.sysctl ?? {});
  const cmds = linkCommands(req.ifname, restoreSettings(b));
  try {
    applyNetns(
      req.netns,
      sysctls,
      cmds.map((c) => c.op),
    );
    return [];
  } catch {
    // One refusal stops a batch; go again one value at a time so the rest still goes back.
  }
  const errors: string[] = [];
  const steps: [string, () => void][] = [
    ...sysctls.map(
      ([path, value]) => [`sysctl ${path}`, () => applyNetns(req.netns, [[path, value]])] as [string, () => void],
    ),
    ...cmds.map((c) => [c.field, () => applyNetns(req.netns, [], [c.op])] as [string, () => void]),
  ];
  for (const [what, step] of steps) {
    try {
      step();
    } catch (e) {
      // A link that is gone has nothing left to restore.
      if (e instanceof IpLineError && /Cannot find device|does not exist/.test(e.reason)) continue;
      errors.push(
        `failed to restore ${what}: ${e instanceof SysctlError || e instanceof IpLineError ? e.reason : (e as Error).message}`,
      );
    }
  }
  return errors;
}

/** Re-raises kernel refusals under the names the user wrote: the sysctl key, or the attribute. */
function kernelErrorsNamed<T>(s: Settings, f: () => T, cmds: { field: string; op: LinkSet }[] = []): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof SysctlError) {
      const key = s.sysctls.find((x) => x.path === e.path)?.key ?? e.path;
      throw new CniError(Code.Internal, `sysctl ${key}: ${e.reason}`, `/proc/sys/${e.path}`);
    }
    if (e instanceof IpLineError) {
      const field = cmds[e.line]?.field ?? "link attributes";
      throw new CniError(
        Code.Internal,
        `failed to set ${field} of ${cmds[e.line]?.op.dev ?? "the interface"}: ${e.reason}`,
        field,
      );
    }
    throw e;
  }
}

function readBackup(file: string): Backup | undefined {
  let text: string | undefined;
  try {
    // Values behind a planted symlink are not ours to restore: it reads as no file.
    text = readNoFollow(file);
  } catch (e) {
    throw new CniError(Code.IOFailure, `failed to open file ${JSON.stringify(file)}: ${(e as Error).message}`);
  }
  if (text === undefined) return undefined;
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
    replaceFile(file, renderBackup(b));
  } catch (e) {
    throw new CniError(Code.IOFailure, `failed to save ${file}: ${(e as Error).message}`);
  }
}
