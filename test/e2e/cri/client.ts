// A minimal CRI client, the part of kubelet the e2e tests need: runtime status, the node's pod CIDR
// and the pod sandbox lifecycle over the CRI gRPC API (runtime.v1) on a unix socket.
//
//   client.ts SOCKET version
//   client.ts SOCKET runtime-status                 prints {runtimeReady, networkReady, networkReason}
//   client.ts SOCKET update-runtime-config CIDR[,CIDR]   the node's pod CIDRs, as kubelet sends them
//   client.ts SOCKET run NAME [HOSTPORT:CONTAINERPORT[/tcp|/udp]]... [--annotation=KEY=VALUE]...
//                                                                       prints the sandbox id
//   client.ts SOCKET status ID                                          prints {state, ip, netns}
//   client.ts SOCKET stop ID
//   client.ts SOCKET remove ID
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { randomUUID } from "node:crypto";
import { join } from "node:path";

type Call = (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: any) => void) => void;

function runtimeService(socket: string): grpc.Client & Record<string, Call> {
  const def = protoLoader.loadSync(join(import.meta.dirname, "runtime.proto"), {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as any;
  return new pkg.runtime.v1.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure());
}

function call(client: Record<string, Call>, method: string, req: object): Promise<any> {
  const deadline = new Date(Date.now() + 60_000);
  return new Promise((resolve, reject) =>
    client[method]!.call(client, req, { deadline }, (err, res) =>
      err ? reject(new Error(`${method}: ${err.details || err.message}`)) : resolve(res),
    ),
  );
}

/** "8080:80", "8080:80/udp" -> a CRI PortMapping. */
function portMapping(spec: string) {
  const m = /^(\d+):(\d+)(?:\/(tcp|udp|sctp))?$/i.exec(spec);
  if (!m) throw new Error(`bad port mapping "${spec}" (want HOSTPORT:CONTAINERPORT[/tcp|/udp|/sctp])`);
  return { hostPort: Number(m[1]), containerPort: Number(m[2]), protocol: (m[3] ?? "tcp").toUpperCase() };
}

async function main(argv: string[]): Promise<number> {
  const [socket, verb, ...args] = argv;
  if (!socket || !verb) {
    process.stderr.write(
      "usage: client.ts SOCKET version|runtime-status|update-runtime-config CIDR[,CIDR]|run NAME [HP:CP[/proto]]...|status ID|stop ID|remove ID\n",
    );
    return 2;
  }
  const client = runtimeService(socket);
  try {
    switch (verb) {
      case "version": {
        const res = await call(client, "version", { version: "v1" });
        process.stdout.write(`${JSON.stringify(res)}\n`);
        return 0;
      }
      case "runtime-status": {
        // kubelet keeps the node NotReady while NetworkReady is false ("cni config uninitialized").
        const res = await call(client, "status", { verbose: false });
        const conditions: { type: string; status: boolean; reason: string }[] = res.status?.conditions ?? [];
        const of = (type: string) => conditions.find((c) => c.type === type);
        process.stdout.write(
          `${JSON.stringify({
            runtimeReady: of("RuntimeReady")?.status ?? false,
            networkReady: of("NetworkReady")?.status ?? false,
            networkReason: of("NetworkReady")?.reason ?? "",
          })}\n`,
        );
        return 0;
      }
      case "update-runtime-config": {
        // kubelet sends Node.spec.podCIDRs joined by commas once the node has them.
        if (!args[0]) throw new Error("update-runtime-config needs the pod CIDR(s)");
        await call(client, "updateRuntimeConfig", { runtimeConfig: { networkConfig: { podCidr: args[0] } } });
        return 0;
      }
      case "run": {
        const [name, ...rest] = args;
        if (!name) throw new Error("run needs a pod name");
        const ANNOTATION = "--annotation=";
        const annotations = Object.fromEntries(
          rest
            .filter((a) => a.startsWith(ANNOTATION))
            .map((a) => {
              const kv = a.slice(ANNOTATION.length);
              const eq = kv.indexOf("=");
              if (eq <= 0) throw new Error(`bad annotation "${kv}" (want KEY=VALUE)`);
              return [kv.slice(0, eq), kv.slice(eq + 1)];
            }),
        );
        // Pod annotations, as kubelet passes them (kubernetes.io/ingress-bandwidth, ...).
        const config = {
          metadata: { name, uid: randomUUID(), namespace: "tscni-e2e", attempt: 0 },
          hostname: name,
          portMappings: rest.filter((a) => !a.startsWith(ANNOTATION)).map(portMapping),
          labels: { "tscni-e2e": "true" },
          annotations,
        };
        const res = await call(client, "runPodSandbox", { config });
        process.stdout.write(`${res.podSandboxId}\n`);
        return 0;
      }
      case "status": {
        const res = await call(client, "podSandboxStatus", { podSandboxId: args[0], verbose: true });
        const info = Object.fromEntries(Object.entries(res.info ?? {}).map(([k, v]) => [k, JSON.parse(v as string)]));
        // containerd reports the pod's network namespace in the verbose info's runtime spec.
        const namespaces: { type: string; path?: string }[] = info.info?.runtimeSpec?.linux?.namespaces ?? [];
        const netns = namespaces.find((n) => n.type === "network")?.path ?? "";
        process.stdout.write(
          `${JSON.stringify({ state: res.status?.state, ip: res.status?.network?.ip ?? "", netns })}\n`,
        );
        return 0;
      }
      case "stop":
        await call(client, "stopPodSandbox", { podSandboxId: args[0] });
        return 0;
      case "remove":
        await call(client, "removePodSandbox", { podSandboxId: args[0] });
        return 0;
      default:
        throw new Error(`unknown verb "${verb}"`);
    }
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`cri client: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
