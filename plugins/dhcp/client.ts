import { randomInt } from "node:crypto";
import { DeviceUdpSocket } from "../../lib/kernel/device-udp.ts";
import { applyLinkOps, showLink } from "../../lib/kernel/link.ts";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClientOptions } from "./config.ts";
import {
  BROADCAST4,
  classlessRoutes,
  decode,
  encode,
  ip4,
  ip4List,
  MessageType,
  maskBits,
  type Message,
  Opt,
  type Outgoing,
  parseIp4,
  typeOf,
  u32,
} from "./packet.ts";

/**
 * The DHCP client the daemon runs for one attachment: DISCOVER/OFFER/REQUEST/ACK on the container's
 * interface from inside its namespace, renewal (unicast to the server that granted the lease) and
 * RELEASE. Replies are asked for by broadcast (the broadcast flag is always set while the
 * interface has no address): a UDP socket, unlike the reference's packet socket, cannot receive a
 * unicast to an address the interface does not have yet.
 */

const SERVER_PORT = 67;
const CLIENT_PORT = 68;
const POLL_MS = 20;

export interface Attachment {
  /** The namespace path as the daemon opens it (with -hostprefix applied). */
  netns: string;
  ifname: string;
  clientId: Uint8Array;
  options: ClientOptions;
}

export interface Timing {
  /** One exchange's whole budget (the reference's -timeout). */
  timeoutMs: number;
  /** The longest wait between retransmissions (the reference's -resendmax). */
  resendMaxMs: number;
}

/** What a server granted, as the daemon keeps (and stores) it. */
export interface Lease {
  address: string;
  prefix: number;
  server: string;
  routers: string[];
  dns: string[];
  domain?: string;
  routes: { dst: string; gw: string }[];
  leaseSeconds: number;
  renewSeconds: number;
  /** When the last ACK came, ms since the epoch: renewal and expiry count from it. */
  boundAt: number;
}

/** 0x00 (not a hardware type) and the attachment's name, as the reference identifies a client. */
export function clientIdOf(containerId: string, network: string, ifname: string): Uint8Array {
  const id = new TextEncoder().encode(`${containerId}/${network}/${ifname}`).subarray(0, 254);
  return Uint8Array.from([0, ...id]);
}

/** The attachment's interface (or its namespace) no longer exists: its lease has no one to serve. */
export class LinkGone extends Error {}

/** The interface's MAC, bringing it up first: the server's replies need a running link. */
function prepareLink(a: Attachment): Uint8Array {
  let link: ReturnType<typeof showLink>;
  try {
    link = showLink(a.ifname, { netns: a.netns });
  } catch (e) {
    throw new LinkGone(`cannot look at ${a.ifname} in ${a.netns}: ${(e as Error).message}`);
  }
  if (!link) throw new LinkGone(`no link ${a.ifname} in ${a.netns}`);
  if (!link.flags.includes("UP")) {
    const r = applyLinkOps([{ op: "link-set", dev: a.ifname, up: true }], { netns: a.netns });
    if (!r.ok) throw new Error(`cannot set ${a.ifname} up: ${r.stderr}`);
  }
  const mac = link.address?.split(":").map((h) => Number.parseInt(h, 16)) ?? [];
  if (mac.length !== 6 || mac.some(Number.isNaN)) throw new Error(`${a.ifname} has no Ethernet address`);
  return Uint8Array.from(mac);
}

class Exchange {
  readonly xid = randomInt(1, 0xffffffff);
  private readonly sock: DeviceUdpSocket;
  readonly mac: Uint8Array;

  constructor(
    private readonly a: Attachment,
    private readonly t: Timing,
  ) {
    this.mac = prepareLink(a);
    this.sock = DeviceUdpSocket.open(a.netns, a.ifname, CLIENT_PORT);
  }

  message(type: number, extra: [number, Uint8Array][], ciaddr?: Uint8Array): Outgoing {
    // A provided client identifier replaces the generated one.
    const own = this.a.options.provide.some(([code]) => code === Opt.CLIENT_ID);
    const id: [number, Uint8Array][] = own ? [] : [[Opt.CLIENT_ID, this.a.clientId]];
    return {
      type,
      xid: this.xid,
      mac: this.mac,
      ciaddr,
      broadcast: ciaddr === undefined,
      options: [...id, ...extra, ...this.a.options.provide],
    };
  }

  /** Sends `m` to `to` (broadcast when unicast is refused) until a reply `wanted` takes it or time runs out. */
  async ask(m: Outgoing, to: Uint8Array, wanted: (r: Message) => boolean, what: string): Promise<Message> {
    const bytes = encode(m);
    const deadline = Date.now() + this.t.timeoutMs;
    let wait = Math.min(1000, this.t.resendMaxMs);
    while (Date.now() < deadline) {
      if (!this.sock.send(bytes, to, SERVER_PORT)) this.sock.send(bytes, BROADCAST4, SERVER_PORT);
      const resend = Math.min(Date.now() + wait, deadline);
      while (Date.now() < resend) {
        for (let d = this.sock.recv(); d; d = this.sock.recv()) {
          const r = decode(d);
          if (r && r.xid === this.xid && r.chaddr.subarray(0, 6).every((b, i) => b === this.mac[i]) && wanted(r))
            return r;
        }
        await sleep(POLL_MS);
      }
      wait = Math.min(wait * 2, this.t.resendMaxMs);
    }
    throw new Error(`no ${what} from a DHCP server on ${this.a.ifname} within ${this.t.timeoutMs / 1000}s`);
  }

  /** Sends once, expecting nothing back (RELEASE). */
  tell(m: Outgoing, to: Uint8Array) {
    const bytes = encode(m);
    if (!this.sock.send(bytes, to, SERVER_PORT)) this.sock.send(bytes, BROADCAST4, SERVER_PORT);
  }

  close() {
    this.sock.close();
  }
}

const requestList = (a: Attachment): [number, Uint8Array] => [Opt.PARAM_REQUEST, Uint8Array.from(a.options.request)];

function leaseOf(ack: Message): Lease {
  const leaseSeconds = u32(ack, Opt.LEASE_TIME) ?? 3600;
  return {
    address: ip4(ack.yiaddr),
    prefix: maskBits(ack.options.get(Opt.SUBNET_MASK)),
    server: ip4List(ack, Opt.SERVER_ID)[0] ?? "255.255.255.255",
    routers: ip4List(ack, Opt.ROUTER),
    dns: ip4List(ack, Opt.DNS),
    domain: ack.options.has(Opt.DOMAIN_NAME) ? new TextDecoder().decode(ack.options.get(Opt.DOMAIN_NAME)) : undefined,
    routes: classlessRoutes(ack),
    leaseSeconds,
    // T1 from option 58, else half the lease (RFC 2131 §4.4.5).
    renewSeconds: u32(ack, Opt.RENEWAL_TIME) ?? Math.floor(leaseSeconds / 2),
    boundAt: Date.now(),
  };
}

const ackOrNak = (r: Message) => typeOf(r) === MessageType.ACK || typeOf(r) === MessageType.NAK;

/** A new lease: the whole DORA exchange, by broadcast. */
export async function acquire(a: Attachment, t: Timing): Promise<Lease> {
  const x = new Exchange(a, t);
  try {
    const offer = await x.ask(
      x.message(MessageType.DISCOVER, [requestList(a)]),
      BROADCAST4,
      (r) => typeOf(r) === MessageType.OFFER,
      "DHCPOFFER",
    );
    const server = offer.options.get(Opt.SERVER_ID);
    const request = x.message(MessageType.REQUEST, [
      [Opt.REQUESTED_IP, offer.yiaddr],
      ...(server ? ([[Opt.SERVER_ID, server]] as [number, Uint8Array][]) : []),
      requestList(a),
    ]);
    const ack = await x.ask(request, BROADCAST4, ackOrNak, "DHCPACK");
    if (typeOf(ack) === MessageType.NAK) throw new Error(`DHCP server refused ${ip4(offer.yiaddr)} (DHCPNAK)`);
    return leaseOf(ack);
  } finally {
    x.close();
  }
}

/** Extends `lease` (RENEWING: unicast to its server from the address it granted). */
export async function renew(a: Attachment, t: Timing, lease: Lease): Promise<Lease> {
  const x = new Exchange(a, t);
  try {
    const ciaddr = parseIp4(lease.address);
    const ack = await x.ask(
      x.message(MessageType.REQUEST, [requestList(a)], ciaddr),
      parseIp4(lease.server),
      ackOrNak,
      "DHCPACK",
    );
    if (typeOf(ack) === MessageType.NAK) throw new Error(`DHCP server refused to renew ${lease.address} (DHCPNAK)`);
    return leaseOf(ack);
  } finally {
    x.close();
  }
}

/** Gives `lease` back to its server (best effort: RELEASE has no reply). */
export function release(a: Attachment, t: Timing, lease: Lease) {
  const x = new Exchange(a, t);
  try {
    const server = parseIp4(lease.server);
    x.tell(x.message(MessageType.RELEASE, [[Opt.SERVER_ID, server]], parseIp4(lease.address)), server);
  } finally {
    x.close();
  }
}
