/**
 * Deterministic mutation of CNI configurations and environments for the fuzz tests. Every choice
 * comes from the caller's random source, so a seed reproduces a whole run. Mutations: a field
 * removed, retyped, made huge, made unicode-hostile, nested deeply, replaced by a value that is
 * special somewhere (port 0, VLAN 4095, "../", "%d", an address with a zone), duplicated from
 * elsewhere in the config, emptied, or an unknown (or prototype-polluting) key added.
 */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Rng = () => number;
type Path = (string | number)[];

export const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const int = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

export const SPECIAL_STRINGS = [
  "",
  " ",
  "0",
  "-1",
  "true",
  "null",
  "../..",
  "..",
  "/",
  "a/b",
  "%d",
  "eth%d",
  "$(id)",
  "`id`",
  "a;b",
  "a\nb",
  "a\u0000b",
  '"',
  "\\",
  "#",
  "0.0.0.0",
  "0.0.0.0/0",
  "::",
  "::/0",
  "255.255.255.255/32",
  "10.63.0.0/33",
  "10.63.0.1/24",
  "10.63.0.300",
  "fe80::1%eth0",
  "fd63::/129",
  "::ffff:10.63.0.5",
  "1.2.3",
  "00:00:00:00:00:00",
  "ff:ff:ff:ff:ff:ff",
  "01:00:5e:00:00:01",
  "0a:58:0a:3f:00:02",
  "tcp",
  "udp",
  "sctp",
  "TCP",
  "icmp",
  "iptables",
  "nftables",
  "firewalld",
  "isolated",
  "same-bridge",
  "host-local",
  "bridge",
  "loopback",
  "portmap",
  "tuning",
  "firewall",
  "0.1.0",
  "0.2.0",
  "0.3.1",
  "0.4.0",
  "1.0.0",
  "1.1.0",
  "2.0.0",
  "1.0",
  "net.ipv4.ip_forward",
  "net.ipv4.conf.IFNAME.rp_filter",
  "net/ipv6/conf/all/disable_ipv6",
  "kernel.panic",
];

export const SPECIAL_NUMBERS = [
  0, -1, 1, 1.5, 2, 31, 32, 68, 1280, 1500, 4094, 4095, 4096, 9000, 65535, 65536, 2147483647, 2147483648, 4294967296,
  // biome-ignore lint/correctness/noPrecisionLoss: 2^53 + 1 on purpose, a number JSON cannot hold exactly
  9007199254740993, 1e308, -1e308, 5e-324,
];

const UNICODE = [
  "\u202e",
  "\u200b",
  "\u200d",
  "\ufeff",
  "\u0301",
  "\ud800",
  "\udfff",
  "\ud83d\ude00",
  "ＥＴＨ０",
  "ı",
  "ß",
  "\u2028",
  "\u0085",
  "é",
  "中文",
  "\u0000",
  "\u007f",
  "\u001b[31m",
];

const KNOWN_KEYS = [
  "cniVersion",
  "name",
  "type",
  "ipam",
  "dns",
  "prevResult",
  "runtimeConfig",
  "args",
  "capabilities",
  "bridge",
  "isGateway",
  "isDefaultGateway",
  "ipMasq",
  "ipMasqBackend",
  "mtu",
  "hairpinMode",
  "promiscMode",
  "vlan",
  "vlanTrunk",
  "macspoofchk",
  "disableContainerInterface",
  "portIsolation",
  "ranges",
  "subnet",
  "rangeStart",
  "rangeEnd",
  "gateway",
  "routes",
  "portMappings",
  "hostPort",
  "containerPort",
  "protocol",
  "hostIP",
  "snat",
  "markMasqBit",
  "externalSetMarkChain",
  "conditionsV4",
  "conditionsV6",
  "masqAll",
  "backend",
  "sysctl",
  "mac",
  "promisc",
  "allmulti",
  "txQLen",
  "ingressPolicy",
  "iptablesAdminChainName",
  "firewalldZone",
  "ips",
  "interfaces",
  "interface",
  "sandbox",
  "address",
  "version",
  "ip4",
  "ip6",
  "cni.dev/valid-attachments",
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "hasOwnProperty",
];

export function clone<T extends Json>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** Every path in the tree, the root ([]) included. */
export function allPaths(root: Json): Path[] {
  const out: Path[] = [];
  // Iterative, and not below 100 levels: a deeply nested value is mutated as a whole.
  const stack: [Json, Path][] = [[root, []]];
  while (stack.length > 0) {
    const [v, prefix] = stack.pop()!;
    out.push(prefix);
    if (prefix.length >= 100) continue;
    if (Array.isArray(v))
      v.forEach((x, i) => {
        stack.push([x, [...prefix, i]]);
      });
    else if (v !== null && typeof v === "object") for (const k of Object.keys(v)) stack.push([v[k]!, [...prefix, k]]);
  }
  return out;
}

function get(root: Json, path: Path): Json {
  let v: any = root;
  for (const p of path) v = v[p];
  return v as Json;
}

/** Replaces (or with `undefined`, removes) the value at a non-root path. */
function set(root: Json, path: Path, value: Json | undefined) {
  const parent: any = get(root, path.slice(0, -1));
  const key = path[path.length - 1]!;
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key];
  } else if (key === "__proto__" && !Array.isArray(parent)) {
    Object.defineProperty(parent, key, { value, enumerable: true, configurable: true, writable: true });
  } else parent[key] = value;
}

export function randomScalar(rng: Rng): Json {
  switch (int(rng, 0, 5)) {
    case 0:
      return pick(rng, SPECIAL_STRINGS);
    case 1:
      return pick(rng, SPECIAL_NUMBERS);
    case 2:
      return rng() < 0.5;
    case 3:
      return null;
    case 4:
      return pick(rng, UNICODE) + pick(rng, SPECIAL_STRINGS) + pick(rng, UNICODE);
    default:
      return Math.floor(rng() * 1e6) * (rng() < 0.5 ? -1 : 1);
  }
}

function otherType(rng: Rng, v: Json): Json {
  const choices: (() => Json)[] = [
    () => pick(rng, SPECIAL_STRINGS),
    () => pick(rng, SPECIAL_NUMBERS),
    () => rng() < 0.5,
    () => null,
    () => [randomScalar(rng)],
    () => ({ [pick(rng, KNOWN_KEYS)]: randomScalar(rng) }),
  ];
  const kind =
    v === null
      ? 3
      : Array.isArray(v)
        ? 4
        : typeof v === "object"
          ? 5
          : typeof v === "string"
            ? 0
            : typeof v === "number"
              ? 1
              : 2;
  let i = int(rng, 0, choices.length - 1);
  if (i === kind) i = (i + 1) % choices.length;
  return choices[i]!();
}

function huge(rng: Rng, v: Json): Json {
  switch (int(rng, 0, 4)) {
    case 0:
      return (typeof v === "string" && v !== "" ? v.slice(0, 16) : "x").repeat(int(rng, 1000, 12_000));
    case 1: {
      // Copies of a small first element, else scalars: a huge array of huge elements tests nothing new.
      const first = Array.isArray(v) && v.length > 0 && JSON.stringify(v[0]).length <= 200 ? v[0]! : undefined;
      return Array.from({ length: int(rng, 100, 20_000) }, () =>
        first !== undefined ? clone(first) : randomScalar(rng),
      );
    }
    case 2:
      return Object.fromEntries(Array.from({ length: int(rng, 100, 5000) }, (_, i) => [`k${i}`, i]));
    case 3:
      // biome-ignore lint/correctness/noPrecisionLoss: 2^53 + 1 on purpose, as above
      return pick(rng, [1e308, -1e308, 9007199254740993, 2 ** 64, -(2 ** 63)]);
    default:
      return pick(rng, SPECIAL_STRINGS) + "\u0301".repeat(int(rng, 100, 10_000));
  }
}

function unicode(rng: Rng, v: Json): Json {
  const base = typeof v === "string" ? v : JSON.stringify(v);
  const at = int(rng, 0, base.length);
  return base.slice(0, at) + pick(rng, UNICODE) + base.slice(at);
}

function nested(rng: Rng, v: Json): Json {
  let out = v;
  const depth = int(rng, 2, rng() < 0.8 ? 50 : 2000);
  for (let i = 0; i < depth; i++) out = rng() < 0.5 ? [out] : { [pick(rng, KNOWN_KEYS)]: out };
  return out;
}

export const MUTATIONS = [
  "remove",
  "retype",
  "huge",
  "unicode",
  "nested",
  "special",
  "duplicate",
  "empty",
  "addKey",
] as const;
export type Mutation = (typeof MUTATIONS)[number];

/** Applies one mutation at a random place; returns a short description of what changed. */
export function mutateOnce(root: Json, rng: Rng): string {
  const paths = allPaths(root).filter((p) => p.length > 0);
  const objects = allPaths(root).filter((p) => {
    const v = get(root, p);
    return v !== null && typeof v === "object" && !Array.isArray(v);
  });
  const kind = pick(rng, MUTATIONS);
  if (kind === "addKey" || paths.length === 0) {
    const at = pick(rng, objects.length > 0 ? objects : [[]]);
    const key = rng() < 0.8 ? pick(rng, KNOWN_KEYS) : pick(rng, SPECIAL_STRINGS) + pick(rng, UNICODE);
    const value = rng() < 0.5 ? randomScalar(rng) : otherType(rng, null);
    set(root, [...at, key], value);
    return `addKey ${JSON.stringify([...at, key])}`;
  }
  const path = pick(rng, paths);
  const v = get(root, path);
  const where = JSON.stringify(path).slice(0, 120);
  switch (kind) {
    case "remove":
      set(root, path, undefined);
      break;
    case "retype":
      set(root, path, otherType(rng, v));
      break;
    case "huge":
      set(root, path, huge(rng, v));
      break;
    case "unicode":
      set(root, path, unicode(rng, v));
      break;
    case "nested":
      set(root, path, nested(rng, v));
      break;
    case "special":
      set(root, path, typeof v === "number" || rng() < 0.3 ? pick(rng, SPECIAL_NUMBERS) : pick(rng, SPECIAL_STRINGS));
      break;
    case "duplicate":
      set(
        root,
        path,
        clone(
          get(
            root,
            pick(
              rng,
              paths.filter((p) => !isPrefix(path, p)),
            ) ?? [],
          ),
        ),
      );
      break;
    case "empty":
      set(root, path, pick(rng, ["", [], {}, null, 0] as Json[]));
      break;
  }
  return `${kind} ${where}`;
}

const isPrefix = (a: Path, b: Path) => a.length <= b.length && a.every((x, i) => b[i] === x);

function serializedLength(v: Json): number {
  try {
    return JSON.stringify(v).length;
  } catch {
    return Infinity;
  }
}

/** 1 to `max` mutations of a copy of `seed`. */
export function mutateConfig(seed: Json, rng: Rng, max = 4): { config: Json; steps: string[] } {
  let config = clone(seed);
  const steps: string[] = [];
  // Mostly one change, so most cases get past validation and exercise what comes after it.
  const roll = rng();
  const n = roll < 0.6 ? 1 : roll < 0.85 ? 2 : int(rng, 3, max);
  for (let i = 0; i < n; i++) {
    const before = clone(config);
    const step = mutateOnce(config, rng);
    // Past 2 MB a config only tests the stdin bound, which has its own test: undo the step. So is
    // one nested past what JSON.stringify itself can write (stacked "nested" steps): no runtime
    // could have sent it.
    if (serializedLength(config) > 2_000_000) config = before;
    else steps.push(step);
  }
  return { config, steps };
}

const COMMANDS = ["ADD", "ADD", "ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "", "add", "ADD ", "XADD"];

/** CNI_ARGS in its many broken spellings. */
function randomArgs(rng: Rng): string {
  const pairs = [
    "IgnoreUnknown=1",
    "IgnoreUnknown=true",
    "IgnoreUnknown=0",
    "K8S_POD_NAME=p",
    "IP=10.63.0.77",
    "IP=10.63.0.77,fd63::77",
    "IP=bogus",
    "MAC=0a:58:0a:3f:00:09",
    "MAC=zz",
    "=",
    "A",
    "A=B=C",
    ";",
    "",
    `K=${"v".repeat(5000)}`,
    "K8S_POD_NAMESPACE=$(id)",
    "IP=10.63.0.300",
  ];
  return Array.from({ length: int(rng, 1, 4) }, () => pick(rng, pairs)).join(pick(rng, [";", ";", ",", "; "]));
}

/**
 * Mutates an environment in place, choosing CNI_NETNS only from `netnsChoices` (the caller keeps
 * every choice safe: never the machine's own namespace).
 */
export function mutateEnv(
  env: Record<string, string>,
  rng: Rng,
  netnsChoices: readonly string[],
  pathChoices: readonly string[],
): string[] {
  const steps: string[] = [];
  const n = rng() < 0.6 ? 0 : int(rng, 1, 3);
  for (let i = 0; i < n; i++) {
    const key = pick(rng, [
      "CNI_COMMAND",
      "CNI_CONTAINERID",
      "CNI_IFNAME",
      "CNI_ARGS",
      "CNI_PATH",
      "CNI_NETNS",
      "remove",
    ]);
    switch (key) {
      case "CNI_COMMAND":
        env[key] = pick(rng, COMMANDS);
        break;
      case "CNI_CONTAINERID":
      case "CNI_IFNAME": {
        const v = randomScalar(rng);
        env[key] = rng() < 0.3 ? `${env[key] ?? ""}${pick(rng, UNICODE)}` : typeof v === "string" ? v : String(v);
        break;
      }
      case "CNI_ARGS":
        env[key] = randomArgs(rng);
        break;
      case "CNI_PATH":
        env[key] = pick(rng, pathChoices);
        break;
      case "CNI_NETNS":
        env[key] = pick(rng, netnsChoices);
        break;
      default: {
        const victim = pick(rng, ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH", "CNI_NETNS"]);
        delete env[victim];
        steps.push(`remove ${victim}`);
        continue;
      }
    }
    // The environment cannot carry NUL bytes at all.
    env[key] = env[key]!.replaceAll("\u0000", "");
    steps.push(`${key}=${JSON.stringify(env[key]).slice(0, 60)}`);
  }
  return steps;
}
