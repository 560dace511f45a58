import { closeSync, constants, openSync } from "node:fs";
import { KernelError } from "../errors.ts";
import type { CarrierRun, IpLink, LinkCarrier, LinkOp } from "../link.ts";
import type { Libc } from "../libc.ts";
import { withNetns } from "../setns.ts";
import {
  errorText,
  getStr,
  getU32,
  IFLA,
  parseIfaddr,
  parseIfinfo,
  parseRtmsg,
  RTM,
  RTM_F_CLONED,
  type IfInfo,
  type MessageWriter,
} from "./codec.ts";
import { addrReport, linkReport, routeReport, type NameOf } from "./reports.ts";
import {
  carries,
  changeRequest,
  dumpAddrs,
  dumpLinks,
  dumpRoutes,
  getLinkByIndex,
  getLinkByName,
  type Resolved,
} from "./requests.ts";
import { RtnlSocket, type Reply } from "./socket.ts";

/**
 * Link operations over rtnetlink from inside the process: the carrier lib/kernel/link.ts uses for
 * every op `carries` accepts (the skel installs it under Bun). One socket per run of ops, opened in
 * the target namespace (the thread switches in only for socket(2)) and closed at the end. A failure
 * stops the run and is worded as ip words it, so callers match the same texts either way.
 */

/** A refusal before or instead of the kernel's, in ip's words. */
class Refusal extends Error {}

export function netlinkCarrier(libc: Libc): LinkCarrier {
  return {
    carries,
    apply(ops, opts) {
      let sock: RtnlSocket;
      try {
        sock = opts.netns ? withNetns(opts.netns, () => RtnlSocket.open(libc)) : RtnlSocket.open(libc);
      } catch (e) {
        if (e instanceof KernelError) throw e;
        throw new KernelError("failed", (e as Error).message);
      }
      try {
        return new Session(sock).run(ops);
      } finally {
        sock.close();
      }
    },
  };
}

class Session {
  private readonly fds: number[] = [];
  private names = new Map<number, { name: string; flags: number }>();

  constructor(private readonly sock: RtnlSocket) {}

  private ask(w: MessageWriter): Reply {
    const seq = this.sock.nextSeq();
    return this.sock.request(w.finish(seq), seq);
  }

  run(ops: readonly LinkOp[]): CarrierRun {
    const groups: unknown[][] = [];
    for (let i = 0; i < ops.length; i++) {
      const o = ops[i]!;
      try {
        const report = this.report(o);
        if (report) groups.push(report);
        else {
          const r = this.ask(changeRequest(o, this.resolver));
          if (r.error) return { groups, failed: { index: i, stderr: errorText(r.error) } };
          // Names may have moved (renamed, deleted, another namespace): look them up afresh.
          this.names = new Map();
        }
      } catch (e) {
        if (e instanceof Refusal) return { groups, failed: { index: i, stderr: e.message } };
        throw e;
      } finally {
        for (const fd of this.fds.splice(0)) closeSync(fd);
      }
    }
    return { groups };
  }

  private readonly resolver: Resolved = {
    index: (name, argument) => {
      const link = this.linkByName(name);
      if (link) return link.index;
      throw new Refusal(
        argument ? `Error: argument "${name}" is wrong: Device does not exist` : `Cannot find device "${name}"`,
      );
    },
    nsFd: (path) => {
      try {
        const fd = openSync(path, constants.O_RDONLY);
        this.fds.push(fd);
        return fd;
      } catch {
        throw new Refusal(`Error: argument "${path}" is wrong: Invalid "netns" value`);
      }
    },
  };

  private linkByName(name: string): IfInfo | undefined {
    const r = this.ask(getLinkByName(name));
    const m = r.messages.find((x) => x.type === RTM.NEWLINK);
    return r.error || !m ? undefined : parseIfinfo(m.body);
  }

  private readonly nameOf: NameOf = (index) => {
    let known = this.names.get(index);
    if (known === undefined) {
      const r = this.ask(getLinkByIndex(index));
      const m = r.messages.find((x) => x.type === RTM.NEWLINK);
      if (r.error || !m) return undefined;
      known = this.remember(parseIfinfo(m.body));
    }
    return known;
  };

  private remember(l: IfInfo) {
    const known = { name: getStr(l.attrs.get(IFLA.IFNAME)) ?? "", flags: l.flags };
    this.names.set(l.index, known);
    return known;
  }

  private allLinks(): IfInfo[] {
    const links = this.ask(dumpLinks())
      .messages.filter((m) => m.type === RTM.NEWLINK)
      .map((m) => parseIfinfo(m.body));
    for (const l of links) this.remember(l);
    return links;
  }

  /** The report of a report op, undefined for a change. */
  private report(o: LinkOp): unknown[] | undefined {
    switch (o.op) {
      case "show": {
        const link = this.linkByName(o.dev);
        if (!link) throw new Refusal(`Device "${o.dev}" does not exist.`);
        const addrs = this.ask(dumpAddrs())
          .messages.filter((m) => m.type === RTM.NEWADDR)
          .map((m) => parseIfaddr(m.body))
          .filter((a) => a.index === link.index)
          .map(addrReport)
          .filter((a) => a !== undefined);
        const shown: IpLink = { ...linkReport(link, this.nameOf), addr_info: addrs };
        return [shown];
      }
      case "ports": {
        const master = this.linkByName(o.master);
        if (!master) throw new Refusal(`Error: argument "${o.master}" is wrong: Device does not exist`);
        return this.allLinks()
          .filter((l) => getU32(l.attrs.get(IFLA.MASTER)) === master.index)
          .map((l) => linkReport(l, this.nameOf));
      }
      case "links":
        return this.allLinks().map((l) => linkReport(l, this.nameOf));
      case "routes": {
        const routes = this.ask(dumpRoutes(o.family))
          .messages.filter((m) => m.type === RTM.NEWROUTE)
          .map((m) => parseRtmsg(m.body))
          .filter((r) => !(r.flags & RTM_F_CLONED));
        if (routes.length > 0) this.allLinks();
        return routes.map((r) => routeReport(r, this.nameOf));
      }
      default:
        return undefined;
    }
  }
}
