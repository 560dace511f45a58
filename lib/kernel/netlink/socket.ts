import type { Libc } from "../libc.ts";
import {
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseError,
  parseMessages,
  type Message,
  type NlError,
} from "./codec.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
export const NETLINK_NETFILTER = 12;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
/** Larger than any one datagram of a dump (the kernel fills at most 32 KiB per recv). */
const RECV_BUF = 128 * 1024;

/** What one request got back: the messages (a dump's, or a GET's one) and the error, if any. */
export interface Reply {
  messages: Message[];
  error?: NlError;
}

/**
 * A NETLINK_ROUTE socket (or another netlink protocol's) through libc. It belongs to the network namespace of the thread that
 * opened it for its whole life: open it inside withNetns, switch back, and use it from anywhere.
 * Requests are synchronous, one at a time (send, then read until the ACK or the dump's end).
 */
export class RtnlSocket {
  private seq = 0;
  private readonly buf = new Uint8Array(RECV_BUF);

  private constructor(
    private readonly libc: Libc,
    private readonly fd: number,
  ) {}

  static open(libc: Libc, protocol = NETLINK_ROUTE): RtnlSocket {
    const fd = libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd < 0) throw new Error("cannot open a netlink socket");
    const s = new RtnlSocket(libc, fd);
    const one = new Uint8Array(new Int32Array([1]).buffer);
    // Extended ACKs carry the kernel's own error message (what ip prints as "Error: ..."); capped
    // ACKs do not echo the request back.
    libc.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
    libc.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
    const addr = new Uint8Array(12);
    new DataView(addr.buffer).setUint16(0, AF_NETLINK, true);
    if (libc.bind(fd, addr, addr.length) !== 0) {
      s.close();
      throw new Error("cannot bind a netlink socket");
    }
    return s;
  }

  nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0 || 1;
    return this.seq;
  }

  /** Sends one finished message (built with `seq`) and collects its answer. */
  request(message: Uint8Array, seq: number): Reply {
    const sent = Number(this.libc.send(this.fd, message, message.length, 0));
    if (sent !== message.length) throw new Error("netlink send failed");
    const messages: Message[] = [];
    for (;;) {
      const n = Number(this.libc.recv(this.fd, this.buf, this.buf.length, 0));
      if (n <= 0) throw new Error("netlink recv failed");
      for (const m of parseMessages(this.buf.slice(0, n))) {
        if (m.seq !== seq) continue; // nothing else is asked on this socket: a stale answer
        if (m.type === NLMSG_ERROR) {
          const e = parseError(m);
          return e.errno === 0 ? { messages } : { messages, error: e };
        }
        if (m.type === NLMSG_DONE) return { messages };
        messages.push(m);
        if (!(m.flags & NLM_F_MULTI)) return { messages };
      }
    }
  }

  close() {
    this.libc.close(this.fd);
  }
}
