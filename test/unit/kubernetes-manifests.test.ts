import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, isAbsolute, join } from "node:path";
import { parseAllDocuments } from "yaml";
import { DEFAULT_SOCKET } from "../../plugins/dhcp/config.ts";
import { parseFlags as parseDhcpDaemonFlags } from "../../plugins/dhcp/daemon.ts";
import { parseConfig as parseFlannelConfig } from "../../plugins/flannel/config.ts";
import { findEntry, REGISTRY } from "../../plugins/index.ts";
import { parseFlags as parseAgentFlags } from "../../plugins/tscni-agent/flags.ts";

/**
 * The Kubernetes manifests in conf/ parsed as YAML and held to what the suite does: the kinds, RBAC,
 * the flags each daemon is started with (parsed by that daemon's own flag parser, ConfigMap keys
 * and all), the paths the containers share with the node, the image, and the install step run for
 * real (against a temporary root, under strace) to show executables before config, by rename.
 */
const ROOT = join(import.meta.dirname, "..", "..");
const K8S = join(ROOT, "conf", "kubernetes");

// Just the fields read here; the YAML is checked against them, not trusted to have them.
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { configMapKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Mount {
  name: string;
  mountPath: string;
}
interface Container {
  name: string;
  image: string;
  command: string[];
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: Mount[];
  securityContext?: { privileged?: boolean; capabilities?: { add?: string[] } };
  readinessProbe?: { httpGet?: { host?: string; port: number; path: string } };
}
interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string };
}
interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  hostNetwork?: boolean;
  tolerations?: { operator?: string; effect?: string }[];
  initContainers?: Container[];
  containers: Container[];
  volumes: Volume[];
}
interface Doc {
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
}

function load(file: string): Doc[] {
  return parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
    assert.is(d.errors.length, 0, `${file}: ${d.errors.join("; ")}`);
    return d.toJS() as Doc;
  });
}
const one = (docs: Doc[], kind: string): Doc => {
  const found = docs.filter((d) => d.kind === kind);
  assert.is(found.length, 1, `one ${kind}`);
  return found[0]!;
};
const podOf = (ds: Doc) => (ds as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
const volumeOf = (pod: PodSpec, name: string): Volume => {
  const v = pod.volumes.find((x) => x.name === name);
  assert.ok(v, `volume ${name} exists`);
  return v!;
};
/** The volume mounted at (or above) a path in the container, and the path relative to the mount. */
function mountOf(pod: PodSpec, c: Container, path: string): { volume: Volume; mount: Mount; rest: string } | undefined {
  const mounts = (c.volumeMounts ?? [])
    .filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length);
  const m = mounts[0];
  return m && { volume: volumeOf(pod, m.name), mount: m, rest: path.slice(m.mountPath.length) };
}
/** Paths a container shares with the node must be the node's own: the plugins there use them. */
function assertSamePathOnNode(pod: PodSpec, c: Container, path: string) {
  const m = mountOf(pod, c, path);
  assert.ok(m?.volume.hostPath, `${c.name}: ${path} is on a hostPath volume`);
  assert.is(m!.volume.hostPath!.path, m!.mount.mountPath, `${c.name}: ${m!.mount.mountPath} is the node's own path`);
}

/** Kubernetes' $(VAR) expansion of args from the container's env; ConfigMap keys must exist. */
function expandArgs(c: Container, configMaps: Doc[], fields: Record<string, string>): string[] {
  const env = new Map<string, string>();
  for (const e of c.env ?? []) {
    const cm = e.valueFrom?.configMapKeyRef;
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (cm) {
      const map = configMaps.find((d) => d.metadata.name === cm.name);
      assert.ok(map, `${e.name}: ConfigMap ${cm.name} is in the manifest`);
      const data = map!.data as Record<string, string>;
      assert.ok(Object.hasOwn(data, cm.key), `${e.name}: ConfigMap ${cm.name} has key ${cm.key}`);
      env.set(e.name, data[cm.key]!);
    } else if (field) {
      assert.ok(Object.hasOwn(fields, field), `${e.name}: a field this test knows (${field})`);
      env.set(e.name, fields[field]!);
    } else {
      env.set(e.name, e.value ?? "");
    }
  }
  return (c.args ?? []).map((a) =>
    a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, name: string) => {
      assert.ok(env.has(name), `${c.name}: $(${name}) is set in its env`);
      return env.get(name)!;
    }),
  );
}

/** What the Containerfile puts where in the image: destination -> source in the repository. */
function imageCopies(): Map<string, string> {
  const lines = readFileSync(join(K8S, "Containerfile"), "utf8").split("\n");
  return new Map(
    lines.flatMap((l) => {
      const m = /^COPY\s+(\S+)\s+(\S+)\s*$/.exec(l);
      return m ? [[m[2]!.replace(/\/$/, ""), m[1]!.replace(/\/$/, "")] as const] : [];
    }),
  );
}

/** The "runtime" packages of the package list in test/setup.sh. */
function runtimePackages(): string[] {
  const setup = readFileSync(join(ROOT, "test", "setup.sh"), "utf8");
  const list = /<<'LIST' \|\| true\n([\s\S]*?)\nLIST\n/.exec(setup)![1]!;
  return list
    .split("\n")
    .map((l) => l.replace(/#.*/, "").trim().split(/\s+/))
    .filter((w) => w.slice(1).includes("runtime"))
    .map((w) => w[0]!);
}

const docs = load(join(K8S, "tscni.yaml"));
const ds = one(docs, "DaemonSet");
const pod = podOf(ds);
/** A container by name, which the manifest must have. */
const containerOf = (list: Container[] | undefined, name: string): Container => {
  const c = list?.find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name} in the DaemonSet`);
  return c;
};
const agent = containerOf(pod.containers, "agent");
const install = containerOf(pod.initContainers, "install-cni");
const configMaps = docs.filter((d) => d.kind === "ConfigMap");
const NODE_FIELDS = { "status.hostIP": "192.0.2.10", "spec.nodeName": "node-1" };

test("tscni.yaml: a ServiceAccount, an empty ClusterRole bound to it, a ConfigMap and the DaemonSet", () => {
  assert.equal(docs.map((d) => d.kind).sort(), [
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "DaemonSet",
    "ServiceAccount",
  ]);
  for (const d of docs.filter((d) => !d.kind.startsWith("Cluster"))) assert.is(d.metadata.namespace, "kube-system");
  // The agent talks to etcd, not to the API server: no rule, and no token in its pod.
  const role = one(docs, "ClusterRole");
  assert.equal(role.rules, []);
  const sa = one(docs, "ServiceAccount");
  assert.is(sa.automountServiceAccountToken, false);
  assert.is(pod.automountServiceAccountToken, false);
  const binding = one(docs, "ClusterRoleBinding") as unknown as {
    roleRef: { kind: string; name: string };
    subjects: { kind: string; name: string; namespace: string }[];
  };
  assert.equal(binding.roleRef, {
    apiGroup: "rbac.authorization.k8s.io",
    kind: "ClusterRole",
    name: role.metadata.name,
  });
  assert.equal(binding.subjects, [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: "kube-system" }]);
  assert.is(pod.serviceAccountName, sa.metadata.name);
});

test("tscni.yaml: the DaemonSet's pod is on the node's network, tolerates NoSchedule taints, NET_ADMIN but not privileged", () => {
  const selector = (
    ds as unknown as { spec: { selector: { matchLabels: object }; template: { metadata: { labels: object } } } }
  ).spec;
  assert.equal(selector.selector.matchLabels, selector.template.metadata.labels);
  assert.is(pod.hostNetwork, true);
  assert.ok(pod.tolerations?.some((t) => t.operator === "Exists" && t.effect === "NoSchedule"));
  assert.is(agent.securityContext?.privileged, false);
  assert.ok(agent.securityContext?.capabilities?.add?.includes("NET_ADMIN"));
  for (const c of [...(pod.initContainers ?? []), ...pod.containers])
    for (const m of c.volumeMounts ?? []) volumeOf(pod, m.name);
  for (const v of pod.volumes.filter((v) => v.hostPath))
    assert.ok(
      ["DirectoryOrCreate", "FileOrCreate"].includes(v.hostPath!.type ?? ""),
      `${v.name}: created when missing`,
    );
});

test("tscni.yaml: the agent's args, with the ConfigMap's values, are flags tscni-agent accepts and agree with the mounts and probe", () => {
  const cm = configMaps.find((d) => d.metadata.name === "tscni-config")!.data as Record<string, string>;
  const args = expandArgs(agent, configMaps, NODE_FIELDS);
  const flags = parseAgentFlags(args);
  assert.equal(flags.etcdEndpoints, cm["etcd-endpoints"]!.split(","));
  assert.is(flags.etcdPrefix, cm["etcd-prefix"]);
  assert.is(flags.publicIp, NODE_FIELDS["status.hostIP"]);
  // The agent is the image's tscni-agent link.
  assert.is(basename(agent.command[0]!), "tscni-agent");
  assert.is(findEntry("tscni-agent")?.kind, "command");
  assert.ok(imageCopies().has(dirname(agent.command[0]!)), "the agent's directory is one the image fills");
  // subnet.env where the flannel plugin of the installed conflist reads it, on the node.
  assertSamePathOnNode(pod, agent, dirname(flags.subnetFile));
  const list = JSON.parse(cm["10-tscni-flannel.conflist"]!);
  const flannel = list.plugins.find((p: { type: string }) => p.type === "flannel");
  assert.is(
    parseFlannelConfig({ cniVersion: list.cniVersion, name: list.name, ...flannel }).subnetFile,
    flags.subnetFile,
  );
  for (const m of agent.volumeMounts ?? []) assertSamePathOnNode(pod, agent, m.mountPath);
  // Ready once subnet.env is written: the probe asks the agent's own healthz address.
  assert.ok(flags.healthzPort > 0);
  assert.equal(agent.readinessProbe?.httpGet, { host: flags.healthzIp, port: flags.healthzPort, path: "/healthz" });
});

test("tscni.yaml: the ConfigMap's conflist is conf/10-tscni-flannel.conflist, installed under its own name", () => {
  const cm = configMaps.find((d) => d.metadata.name === "tscni-config")!.data as Record<string, string>;
  const name = "10-tscni-flannel.conflist";
  assert.equal(JSON.parse(cm[name]!), JSON.parse(readFileSync(join(ROOT, "conf", name), "utf8")));
  const file = install.command[install.command.indexOf("--conf-file") + 1]!;
  assert.is(basename(file), name);
  const m = mountOf(pod, install, file);
  assert.is(m?.volume.configMap?.name, "tscni-config");
});

test("tscni.yaml and its Containerfile: one image, tagged with the suite's version, holding what the containers run", () => {
  const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
  assert.is(agent.image, `tscni:${version}`);
  assert.is(install.image, agent.image);
  const containerfile = readFileSync(join(K8S, "Containerfile"), "utf8");
  assert.match(containerfile, ` -t ${agent.image} `);
  const copies = imageCopies();
  assert.is(copies.get("/opt/tscni/bin"), "dist/bin");
  assert.is(copies.get(install.command[1]!), "scripts/install.sh");
  assert.is(install.command[install.command.indexOf("--from") + 1], "/opt/tscni/bin");
  const apt = /apt-get install -y --no-install-recommends ([^\n\\&]+)/.exec(containerfile)![1]!.trim().split(/\s+/);
  assert.equal(apt.sort(), runtimePackages().sort());
});

/** One strace line: the syscall, its path arguments (resolved against their dirfd) and result. */
interface Call {
  name: string;
  paths: string[];
  flags: string;
  ok: boolean;
}
function parseStrace(text: string): Call[] {
  return text.split("\n").flatMap((line) => {
    const m = /^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)/.exec(line);
    if (!m) return [];
    const paths = [...m[2]!.matchAll(/(?:AT_FDCWD|\d+)<([^>]*)>, "([^"]*)"/g)].map((p) =>
      isAbsolute(p[2]!) ? p[2]! : join(p[1]!, p[2]!),
    );
    return [{ name: m[1]!, paths, flags: m[2]!, ok: Number(m[3]) >= 0 }];
  });
}

test("tscni.yaml: the install step, run as its init container would, puts executables first and the conflist last, each by rename", () => {
  const root = mkdtempSync(join(tmpdir(), "tscni-k8s-install-"));
  try {
    // The image: a stand-in multicall file (the build is not needed to test the installer) with a
    // link per registry name, and the repository's installer at the paths the Containerfile copies to.
    const image = new Map<string, string>();
    for (const [dest, src] of imageCopies()) {
      if (src === "dist/bin") {
        const imageBin = join(root, "image-bin");
        mkdirSync(imageBin);
        writeFileSync(join(imageBin, "tscni"), "#!/bin/sh\n");
        chmodSync(join(imageBin, "tscni"), 0o755);
        for (const e of REGISTRY) linkSync(join(imageBin, "tscni"), join(imageBin, e.name));
        image.set(dest, imageBin);
      } else image.set(dest, join(ROOT, src));
    }
    // The node's directories under root, and the ConfigMap's files where its volume is mounted.
    const cm = configMaps.find((d) => d.metadata.name === "tscni-config")!.data as Record<string, string>;
    const onNode = (p: string) => join(root, "node", p);
    const mapPath = (arg: string): string => {
      const m = mountOf(pod, install, arg);
      if (m?.volume.hostPath) return onNode(m.volume.hostPath.path) + m.rest;
      if (m?.volume.configMap) {
        // Laid out as the kubelet does: each key a link into ..data, a link to the current version.
        const dir = join(root, "configmap");
        mkdirSync(join(dir, "..v1"), { recursive: true });
        symlinkSync("..v1", join(dir, "..data"));
        for (const [k, v] of Object.entries(cm)) {
          writeFileSync(join(dir, "..v1", k), v);
          symlinkSync(join("..data", k), join(dir, k));
        }
        return dir + m.rest;
      }
      const copied = [...image.keys()].find((d) => arg === d || arg.startsWith(`${d}/`));
      return copied ? image.get(copied)! + arg.slice(copied.length) : arg;
    };
    const argv = install.command.map(mapPath);
    assert.is(argv[0], "bash");
    const log = join(root, "strace.log");
    const r = spawnSync(
      "strace",
      [
        "-f",
        "-qq",
        "-y",
        "-e",
        "signal=none",
        "-e",
        "trace=openat,rename,renameat,renameat2,link,linkat",
        "-o",
        log,
        ...argv,
      ],
      { encoding: "utf8" },
    );
    assert.is(r.status, 0, r.stderr + r.stdout);

    const bin = onNode("/opt/cni/bin");
    const conf = onNode("/etc/cni/net.d");
    assert.equal(readdirSync(bin).sort(), REGISTRY.map((e) => e.name).sort());
    for (const n of readdirSync(bin)) assert.is(statSync(join(bin, n)).mode & 0o777, 0o755, n);
    assert.equal(readdirSync(conf), ["10-tscni-flannel.conflist"]);
    assert.is(readFileSync(join(conf, "10-tscni-flannel.conflist"), "utf8"), cm["10-tscni-flannel.conflist"]);

    const calls = parseStrace(readFileSync(log, "utf8")).filter((c) => c.ok);
    const inDir = (dir: string) => (p: string) => dirname(p) === dir;
    const writes = calls.filter((c) => c.name === "openat" && /O_WRONLY|O_RDWR|O_CREAT/.test(c.flags));
    const renames = calls.filter((c) => c.name.startsWith("rename"));
    // Written only under temporary dot-names that no runtime loads...
    for (const w of writes.filter((c) => inDir(bin)(c.paths[0]!) || inDir(conf)(c.paths[0]!))) {
      const n = basename(w.paths[0]!);
      assert.ok(n.startsWith(".") && !/\.(conf|conflist|json)$/.test(n), `written in place: ${w.paths[0]}`);
    }
    // ...and every installed name arrives by rename.
    const renamed = new Set(renames.map((c) => c.paths[1]!));
    for (const f of [...readdirSync(bin).map((n) => join(bin, n)), join(conf, "10-tscni-flannel.conflist")])
      assert.ok(renamed.has(f), `${f} renamed into place`);
    // Executables first: the last one is in place before anything is written into the conf dir.
    const intoBin = calls.map((c) => c.name.startsWith("rename") && inDir(bin)(c.paths[1]!));
    const lastBin = intoBin.lastIndexOf(true);
    const firstConf = calls.findIndex((c) => c.paths.some(inDir(conf)));
    assert.ok(
      lastBin >= 0 && firstConf > lastBin,
      `executables (last at ${lastBin}) before config (first at ${firstConf})`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("tscni-dhcp-daemonset.yaml: the daemon's flags are ones `dhcp daemon` accepts, its socket and netns paths the node's", () => {
  const dhcpDocs = load(join(ROOT, "conf", "tscni-dhcp-daemonset.yaml"));
  assert.equal(
    dhcpDocs.map((d) => d.kind),
    ["DaemonSet"],
  );
  const dpod = podOf(dhcpDocs[0]!);
  assert.is(dpod.hostNetwork, true);
  const c = dpod.containers[0]!;
  const [exe, sub, ...rest] = c.command;
  const entry = findEntry(basename(exe!));
  assert.ok(entry?.kind === "plugin" && entry.subcommands?.[sub!], `${exe} ${sub} is a subcommand of ours`);
  const flags = parseDhcpDaemonFlags(rest);
  // The socket where the plugin, run on the node, dials it.
  assert.is(flags.socketPath, DEFAULT_SOCKET);
  assertSamePathOnNode(dpod, c, dirname(flags.socketPath));
  // -hostprefix: the node's / inside the container, so CNI_NETNS paths resolve.
  const host = mountOf(dpod, c, flags.hostPrefix);
  assert.is(host?.volume.hostPath?.path, "/");
  assert.is(host?.rest, "");
  // The executable is the installed one on the node (scripts/install.sh's default directory).
  const m = mountOf(dpod, c, exe!);
  assert.is(m?.volume.hostPath?.path, "/");
  assert.is(m?.rest, "/opt/cni/bin/dhcp");
});

test.run();
