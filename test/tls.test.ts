// TLS on the scheduler's TCP listener, against certificates made here by openssl: a CA, a server certificate for
// 127.0.0.1 and localhost, a client certificate, an expired server certificate and an unrelated CA.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ErrorCode } from '../lib/index.js';
import { runCli, sha256, startClient, startScheduler, startServer, startWorker, within } from './helpers.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-tls-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(name: string): void {
  openssl('req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=keyCertSign,cRLSign');
  fs.mkdirSync(path.join(dir, `${name}-db`));
  fs.writeFileSync(path.join(dir, `${name}-db`, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, `${name}-db`, 'serial'), '01\n');
  fs.writeFileSync(path.join(dir, `${name}.cnf`), [
    '[ca]', 'default_ca = d', '[d]', `database = ${name}-db/index.txt`, `new_certs_dir = ${name}-db`, `serial = ${name}-db/serial`,
    'default_md = sha256', 'policy = p', 'unique_subject = no', '[p]', 'commonName = supplied',
    // serverAuth and clientAuth: the scheduler's own HTTP API connects with its certificate when peers must present one.
    '[server]', 'subjectAltName = IP:127.0.0.1,DNS:localhost', 'extendedKeyUsage = serverAuth, clientAuth',
    '[client]', 'extendedKeyUsage = clientAuth', '',
  ].join('\n'));
}

// `openssl ca` takes explicit dates, which is how the expired certificate is made without a fake clock.
function issue(ca: string, name: string, kind: 'server' | 'client', dates = ['-days', '2']): void {
  openssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  openssl('ca', '-batch', '-config', `${ca}.cnf`, '-cert', `${ca}.crt`, '-keyfile', `${ca}.key`, '-in', `${name}.csr`,
    '-out', `${name}.crt`, '-extensions', kind, '-notext', ...dates);
}

makeCa('ca');
makeCa('other-ca');
issue('ca', 'server', 'server');
issue('ca', 'client', 'client');
issue('ca', 'expired', 'server', ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z']);
issue('other-ca', 'stranger', 'client');
openssl('req', '-x509', ...EC, '-keyout', 'self.key', '-out', 'self.crt', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost');

const read = (name: string): Buffer => fs.readFileSync(path.join(dir, name));
const file = (name: string): string => path.join(dir, name);
const serverTls = { cert: read('server.crt'), key: read('server.key') };
const ca = read('ca.crt');

t.test('a client and a worker over TLS complete tasks', async (t) => {
  const s = await startScheduler(t, { tls: serverTls });
  startWorker(t, s.port, undefined, { tls: { ca } });
  const c = startClient(t, s.port, { tls: { ca } });
  const inputs = Array.from({ length: 200 }, (_, i) => `tls-${i}`);
  const results = await within(20_000, 'results', Promise.all(inputs.map((x) => c.submit('sha256', x))));
  t.same(results, inputs.map(sha256));
  // By name as well as by address: the certificate carries both.
  const byName = startClient(t, s.port, { host: 'localhost', tls: { ca } });
  t.equal(await byName.submit('sha256', 'x'), sha256('x'));
});

t.test('the token works over TLS, and is still required', async (t) => {
  const s = await startScheduler(t, { tls: serverTls, token: 'sesame' });
  startWorker(t, s.port, undefined, { tls: { ca }, token: 'sesame' });
  const c = startClient(t, s.port, { tls: { ca }, token: 'sesame' });
  t.equal(await c.submit('sha256', 'a'), sha256('a'));
  const wrong = startClient(t, s.port, { tls: { ca }, token: 'nope' });
  await t.rejects(wrong.connect(), { code: ErrorCode.AUTH });
});

t.test('a certificate from another CA is E_CONNECT naming the reason', async (t) => {
  const s = await startScheduler(t, { tls: serverTls });
  const c = startClient(t, s.port, { tls: { ca: read('other-ca.crt') } });
  await t.rejects(c.connect(), { code: ErrorCode.CONNECT, message: /over TLS: unable to (get local issuer certificate|verify the first certificate)/ });
  // The system's CAs do not know a throwaway CA either.
  const system = startClient(t, s.port, { tls: true });
  await t.rejects(system.connect(), { code: ErrorCode.CONNECT, message: /over TLS: unable to/ });
});

t.test('an expired certificate is E_CONNECT naming the reason', async (t) => {
  const s = await startScheduler(t, { tls: { cert: read('expired.crt'), key: read('expired.key') } });
  const c = startClient(t, s.port, { tls: { ca } });
  await t.rejects(c.connect(), { code: ErrorCode.CONNECT, message: /certificate has expired \(CERT_HAS_EXPIRED\)/ });
});

t.test('a self-signed certificate not trusted is E_CONNECT naming the reason', async (t) => {
  const s = await startScheduler(t, { tls: { cert: read('self.crt'), key: read('self.key') } });
  const c = startClient(t, s.port, { tls: true });
  await t.rejects(c.connect(), { code: ErrorCode.CONNECT, message: /self-signed certificate/ });
});

t.test('with a CA, the scheduler requires and verifies client certificates', async (t) => {
  const s = await startScheduler(t, { tls: { ...serverTls, ca } });
  const errors: string[] = [];
  s.on('peerError', (e) => errors.push(e.message));
  const good = startClient(t, s.port, { tls: { ca, cert: read('client.crt'), key: read('client.key') } });
  startWorker(t, s.port, undefined, { tls: { ca, cert: read('client.crt'), key: read('client.key') } });
  t.equal(await good.submit('sha256', 'mtls'), sha256('mtls'));
  const none = startClient(t, s.port, { tls: { ca } });
  await t.rejects(none.connect(), { code: ErrorCode.CONNECT, message: /certificate required/ });
  const stranger = startClient(t, s.port, { tls: { ca, cert: read('stranger.crt'), key: read('stranger.key') } });
  await t.rejects(stranger.connect(), { code: ErrorCode.CONNECT, message: /refuses a client certificate it does not trust/ });
  t.ok(errors.some((m) => /TLS handshake failed/.test(m)), 'the scheduler reports the refused handshakes');
  t.equal(await good.submit('sha256', 'still'), sha256('still'), 'the scheduler carries on');
});

t.test('a plain TCP client against a TLS listener fails clearly, and the scheduler carries on', async (t) => {
  const s = await startScheduler(t, { tls: serverTls });
  startWorker(t, s.port, undefined, { tls: { ca } });
  const plain = startClient(t, s.port);
  await t.rejects(within(8000, 'the plain client to fail', plain.connect()), { code: ErrorCode.DISCONNECTED, message: /scheduler at 127\.0\.0\.1:\d+ closed the connection during the handshake \(if it listens with TLS, connect with the tls option, --tls\)/ });
  const c = startClient(t, s.port, { tls: { ca } });
  t.equal(await c.submit('sha256', 'after'), sha256('after'));
  // And the other way round: TLS to a plain listener.
  const p = await startScheduler(t);
  const tlsToPlain = startClient(t, p.port, { tls: { ca } });
  await t.rejects(tlsToPlain.connect(), { code: ErrorCode.CONNECT, message: /over TLS/ });
});

t.test('a connection that never starts its TLS handshake is closed after handshakeTimeoutMs', async (t) => {
  const { default: net } = await import('node:net');
  const s = await startScheduler(t, { tls: serverTls, handshakeTimeoutMs: 300 });
  const errors: string[] = [];
  s.on('peerError', (e) => errors.push(e.message));
  const started = Date.now();
  const socket = net.connect(s.port, '127.0.0.1');
  await within(5000, 'the silent socket to be closed', new Promise((resolve) => socket.on('close', resolve)));
  const took = Date.now() - started;
  t.ok(took >= 250 && took < 3000, `closed after ${took} ms`);
  t.ok(errors.some((m) => /TLS handshake failed/.test(m)), errors.join('; '));
});

t.test('the HTTP API reaches its own TLS listener, with and without client certificates', async (t) => {
  const client = { cert: read('client.crt'), key: read('client.key') };
  for (const [tls, workerTls] of [[serverTls, { ca }], [{ ...serverTls, ca }, { ca, ...client }]] as const) {
    const s = await startScheduler(t, { tls, httpPort: 0 });
    const w = startWorker(t, s.port, undefined, { tls: workerTls });
    await w.ready();
    const res = await fetch(`http://127.0.0.1:${s.httpPort}/submit`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'sha256', payload: 'via-http' }),
    });
    t.equal(res.status, 200, await res.clone().text());
    const { job_id } = (await res.json()) as { job_id: number };
    const job = await (await fetch(`http://127.0.0.1:${s.httpPort}/job/${job_id}?wait=10`)).text();
    t.match(job, sha256('via-http'));
  }
});

t.test('options are checked', async (t) => {
  const { createScheduler, createClient } = await import('../lib/index.js');
  t.throws(() => createScheduler({ tls: { cert: 'not a pem', key: 'nor this' } }), { code: ErrorCode.INVALID, message: /options\.tls/ });
  t.throws(() => createScheduler({ tls: { cert: serverTls.cert } as never }), { code: ErrorCode.INVALID, message: /options\.tls\.key/ });
  t.throws(() => createClient({ port: 1, tls: { cert: read('client.crt') } }), { code: ErrorCode.INVALID, message: /cert and options\.tls\.key/ });
  t.throws(() => createClient({ url: 'wss://x/ws', tls: true }), { code: ErrorCode.INVALID, message: /wss:/ });
});

t.test('the command lines', async (t) => {
  const { port } = await startServer(t, ['--tls-cert', file('server.crt'), '--tls-key', file('server.key'), '--tls-ca', file('ca.crt')]);
  const tlsArgs = ['--port', String(port), '--tls-ca', file('ca.crt'), '--tls-cert', file('client.crt'), '--tls-key', file('client.key')];
  const { spawnChild, root } = await import('./helpers.js');
  spawnChild(t, process.execPath, [path.join(root, 'dist', 'worker.js'), ...tlsArgs]);
  const out = await runCli(t, 'client', [...tlsArgs, 'hello']);
  t.equal(out.code, 0, out.stderr);
  t.match(out.stdout, sha256('hello'));
  const missing = await runCli(t, 'server', ['--port', '0', '--http-port', '0', '--tls-cert', file('nope.crt'), '--tls-key', file('server.key')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /--tls-cert/);
  t.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
  const refused = await runCli(t, 'client', ['--port', String(port), '--tls', 'hello']);
  t.not(refused.code, 0);
  t.match(refused.stderr, /TLS/);
});
