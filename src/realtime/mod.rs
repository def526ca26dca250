//! Socket.IO (realtime.md): the handshake with the session token, project rooms joined only by members,
//! presence, and the server-emitted `task:*` / `activity:new` events that follow committed writes.
//!
//! Events come from the store's commit path as [`DomainEvent`]s, in commit order, through one channel into one
//! task that emits them, so clients see a project's events in the order the writes committed.

mod presence;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Sid;
use socketioxide::SocketIo;
use tokio::sync::mpsc;

use self::presence::Presence;
use crate::api::dto::{ActivityDto, TaskDto};
use crate::app::AppState;
use crate::domain::events::{DomainEvent, EventSink, PresenceLink, PresenceMsg};
use crate::domain::{access, time, Actor, User};

const MAX_ROOMS: usize = 100;

/// The authenticated user of a socket.
#[derive(Debug)]
struct SocketUser {
    id: String,
    email: String,
    name: String,
}

/// Everything this server keeps per socket, in one allocation and one extension: at 10,000 sockets every
/// per-socket allocation, boxed handler and task shows in the RSS (bench/README.md).
struct SocketCtx {
    user: SocketUser,
    /// When the socket's token expires (its key in [`Expiry`]).
    expires: tokio::time::Instant,
    /// The event budget (`FLUX_RATE_SOCKET_EVENTS`): a fixed window's start, the events in it, and whether this
    /// window's `rate_limited` error was already sent.
    budget: Mutex<(Instant, u32, bool)>,
}

/// The socket extension: extensions hand out clones, so the context is shared.
#[derive(Clone)]
struct Ctx(Arc<SocketCtx>);

fn ctx(s: &SocketRef) -> Option<Arc<SocketCtx>> {
    s.extensions.get::<Ctx>().map(|c| c.0)
}

pub struct Realtime {
    io: SocketIo,
    presence: Presence,
    expiry: Expiry,
    snapshot_every: Duration,
    expire_after: Duration,
}

impl Realtime {
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    pub fn connected_sockets(&self) -> usize {
        self.io.sockets().len()
    }

    /// Shares presence with the other instances (postgres mode, realtime.md §8): the link the fan-out transport
    /// carries, plus the timers that republish this instance's snapshot and drop instances that went silent.
    pub fn cluster(self: &Arc<Self>, instance_id: &str) -> PresenceLink {
        let outgoing = self.presence.enable_cluster(instance_id);
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, PresenceMsg)>();
        let rt = self.clone();
        tokio::spawn(async move {
            while let Some((origin, msg)) = rx.recv().await {
                for (project_id, list) in rt.presence.remote(&origin, msg) {
                    rt.emit_presence(&project_id, &list).await;
                }
            }
        });
        // The timers hold the handle weakly so that they end with the server.
        let weak = Arc::downgrade(self);
        let (every, expiry) = (self.snapshot_every, self.expire_after);
        tokio::spawn(async move {
            let mut snapshot = tokio::time::interval(every);
            let mut check = tokio::time::interval((expiry / 5).max(Duration::from_millis(10)));
            loop {
                tokio::select! {
                    _ = snapshot.tick() => {
                        let Some(rt) = weak.upgrade() else { break };
                        rt.presence.announce_snapshot();
                    }
                    _ = check.tick() => {
                        let Some(rt) = weak.upgrade() else { break };
                        for (project_id, list) in rt.presence.expire(expiry) {
                            rt.emit_presence(&project_id, &list).await;
                        }
                    }
                }
            }
        });
        PresenceLink {
            outgoing,
            incoming: Arc::new(move |origin, msg| {
                let _ = tx.send((origin, msg));
            }),
        }
    }

    /// Tells this instance's sockets in a project room who is there.
    async fn emit_presence(&self, project_id: &str, list: &Value) {
        if let Err(e) = self.io.to(room(project_id)).emit("presence:update", list).await {
            tracing::warn!(error = %e, "presence emit failed");
        }
    }

    /// Closes every transport without a DISCONNECT packet, so clients reconnect by themselves (realtime.md §9).
    pub async fn close(&self) {
        self.io.close().await;
    }
}

/// Builds the Socket.IO layer for the router and the handle the state keeps.
pub fn layer(cfg: &crate::config::Config) -> (SocketIoLayer, Arc<Realtime>) {
    let (layer, io) = SocketIo::builder()
        .ping_interval(cfg.socket_ping_interval)
        .ping_timeout(cfg.socket_ping_timeout)
        .max_payload(cfg.socket_max_payload as u64)
        // Each websocket holds a read buffer of this size for its whole life, while clients send only small
        // packets (pongs, joins, the CONNECT with its token); a larger frame grows the buffer as needed. 4 KiB
        // (the default) was a tenth of a socket's memory, 1 KiB still ~4 % of it (bench/README.md).
        .ws_read_buffer_size(256)
        .build_layer();
    let rt = Realtime {
        expiry: Expiry::new(io.clone()),
        io,
        presence: Presence::default(),
        snapshot_every: cfg.presence_snapshot_interval,
        expire_after: cfg.presence_expiry,
    };
    (layer, Arc::new(rt))
}

/// A sink for the store plus the task that turns committed events into emits.
pub fn event_pipeline(rt: Arc<Realtime>) -> EventSink {
    let (tx, mut rx) = mpsc::unbounded_channel::<DomainEvent>();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            dispatch(&rt, event).await;
        }
    });
    Arc::new(move |e| {
        let _ = tx.send(e);
    })
}

fn room(project_id: &str) -> String {
    format!("project:{project_id}")
}

fn author(actor: &Actor) -> (String, String) {
    let name = if actor.name.is_empty() { actor.email.clone() } else { actor.name.clone() };
    (actor.id.clone(), name)
}

/// `task` exactly as the REST response for the write returned it, plus the author.
fn task_payload(project_id: &str, task: &crate::domain::Task, actor: &Actor) -> Value {
    let (user_id, user_name) = author(actor);
    json!({
        "projectId": project_id,
        "task": TaskDto::new(project_id, task),
        "userId": user_id,
        "userName": user_name,
        "timestamp": time::now(),
    })
}

/// Emits `name` to a project room, building the payload only when the room has a socket: for a room nobody is in
/// (a project no client has open, the usual case for most writes) socketioxide would build and encode it before
/// finding the room empty (~25,000 instructions per task write under callgrind). A socket that joins after this
/// check misses the event exactly as it would have had it joined after the emit.
async fn emit_to_room(rt: &Realtime, room_id: String, name: &'static str, payload: impl FnOnce() -> Value) {
    if rt.io.to(room_id.clone()).sockets().is_empty() {
        return;
    }
    if let Err(e) = rt.io.to(room_id).emit(name, &payload()).await {
        tracing::warn!(error = %e, event = name, "socket emit failed");
    }
}

async fn dispatch(rt: &Realtime, event: DomainEvent) {
    match event {
        DomainEvent::TaskCreated { project_id, task, actor } => {
            emit_to_room(rt, room(&project_id), "task:created", || task_payload(&project_id, &task, &actor)).await;
        }
        DomainEvent::TaskUpdated { project_id, task, actor } => {
            emit_to_room(rt, room(&project_id), "task:updated", || task_payload(&project_id, &task, &actor)).await;
        }
        DomainEvent::TaskDeleted { project_id, task_id, actor } => {
            let payload = || {
                let (user_id, user_name) = author(&actor);
                json!({
                    "projectId": project_id, "taskId": task_id, "userId": user_id, "userName": user_name,
                    "timestamp": time::now(),
                })
            };
            emit_to_room(rt, room(&project_id), "task:deleted", payload).await;
        }
        DomainEvent::ActivityAdded(a) => {
            let payload = || serde_json::to_value(ActivityDto::from(&a)).unwrap_or_default();
            emit_to_room(rt, room(&a.project_id), "activity:new", payload).await;
        }
        DomainEvent::MemberRemoved { project_id, member_ref } => {
            let r = room(&project_id);
            for s in rt.io.sockets() {
                let Some(c) = ctx(&s) else { continue };
                let u = &c.user;
                let refers = member_ref == u.id || member_ref.to_lowercase() == u.email.to_lowercase();
                if refers && s.rooms().iter().any(|x| x == r.as_str()) {
                    s.leave(r.clone());
                    if let Some(list) = rt.presence.leave(&project_id, &s.id.to_string()) {
                        rt.emit_presence(&project_id, &list).await;
                    }
                }
            }
        }
        DomainEvent::ProjectDeleted { project_id } => {
            let r = room(&project_id);
            for s in rt.io.sockets() {
                if s.rooms().iter().any(|x| x == r.as_str()) {
                    s.leave(r.clone());
                }
            }
            rt.presence.clear(&project_id);
        }
    }
}

#[derive(Debug)]
struct Refused(&'static str);
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What every socket's handlers share: one allocation for the server instead of captured clones per socket.
struct Handlers {
    state: AppState,
    rt: Arc<Realtime>,
    rate: Option<(u32, Duration)>,
}

/// Registers the default namespace: token check at CONNECT, then the event handlers.
pub fn register(rt: &Arc<Realtime>, state: AppState) {
    let rate = state.config.rates.get("FLUX_RATE_SOCKET_EVENTS").cloned().flatten();
    let shared = Arc::new(Handlers { state, rt: rt.clone(), rate });
    // The socket's handlers are registered by the middleware, which socketioxide awaits *before* it sends the
    // CONNECT packet; the connect handler itself runs as a task spawned after that packet, so a client that emits
    // `join:project` right after CONNECT (socket.io-client does) could find no handler yet under load, and its event
    // was dropped.
    let auth = move |s: SocketRef, TryData(auth): TryData<Value>| {
        let h = shared.clone();
        async move {
            authenticate(&h, &s, auth.ok()).await?;
            on_connect(s, h);
            Ok::<(), Refused>(())
        }
    };
    let connected = |_: SocketRef| async {};
    rt.io.ns("/", connected.with(auth));
}

async fn authenticate(h: &Handlers, s: &SocketRef, auth: Option<Value>) -> Result<(), Refused> {
    const REQUIRED: Refused = Refused("Authentication required");
    const INVALID: Refused = Refused("Invalid or expired token");
    let token =
        auth.as_ref().and_then(|a| a.get("token")).and_then(Value::as_str).filter(|t| !t.is_empty()).ok_or(REQUIRED)?;
    let (id, exp) = h.state.jwt.verify_with_exp(token).map_err(|_| INVALID)?;
    let user: User = h.state.store().get_user(&id).await.ok().flatten().filter(|u| u.is_active).ok_or(INVALID)?;
    let name = if user.name.is_empty() { user.email.clone() } else { user.name.clone() };
    let left = (exp - chrono::Utc::now().timestamp()).max(0) as u64;
    s.extensions.insert(Ctx(Arc::new(SocketCtx {
        user: SocketUser { id: user.id, email: user.email, name },
        expires: tokio::time::Instant::now() + Duration::from_secs(left),
        budget: Mutex::new((Instant::now(), 0, false)),
    })));
    Ok(())
}

/// One handler per socket for all its events (a fallback, dispatching on the name) and one for its disconnect,
/// both capturing only the shared [`Handlers`]: socketioxide boxes every registered handler per socket and keeps
/// named ones in a per-socket map.
fn on_connect(s: SocketRef, h: Arc<Handlers>) {
    // A connection does not outlive its token: a server-side disconnect (with the DISCONNECT packet, so the
    // client does not retry with the stale token) at `exp`, cancelled when the socket closes first.
    if let Some(c) = ctx(&s) {
        h.rt.expiry.add(c.expires, s.id);
    }
    let on_event = h.clone();
    s.on_fallback(move |s: SocketRef, Event(name): Event, TryData(data): TryData<Value>, ack: AckSender| {
        let h = on_event.clone();
        async move { on_event_msg(&h, s, name, data.ok(), ack).await }
    });
    s.on_disconnect(move |s: SocketRef| {
        let h = h.clone();
        async move {
            if let Some(c) = ctx(&s) {
                h.rt.expiry.remove(c.expires, s.id);
            }
            for (project_id, list) in h.rt.presence.drop_socket(&s.id.to_string()) {
                h.rt.emit_presence(&project_id, &list).await;
            }
        }
    });
}

async fn on_event_msg(h: &Handlers, s: SocketRef, name: String, data: Option<Value>, ack: AckSender) {
    if !allow(&s, h.rate, &name) {
        return;
    }
    match name.as_str() {
        "join:project" => join_project(s, ack, data, h).await,
        "leave:project" => {
            let Some(project_id) = project_id_of(data.as_ref()) else {
                return invalid(&s, ack, "leave:project");
            };
            let r = room(&project_id);
            if s.rooms().iter().any(|x| x == r.as_str()) {
                s.leave(r.clone());
                if let Some(list) = h.rt.presence.leave(&project_id, &s.id.to_string()) {
                    h.rt.emit_presence(&project_id, &list).await;
                }
            }
            let _ = ack.send(&json!({ "success": true }));
        }
        // The current client still emits these after its REST writes; the server's own events replace them, so
        // they are dropped (never relayed), checked only for being an object.
        "task:created" | "task:updated" | "task:deleted" => {
            if !matches!(data, Some(Value::Object(_))) {
                invalid(&s, ack, &name);
            }
        }
        _ => tracing::debug!(event = %name, "ignored unknown socket event"),
    }
}

/// The token-expiry timers of all sockets: one task and one ordered set of deadlines instead of a sleeping task
/// per socket. The task starts with the first socket (the layer is also built outside a runtime, in unit tests of
/// the middleware) and ends when the [`Realtime`] holding the sender is dropped.
struct Expiry {
    tx: mpsc::UnboundedSender<ExpiryCmd>,
    /// The task's receiving end and the handle it disconnects through, until the task is started.
    idle: Mutex<Option<(mpsc::UnboundedReceiver<ExpiryCmd>, SocketIo)>>,
}

enum ExpiryCmd {
    Add(tokio::time::Instant, Sid),
    Remove(tokio::time::Instant, Sid),
}

impl Expiry {
    fn new(io: SocketIo) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Expiry { tx, idle: Mutex::new(Some((rx, io))) }
    }

    async fn run(mut rx: mpsc::UnboundedReceiver<ExpiryCmd>, io: SocketIo) {
        let mut deadlines = BTreeSet::<(tokio::time::Instant, Sid)>::new();
        loop {
            let next = deadlines.first().map(|(at, _)| *at);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(ExpiryCmd::Add(at, sid)) => { deadlines.insert((at, sid)); }
                    Some(ExpiryCmd::Remove(at, sid)) => { deadlines.remove(&(at, sid)); }
                    None => break,
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)), if next.is_some() => {
                    let now = tokio::time::Instant::now();
                    while let Some(&(at, sid)) = deadlines.first().filter(|(at, _)| *at <= now) {
                        deadlines.remove(&(at, sid));
                        if let Some(sock) = io.get_socket(sid) {
                            let _ = sock.disconnect();
                        }
                    }
                }
            }
        }
    }

    /// Called from a socket's CONNECT handler, so inside the runtime.
    fn add(&self, at: tokio::time::Instant, sid: Sid) {
        if let Some((rx, io)) = self.idle.lock().take() {
            tokio::spawn(Self::run(rx, io));
        }
        let _ = self.tx.send(ExpiryCmd::Add(at, sid));
    }

    fn remove(&self, at: tokio::time::Instant, sid: Sid) {
        let _ = self.tx.send(ExpiryCmd::Remove(at, sid));
    }
}

fn error_event(s: &SocketRef, ack: AckSender, message: &str, code: &str, event: &str) {
    let _ = s.emit("error", &json!({ "message": message, "code": code, "event": event }));
    let _ = ack.send(&json!({ "success": false, "error": message, "code": code }));
}

fn invalid(s: &SocketRef, ack: AckSender, event: &str) {
    error_event(s, ack, "Invalid payload", "invalid_payload", event);
}

/// `projectId`: a non-empty string of at most 128 characters from `[A-Za-z0-9_-]` (realtime.md §6).
fn project_id_of(data: Option<&Value>) -> Option<String> {
    let id = data?.as_object()?.get("projectId")?.as_str()?;
    let ok = !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    ok.then(|| id.to_owned())
}

fn allow(s: &SocketRef, rate: Option<(u32, Duration)>, event: &str) -> bool {
    let Some((limit, window)) = rate else { return true };
    // Only authenticated sockets get this far (the CONNECT handler refuses the others).
    let Some(c) = ctx(s) else { return false };
    let mut b = c.budget.lock();
    if b.0.elapsed() >= window {
        *b = (Instant::now(), 0, false);
    }
    b.1 += 1;
    if b.1 <= limit {
        return true;
    }
    if !b.2 {
        b.2 = true;
        let _ = s.emit("error", &json!({ "message": "Too many events", "code": "rate_limited", "event": event }));
    }
    false
}

async fn join_project(s: SocketRef, ack: AckSender, data: Option<Value>, h: &Handlers) {
    const EVENT: &str = "join:project";
    let (state, rt) = (&h.state, &h.rt);
    let Some(project_id) = project_id_of(data.as_ref()) else { return invalid(&s, ack, EVENT) };
    let Some(c) = ctx(&s) else { return invalid(&s, ack, EVENT) };
    let user = &c.user;
    let r = room(&project_id);
    let already = s.rooms().iter().any(|x| x == r.as_str());
    if !already && s.rooms().iter().filter(|x| x.starts_with("project:")).count() >= MAX_ROOMS {
        return error_event(&s, ack, "Too many projects joined", "too_many_rooms", EVENT);
    }
    let store = state.store();
    let project = match store.get_project(&project_id).await {
        Ok(p) => p,
        Err(_) => return error_event(&s, ack, "Error joining project", "store_unavailable", EVENT),
    };
    // The stored user decides (auth.md §1): membership as the REST routes test it, a foreign project answered
    // like a missing one.
    let stored = match store.get_user(&user.id).await {
        Ok(Some(u)) if u.is_active => u,
        Ok(_) => return error_event(&s, ack, "Project not found", "project_not_found", EVENT),
        Err(_) => return error_event(&s, ack, "Error joining project", "store_unavailable", EVENT),
    };
    let Some(project) = project.filter(|p| access::is_member(p, &stored)) else {
        return error_event(&s, ack, "Project not found", "project_not_found", EVENT);
    };
    s.join(r.clone());
    let changed = rt.presence.join(&project.id, &s.id.to_string(), &user.id, &user.name, &time::now());
    let list = rt.presence.list(&project.id);
    if changed {
        rt.emit_presence(&project.id, &list).await;
    } else {
        let _ = s.emit("presence:update", &list);
    }
    let _ = ack.send(&json!({ "success": true, "projectId": project.id }));
}

#[cfg(test)]
mod tests {
    use super::project_id_of;
    use serde_json::json;

    #[test]
    fn project_ids_are_validated() {
        assert_eq!(project_id_of(Some(&json!({"projectId": "abc-1_2"}))).as_deref(), Some("abc-1_2"));
        for bad in [
            json!(null),
            json!([]),
            json!("x"),
            json!({}),
            json!({"projectId": ""}),
            json!({"projectId": 1}),
            json!({"projectId": "a/b"}),
            json!({"projectId": "x".repeat(129)}),
        ] {
            assert_eq!(project_id_of(Some(&bad)), None, "{bad}");
        }
        assert_eq!(project_id_of(None), None);
    }
}
