import { CniError, Code } from "../../lib/cni/errors.ts";
import type { Result } from "../../lib/cni/result.ts";
import type { PluginImpl, Request } from "../../lib/cni/skel.ts";
import { DEFAULT_SOCKET, type DhcpConfig, parseDhcpConfig } from "./config.ts";
import { type CmdArgs, call, DialError, type Method } from "./rpc.ts";

/**
 * dhcp IPAM: asks the long-running daemon (`dhcp daemon`, daemon.ts) for a lease on the container's
 * interface. The daemon runs the DHCP client inside the container's namespace and keeps renewing
 * until DEL releases the lease; the plugin itself only forwards its invocation over the socket.
 */

function rpc(req: Request<DhcpConfig>, method: Method): Promise<unknown> {
  const args: CmdArgs = {
    ContainerID: req.containerId,
    Netns: req.netns,
    IfName: req.ifname,
    Args: req.args,
    Path: req.path.join(":"),
    StdinData: req.stdin.toString("base64"),
  };
  return call(req.config.ipam.daemonSocketPath || DEFAULT_SOCKET, method, args).catch((e: Error) => {
    throw Object.assign(new CniError(Code.Internal, e.message), { cause: e });
  });
}

async function add(req: Request<DhcpConfig>): Promise<Result> {
  const r = (await rpc(req, "DHCP.Allocate")) as Omit<Result, "cniVersion">;
  return { ...r, cniVersion: req.version };
}

const dhcp: PluginImpl<DhcpConfig> = {
  parseConfig: (raw) => parseDhcpConfig(raw),
  add,
  // Leases live in the daemon: with no daemon to dial, none is held and DEL has nothing to undo
  // (the reference fails it, which leaves the runtime retrying a DEL that can never succeed).
  del: async (req) => {
    await rpc(req, "DHCP.Release").catch((e: CniError) => {
      if (!(e.cause instanceof DialError)) throw e;
    });
  },
  // As the reference: the daemon confirms (or re-acquires) the lease.
  check: async (req) => {
    await rpc(req, "DHCP.Allocate");
  },
};
export default dhcp;
