import { CniError, Code } from "../../lib/cni/errors.ts";
import { formatNetwork, parseCIDR, type CIDR } from "../../lib/ip/address.ts";

/** What the node agent (flanneld, or tscni-agent) leased this node, as it writes subnet.env. */
export interface SubnetEnv {
  /** The whole cluster network(s), IPv4 and IPv6 (FLANNEL_NETWORK may be a comma list). */
  networks: CIDR[];
  /** This node's subnets, at most one per family (FLANNEL_SUBNET is its first host address/len). */
  subnets: CIDR[];
  mtu: number;
  /** The agent masquerades pod traffic leaving the cluster network itself. */
  ipMasq: boolean;
}

const notWritten = (path: string, why: string) =>
  new CniError(
    Code.IOFailure,
    `failed to load flannel 'subnet.env' file ${path}: ${why}; the node agent (flanneld or tscni-agent) has not written it yet. Check the agent's log for this node.`,
  );

/** Parses subnet.env; `path` names the file in every error. */
export function parseSubnetEnv(text: string, path: string): SubnetEnv {
  const vars = new Map<string, string>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) vars.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  const cidrs = (key: string): CIDR[] => {
    const v = vars.get(key);
    if (!v) return [];
    return v.split(",").map((t) => {
      const c = parseCIDR(t.trim());
      if (!c) throw notWritten(path, `${key}=${v} is not a CIDR list`);
      return c;
    });
  };
  const networks = [...cidrs("FLANNEL_NETWORK"), ...cidrs("FLANNEL_IPV6_NETWORK")];
  const subnets = [...cidrs("FLANNEL_SUBNET"), ...cidrs("FLANNEL_IPV6_SUBNET")];
  const missing = [
    networks.length === 0 ? "FLANNEL_NETWORK" : "",
    subnets.length === 0 ? "FLANNEL_SUBNET" : "",
    vars.has("FLANNEL_MTU") ? "" : "FLANNEL_MTU",
    vars.has("FLANNEL_IPMASQ") ? "" : "FLANNEL_IPMASQ",
  ].filter(Boolean);
  if (missing.length > 0) throw notWritten(path, `missing ${missing.join(", ")}`);
  const mtu = Number(vars.get("FLANNEL_MTU"));
  if (!Number.isInteger(mtu) || mtu < 68)
    throw notWritten(path, `FLANNEL_MTU=${vars.get("FLANNEL_MTU")} is not an MTU`);
  const masq = vars.get("FLANNEL_IPMASQ");
  if (masq !== "true" && masq !== "false") throw notWritten(path, `FLANNEL_IPMASQ=${masq} is not true or false`);
  return { networks, subnets, mtu, ipMasq: masq === "true" };
}

/** Reads subnet.env; a missing or unreadable file is the agent not having written it. */
export function loadSubnetEnv(path: string, read: (p: string) => string): SubnetEnv {
  let text: string;
  try {
    text = read(path);
  } catch (e) {
    throw notWritten(path, (e as Error).message);
  }
  return parseSubnetEnv(text, path);
}

export const subnetRange = (c: CIDR) => ({ subnet: formatNetwork(c) });
