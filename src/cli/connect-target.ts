/** Where `--connect` points: a daemon's Unix socket, or its loopback TCP listener (`statefsd --listen`). */
export type ConnectAddress = { socket: string } | { host: string; port: number };

/** `host:port` or `[v6]:port`: a host without `/`, `:` or brackets, or an IPv6 address in brackets. */
const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s/:[\]]+)):(\d{1,5})$/;

/**
 * `127.0.0.1:7400` or `[::1]:7400` is TCP; anything else, and every value with a `/` in it, is a
 * Unix socket path (write `./name:80` for a socket file named like host:port).
 */
export function parseConnectTarget(text: string): ConnectAddress {
  const m = HOST_PORT.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (host !== undefined && Number.isInteger(port) && port >= 1 && port <= 65_535) return { host, port };
  return { socket: text };
}
