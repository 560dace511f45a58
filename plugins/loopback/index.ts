import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { PluginImpl } from "../../lib/cni/skel.ts";
import { changeAndShow, showLink } from "../../lib/kernel/link.ts";
import { linkNamesIn } from "../../lib/kernel/procfs.ts";
import { attachmentOf } from "../../lib/net/attachment.ts";

/**
 * loopback: brings up `lo` in the container namespace; CNI_IFNAME is ignored, as in the reference.
 * Its only key beyond the ones skel checks is prevResult, and the reference ignores everything else,
 * so there is no schema to load: a pod's loopback network is pure start-up cost, kept small.
 */
interface LoopbackConfig {
  name: string;
  prevResult?: unknown;
}

const loopback: PluginImpl<LoopbackConfig> = {
  parseConfig: (raw) => ({ name: raw.name as string, prevResult: raw.prevResult }),

  async add(req) {
    // prevResult is parsed before the netns is touched, so a bad one leaves lo as it was.
    const prev =
      req.config.prevResult === undefined
        ? undefined
        : (await import("../../lib/cni/result-schema.ts")).parseResult(req.config.prevResult, req.version);
    const lo = changeAndShow([{ op: "link-set", dev: "lo", up: true }], "lo", { netns: req.netns });
    const addrs = lo?.addr_info ?? [];
    const foreign = addrs.find((a) => !isLoopbackAddress(a.local));
    if (foreign)
      throw new CniError(Code.Internal, `loopback interface found with non-loopback address "${foreign.local}"`);
    if (prev) return prev;
    const first = (family: string) => addrs.find((a) => a.family === family);
    const ips = [first("inet"), first("inet6")]
      .filter((a) => a !== undefined)
      .map((a) => ({ interface: 0, address: `${a.local}/${a.prefixlen}` }));
    const result: Result = {
      cniVersion: req.version,
      interfaces: [{ name: "lo", mac: "00:00:00:00:00:00", sandbox: req.netns }],
      ips,
    };
    return result;
  },

  async del(req) {
    if (req.netnsState !== "ok") return;
    const setLoDown = () => changeAndShow([{ op: "link-set", dev: "lo", up: false }], "lo", { netns: req.netns });
    // A network of its own (CNI_IFNAME lo): no other plugin attaches under this name, nothing to race.
    if (req.ifname === "lo") return void setLoDown();
    const { lockAttachment } = await import("../../lib/net/delete-notice.ts");
    const lock = await lockAttachment(attachmentOf(req));
    try {
      // In a list, loopback's DEL runs last, after the main plugin removed CNI_IFNAME. Finding it
      // again means an ADD of this container racing this DEL has attached it since (our bridge
      // holds the same lock while it does): setting lo down now would break that attachment.
      if (linkNamesIn(req.netns).has(req.ifname)) return;
      setLoDown();
    } finally {
      lock.release(true);
    }
  },

  check(req) {
    const lo = showLink("lo", { netns: req.netns });
    if (!lo?.flags.includes("UP")) throw new CniError(Code.Internal, "loopback interface is down");
  },
};
export default loopback;

function isLoopbackAddress(a: string) {
  return a === "::1" || a.startsWith("127.");
}
