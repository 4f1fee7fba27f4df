// Frames over a TCP socket (or TLS on one): the socket's reads decoded as they come, a turn's frames in one write.

import net from 'node:net';
import tls from 'node:tls';
import { ErrorCode, TaskwireError } from '../errors.js';
import type { ByteBudget } from './budget.js';
import { asProtocolError, FramedConnection, type FramedOptions } from './framed.js';

/** A TCP connection's settings: see FramedOptions. */
export type TcpOptions = FramedOptions;

/** How long close() waits for queued frames to flush before it destroys the socket. */
const CLOSE_FLUSH_MS = 2000;

export class TcpConnection extends FramedConnection {
  readonly remote: string;
  /** 'tls' over a TLSSocket, for status pages and for the reasons given when a handshake is cut short. */
  readonly transport: string | undefined;
  private readonly socket: net.Socket;
  private readBudget: ByteBudget | null;
  private readonly budgetGranted = (): void => this.retryBudget();

  constructor(socket: net.Socket, options: TcpOptions = {}) {
    super(options);
    this.socket = socket;
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.transport = socket instanceof tls.TLSSocket ? 'tls' : undefined;
    // Frames are small and latency matters more than packet count; batching is done per turn by the writer instead.
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    this.readBudget = options.budget ?? null;
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => {
      this.closeError ??= err;
    });
    socket.on('close', () => this.finish());
  }

  /** The budget for payloads that straddle reads; may be swapped between frames (e.g. after a handshake). */
  set budget(budget: ByteBudget | null) {
    this.readBudget = budget;
    this.decoder.budget = budget;
  }

  protected unsent(): number {
    return this.socket.writableLength;
  }

  protected transmit(bytes: Buffer): boolean {
    this.sent += bytes.length;
    this.socket.write(bytes, this.afterSend);
    return false;
  }

  protected shut(rest: Buffer | null): void {
    if (rest) this.socket.write(rest);
    this.stopReading();
    this.socket.end();
    // A peer that never reads could keep the socket half-closed forever; don't wait on it.
    setTimeout(() => this.socket.destroy(), CLOSE_FLUSH_MS).unref();
  }

  protected abort(): void {
    this.socket.destroy();
  }

  protected pauseSource(): void {
    this.socket.pause();
  }

  protected resumeSource(): void {
    this.socket.resume();
  }

  protected override stopReading(): void {
    if (this.decoder.waiting) this.readBudget?.cancel(this.budgetGranted);
    this.decoder.stop();
  }

  private receive(chunk: Buffer): void {
    this.onRead();
    try {
      this.decoder.push(chunk);
      if (this.decoder.waiting) this.waitForBudget();
    } catch (err) {
      // The bytes that were no frame, for a client to say what it reached instead of a scheduler.
      this.close(Object.assign(asProtocolError(err), { received: Buffer.from(chunk.subarray(0, 64)) }));
    }
  }

  /** The decoder needs budget it was refused: stop reading until some is given back. */
  private waitForBudget(): void {
    this.pauseReading();
    this.readBudget!.wait(this.budgetGranted);
  }

  private retryBudget(): void {
    if (this.ending || this.done) return;
    try {
      this.decoder.retry();
    } catch (err) {
      this.close(asProtocolError(err));
      return;
    }
    if (this.decoder.waiting) this.readBudget!.wait(this.budgetGranted);
    else this.resumeReading();
  }
}

/** Opens a TCP connection; rejects with E_CONNECT when the other side cannot be reached. */
export function connectTcp(host: string, port: number, options: TcpOptions = {}): Promise<TcpConnection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const onError = (err: NodeJS.ErrnoException): void => {
      socket.destroy();
      reject(
        new TaskwireError(
          ErrorCode.CONNECT,
          `cannot reach the scheduler at ${host}:${port}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(new TcpConnection(socket, options));
    });
  });
}

/** TLS for a client or worker: true trusts the system's CAs; `ca` replaces them, `cert` and `key` identify this side. */
export type TlsClientOptions =
  | true
  | {
      ca?: string | Buffer;
      cert?: string | Buffer;
      key?: string | Buffer;
      servername?: string;
      /** Trust exactly the certificate with this SHA-256 fingerprint ('AB:CD:...'), whoever signed it, instead of a CA. */
      fingerprint256?: string;
    };

/**
 * Opens a TLS connection and resolves once the handshake is done, so a certificate the server presents and this side
 * rejects is an E_CONNECT naming the reason, not a connection lost later.
 */
export function connectTls(host: string, port: number, tlsOptions: TlsClientOptions, options: TcpOptions = {}): Promise<TcpConnection> {
  const o = tlsOptions === true ? {} : tlsOptions;
  // An IP address is not a valid SNI name (RFC 6066); the certificate is still checked against it.
  const servername = o.servername ?? (net.isIP(host) ? undefined : host);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      ...(servername === undefined ? {} : { servername }),
      ...(o.ca === undefined ? {} : { ca: o.ca }),
      ...(o.cert === undefined ? {} : { cert: o.cert }),
      ...(o.key === undefined ? {} : { key: o.key }),
      // A pinned certificate is checked below instead; it needs no CA and no name.
      ...(o.fingerprint256 === undefined ? {} : { rejectUnauthorized: false }),
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      socket.destroy();
      const reason = err.code && !err.message.includes(err.code) ? `${err.message} (${err.code})` : err.message;
      reject(new TaskwireError(ErrorCode.CONNECT, `cannot reach the scheduler at ${host}:${port} over TLS: ${reason}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.once('secureConnect', () => {
      if (o.fingerprint256 !== undefined) {
        const actual = socket.getPeerCertificate().fingerprint256;
        if (actual?.toUpperCase() !== o.fingerprint256.toUpperCase()) {
          return onError(Object.assign(new Error(`the certificate's fingerprint ${actual ?? '(none)'} is not the pinned one`), { code: 'ERR_TLS_PIN' }));
        }
      }
      socket.off('error', onError);
      resolve(new TcpConnection(socket, options));
    });
  });
}
