import { KernelError } from "./errors.ts";
import { libcIfLoaded, type Libc } from "./libc.ts";
import { withNetns } from "./setns.ts";

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_BROADCAST = 6;
const SO_BINDTODEVICE = 25;
const MAX_DATAGRAM = 2048;

/** struct sockaddr_in for an IPv4 address (4 bytes) and port. */
function sockaddr(ip: Uint8Array, port: number): Uint8Array {
  const a = new Uint8Array(16);
  const v = new DataView(a.buffer);
  v.setUint16(0, AF_INET, true);
  v.setUint16(2, port, false);
  a.set(ip, 4);
  return a;
}

/**
 * A UDP socket bound to one device of a network namespace (SO_BINDTODEVICE), for a DHCP client:
 * the device may have no address yet, and with the device bound the kernel sends to the limited
 * broadcast 255.255.255.255 from 0.0.0.0 without any route. The socket belongs to the namespace it
 * was opened in for its whole life, so the caller opens it there and uses it from its own. Non
 * blocking: recv() returns undefined when nothing is queued, and the caller polls without holding
 * its event loop.
 */
export class DeviceUdpSocket {
  private readonly buf = new Uint8Array(MAX_DATAGRAM);

  private constructor(
    private readonly libc: Libc,
    private fd: number,
  ) {}

  static open(netns: string, dev: string, port: number): DeviceUdpSocket {
    const libc = libcIfLoaded();
    if (!libc) throw new KernelError("failed", "a device UDP socket needs libc through bun:ffi");
    return withNetns(netns, () => {
      const fd = libc.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) throw new KernelError("failed", `cannot open a UDP socket for ${dev}`);
      const s = new DeviceUdpSocket(libc, fd);
      const one = new Uint8Array(new Int32Array([1]).buffer);
      const name = new TextEncoder().encode(`${dev}\0`);
      // Two attachments of one namespace each bind port 68 on their own device.
      const ok =
        libc.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4) === 0 &&
        libc.setsockopt(fd, SOL_SOCKET, SO_BROADCAST, one, 4) === 0 &&
        libc.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, name.length) === 0 &&
        libc.bind(fd, sockaddr(new Uint8Array(4), port), 16) === 0;
      if (!ok) {
        s.close();
        throw new KernelError("failed", `cannot bind UDP port ${port} on ${dev} in ${netns}`);
      }
      return s;
    });
  }

  /** Sends one datagram; false when the kernel refused it (no route to a unicast address, say). */
  send(data: Uint8Array, ip: Uint8Array, port: number): boolean {
    const n = this.libc.sendto(this.fd, data, data.length, 0, sockaddr(ip, port), 16);
    return n === BigInt(data.length);
  }

  /** One queued datagram, or undefined when none is. */
  recv(): Uint8Array | undefined {
    const n = Number(this.libc.recv(this.fd, this.buf, this.buf.length, 0));
    return n > 0 ? this.buf.slice(0, n) : undefined;
  }

  close() {
    if (this.fd >= 0) this.libc.close(this.fd);
    this.fd = -1;
  }
}
