/** tscni-agent's command line: flannel's flag names where flannel has the flag. */
export interface AgentFlags {
  etcdEndpoints: string[];
  etcdPrefix: string;
  iface?: string;
  publicIp?: string;
  subnetFile: string;
  ipMasq: boolean;
  /** Seconds. */
  leaseTtl: number;
  /** Minutes before expiry at which the lease is renewed. */
  renewMargin: number;
  /** GET /healthz on this address and port (0 = off): 200 once subnet.env is written. */
  healthzIp: string;
  healthzPort: number;
  help: boolean;
  version: boolean;
}

export const USAGE = `usage: tscni-agent [flags]
  --etcd-endpoints=URL[,URL...]         etcd client URLs (default http://127.0.0.1:2379)
  --etcd-prefix=PREFIX                  key prefix (default /coreos.com/network)
  --iface=NAME | --public-ip=ADDR       underlay interface or address (default: the default route's)
  --subnet-file=PATH                    where subnet.env goes (default /run/flannel/subnet.env)
  --ip-masq                             masquerade pod traffic leaving the cluster network
  --subnet-lease-ttl=SECONDS            lease TTL (default 86400)
  --subnet-lease-renew-margin=MINUTES   renew this long before expiry (default 60; TTL/2 when not
                                        below the TTL)
  --healthz-ip=ADDR --healthz-port=PORT GET /healthz answers 200 once subnet.env is written
                                        (default 0.0.0.0, port 0 = off)
  --version, --help
Network config: <prefix>/config, flannel's JSON (Network, SubnetLen, SubnetMin, SubnetMax,
Backend {Type: "vxlan", VNI, Port, MTU, DirectRouting} or {Type: "host-gw"}).
`;

/** Parses `--name=value` and `--name value`; throws an Error whose message names the bad flag. */
export function parseFlags(args: readonly string[]): AgentFlags {
  const f: AgentFlags = {
    etcdEndpoints: ["http://127.0.0.1:2379"],
    etcdPrefix: "/coreos.com/network",
    subnetFile: "/run/flannel/subnet.env",
    ipMasq: false,
    leaseTtl: 86400,
    renewMargin: 60,
    healthzIp: "0.0.0.0",
    healthzPort: 0,
    help: false,
    version: false,
  };
  const positive = (name: string, v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n <= 0) throw new Error(`--${name}: "${v}" is not a positive whole number`);
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--help" || a === "-h") f.help = true;
    else if (a === "--version") f.version = true;
    else if (a === "--ip-masq") f.ipMasq = true;
    else {
      const m = /^--?([a-z-]+)(?:=(.*))?$/s.exec(a);
      if (!m) throw new Error(`unexpected argument "${a}"`);
      const name = m[1]!;
      const value = m[2] ?? args[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
      switch (name) {
        case "etcd-endpoints":
          f.etcdEndpoints = value.split(",").filter((s) => s !== "");
          for (const u of f.etcdEndpoints)
            if (!/^https?:\/\/[^\s/]+\/?$/.test(u)) throw new Error(`--etcd-endpoints: "${u}" is not an http(s) URL`);
          if (f.etcdEndpoints.length === 0) throw new Error("--etcd-endpoints: no URL given");
          break;
        case "etcd-prefix":
          if (!value.startsWith("/")) throw new Error(`--etcd-prefix: "${value}" must start with /`);
          f.etcdPrefix = value.replace(/\/+$/, "");
          break;
        case "iface":
          f.iface = value;
          break;
        case "public-ip":
          if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(value)) throw new Error(`--public-ip: "${value}" is not an IPv4 address`);
          f.publicIp = value;
          break;
        case "subnet-file":
          f.subnetFile = value;
          break;
        case "subnet-lease-ttl":
          f.leaseTtl = positive(name, value);
          break;
        case "subnet-lease-renew-margin":
          f.renewMargin = positive(name, value);
          break;
        case "healthz-ip":
          if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(value))
            throw new Error(`--healthz-ip: "${value}" is not an IPv4 address`);
          f.healthzIp = value;
          break;
        case "healthz-port":
          f.healthzPort = /^\d+$/.test(value) && Number(value) <= 65535 ? Number(value) : -1;
          if (f.healthzPort < 0) throw new Error(`--healthz-port: "${value}" is not a port number`);
          break;
        default:
          throw new Error(`unknown flag --${name}`);
      }
    }
  }
  return f;
}

/** Seconds after a (re)grant at which the lease is renewed: margin before expiry, or TTL/2. */
export function renewAfter(ttlSeconds: number, marginMinutes: number): number {
  const margin = marginMinutes * 60;
  return margin < ttlSeconds ? ttlSeconds - margin : Math.max(1, Math.floor(ttlSeconds / 2));
}
