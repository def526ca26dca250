// Socket.IO compatibility of the Flux Studio server with the real socket.io-client 4.x (the web client's library).
// Spawns the release or debug binary given in FLUXSTUDIO_BIN on a temporary data dir and drives it over loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { createHmac } from 'node:crypto';
import { io } from 'socket.io-client';

const SECRET = 'node-test-secret-0123456789abcdef0123456789abcdef';
let server;
let base;
let dataDir;

function startServer() {
  const bin = process.env.FLUXSTUDIO_BIN;
  assert.ok(bin, 'FLUXSTUDIO_BIN must point at the fluxstudio binary');
  dataDir = mkdtempSync(joinPath(tmpdir(), 'flux-socket-'));
  const child = spawn(bin, ['--no-env-file', '--data-dir', dataDir, 'serve', '--host', '127.0.0.1', '--port', '0'], {
    env: { ...process.env, JWT_SECRET: SECRET, FLUX_BCRYPT_COST: '4', FLUX_RATE_LIMIT: 'off', RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/listening on (\S+)/);
      if (m) resolve({ child, base: `http://${m[1]}` });
    });
    child.once('exit', (code) => reject(new Error(`server exited early with ${code}`)));
  });
}

async function api(method, path, token, body) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  return { status: res.status, body: await res.json() };
}

async function signup(name) {
  const r = await api('POST', '/api/auth/signup', null, { email: `${name}@example.com`, password: 'password-123', name });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return { token: r.body.token, id: r.body.user.id, name };
}

function b64url(s) {
  return Buffer.from(s).toString('base64url');
}

function hs256(payload) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

const sockets = [];
function connect(token, opts = {}) {
  const s = io(base, { auth: token === undefined ? {} : { token }, reconnection: false, forceNew: true, ...opts });
  sockets.push(s);
  return s;
}

function once(socket, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

/** Resolves with every `event` received during `ms`. */
function collect(socket, event, ms) {
  const got = [];
  const h = (v) => got.push(v);
  socket.on(event, h);
  return new Promise((resolve) => setTimeout(() => {
    socket.off(event, h);
    resolve(got);
  }, ms));
}

async function connected(token, opts) {
  const s = connect(token, opts);
  await once(s, 'connect');
  return s;
}

function join(s, projectId) {
  return s.timeout(3000).emitWithAck('join:project', { projectId, userName: 'forged name' });
}

before(async () => {
  ({ child: server, base } = await startServer());
});

after(async () => {
  const exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
  server.kill('SIGTERM');
  // Graceful shutdown with sockets still open: the server drops them and exits 0.
  assert.deepEqual(await exited, { code: 0, signal: null });
  for (const s of sockets) s.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('handshake without a token or with a bad or expired one is refused with a readable connect_error', async () => {
  const none = connect(undefined);
  assert.equal((await once(none, 'connect_error')).message, 'Authentication required');
  const empty = connect('');
  assert.equal((await once(empty, 'connect_error')).message, 'Authentication required');
  const forged = connect('not.a.token');
  assert.equal((await once(forged, 'connect_error')).message, 'Invalid or expired token');
  const u = await signup('expired');
  const now = Math.floor(Date.now() / 1000);
  const expired = connect(hs256({ id: u.id, email: 'expired@example.com', userType: 'client', iat: now - 100, exp: now - 10 }));
  assert.equal((await once(expired, 'connect_error')).message, 'Invalid or expired token');
  const ok = await connected(u.token);
  assert.ok(ok.connected);
});

test('a connection is closed by the server when its token expires', async () => {
  const u = await signup('shortlived');
  const now = Math.floor(Date.now() / 1000);
  const claims = { id: u.id, email: 'shortlived@example.com', userType: 'client', iat: now };
  // One socket closes by itself first (its expiry timer is cancelled on the way); the other is closed at `exp`.
  const early = await connected(hs256({ ...claims, exp: now + 2 }));
  early.disconnect();
  const s = await connected(hs256({ ...claims, exp: now + 2 }));
  // "io server disconnect": the DISCONNECT packet was sent, so the client does not retry with the stale token.
  assert.equal(await once(s, 'disconnect', 5000), 'io server disconnect');
});

test('join requires membership; a foreign project looks exactly like a missing one', async () => {
  const owner = await signup('joinowner');
  const stranger = await signup('joinstranger');
  const p = await api('POST', '/api/projects', owner.token, { name: 'Room' });
  const pid = p.body.project.id;
  const s = await connected(owner.token);
  assert.deepEqual(await join(s, pid), { success: true, projectId: pid });

  const t = await connected(stranger.token);
  const foreignErr = once(t, 'error');
  const foreign = await join(t, pid);
  const missingErr = once(t, 'error');
  const missing = await join(t, 'no-such-project');
  assert.deepEqual(foreign, missing);
  assert.deepEqual(await foreignErr, await missingErr);
  assert.deepEqual(await missingErr, { message: 'Project not found', code: 'project_not_found', event: 'join:project' });
});

test('presence counts users, not tabs, and uses the stored name', async () => {
  const u = await signup('presence');
  const p = await api('POST', '/api/projects', u.token, { name: 'Presence' });
  const pid = p.body.project.id;
  const tab1 = await connected(u.token);
  const first = once(tab1, 'presence:update');
  await join(tab1, pid);
  const list1 = await first;
  assert.equal(list1.projectId, pid);
  assert.deepEqual(list1.users.map((x) => [x.id, x.name]), [[u.id, 'presence']]);
  const tab2 = await connected(u.token);
  const second = once(tab2, 'presence:update');
  await join(tab2, pid);
  assert.equal((await second).users.length, 1, 'a second tab does not add a user');
});

test('REST writes reach other members as task and activity events; forged client events reach nobody', async () => {
  const owner = await signup('evowner');
  const member = await signup('evmember');
  const p = await api('POST', '/api/projects', owner.token, { name: 'Events' });
  const pid = p.body.project.id;
  await api('POST', `/api/projects/${pid}/members`, owner.token, { userId: member.id, role: 'member' });
  const watcher = await connected(member.token);
  await join(watcher, pid);
  const author = await connected(owner.token);
  await join(author, pid);

  const created = once(watcher, 'task:created');
  const activity = once(watcher, 'activity:new');
  const r = await api('POST', `/api/projects/${pid}/tasks`, owner.token, { title: 'Draft poster' });
  const ev = await created;
  assert.equal(ev.projectId, pid);
  assert.deepEqual(ev.task, r.body.task, 'the task exactly as the REST response returned it');
  assert.equal(ev.userId, owner.id);
  assert.equal(ev.userName, 'evowner');
  const act = await activity;
  assert.equal(act.type, 'task.created');
  assert.equal(act.projectId, pid);
  assert.ok(act.id && act.timestamp);

  const updated = once(watcher, 'task:updated');
  await api('PUT', `/api/projects/${pid}/tasks/${r.body.task.id}`, owner.token, { status: 'in-progress' });
  assert.equal((await updated).task.status, 'in_progress');
  const deleted = once(watcher, 'task:deleted');
  await api('DELETE', `/api/projects/${pid}/tasks/${r.body.task.id}`, owner.token);
  assert.equal((await deleted).taskId, r.body.task.id);

  // The old client re-emits its own writes; the server must not relay them.
  const relayed = collect(watcher, 'task:created', 400);
  author.emit('task:created', { projectId: pid, task: { id: 'forged', title: 'forged' } });
  assert.deepEqual(await relayed, []);
});

test('malformed payloads get an error event and the server keeps serving', async () => {
  const u = await signup('malformed');
  const s = await connected(u.token);
  for (const payload of [undefined, null, 'x', 42, [1], { projectId: '' }, { projectId: 7 }, { projectId: '../x' }, { projectId: 'x'.repeat(200) }]) {
    const err = once(s, 'error');
    if (payload === undefined) s.emit('join:project');
    else s.emit('join:project', payload);
    assert.deepEqual(await err, { message: 'Invalid payload', code: 'invalid_payload', event: 'join:project' });
  }
  const err = once(s, 'error');
  s.emit('task:updated', 'not an object');
  assert.equal((await err).code, 'invalid_payload');
  s.emit('no:such:event', { a: 1 });
  const p = await api('POST', '/api/projects', u.token, { name: 'Still alive' });
  assert.deepEqual(await join(s, p.body.project.id), { success: true, projectId: p.body.project.id });
});

test('a removed member stops receiving the project events', async () => {
  const owner = await signup('rmowner');
  const member = await signup('rmmember');
  const p = await api('POST', '/api/projects', owner.token, { name: 'Removal' });
  const pid = p.body.project.id;
  await api('POST', `/api/projects/${pid}/members`, owner.token, { userId: member.id });
  const s = await connected(member.token);
  await join(s, pid);
  const removedActivity = once(s, 'activity:new');
  await api('DELETE', `/api/projects/${pid}/members/${member.id}`, owner.token);
  assert.equal((await removedActivity).type, 'member.removed');
  await new Promise((r) => setTimeout(r, 100));
  const later = collect(s, 'task:created', 400);
  await api('POST', `/api/projects/${pid}/tasks`, owner.token, { title: 'after removal' });
  assert.deepEqual(await later, []);
});

test('long-polling only and websocket only both work', async () => {
  const u = await signup('transports');
  const p = await api('POST', '/api/projects', u.token, { name: 'Transports' });
  for (const transports of [['polling'], ['websocket']]) {
    const s = await connected(u.token, { transports });
    assert.deepEqual(await join(s, p.body.project.id), { success: true, projectId: p.body.project.id });
    const ev = once(s, 'task:created');
    await api('POST', `/api/projects/${p.body.project.id}/tasks`, u.token, { title: `via ${transports[0]}` });
    assert.equal((await ev).task.title, `via ${transports[0]}`);
    s.close();
  }
});
