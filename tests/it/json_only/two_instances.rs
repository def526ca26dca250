//! Two instances on one PostgreSQL (postgres mode): a socket connected to instance A receives the events of a write
//! made through instance B, and presence lists the users of every instance (LISTEN/NOTIFY fan-out, realtime.md
//! §7–8). Runs once; it configures postgres mode itself.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{fresh_database, test_config, TestApp, SECRET};

async fn instance(db: &str) -> TestApp {
    let dir = Arc::new(tempfile::TempDir::new().unwrap());
    let mut cfg = test_config(dir.path(), &["--store", "postgres", "--database-url", db]);
    // Snapshots every 15 s and a 45 s expiry (realtime.md §8), shortened so a silent instance expires quickly.
    cfg.presence_snapshot_interval = Duration::from_millis(300);
    cfg.presence_expiry = Duration::from_millis(1500);
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into())).await.unwrap();
    TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir,
        owned_db: None,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Engine.IO 4 / Socket.IO 5 spoken directly: open, CONNECT with the token, join the project room.
async fn join(base: &str, token: &str, project: &str) -> Ws {
    join_seeing(base, token, project).await.0
}

/// [`join`], also returning the presence list the join answered with.
async fn join_seeing(base: &str, token: &str, project: &str) -> (Ws, Value) {
    let url = format!("{}/socket.io/?EIO=4&transport=websocket", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut joined = false;
    let mut seen = Vec::new();
    while let Some(msg) = ws.next().await {
        // Control frames (ping/pong) are not Engine.IO packets; only a transport error ends the handshake.
        let t = match msg {
            Ok(Message::Text(t)) => t,
            Ok(other) => {
                seen.push(format!("{other:?}"));
                continue;
            }
            Err(e) => panic!("websocket error while joining: {e}"),
        };
        let t = t.as_str();
        seen.push(t.to_owned());
        assert!(!t.starts_with("44"), "CONNECT refused: {t}");
        if t.starts_with('0') {
            ws.send(Message::text(format!("40{}", json!({ "token": token })))).await.unwrap();
        } else if t.starts_with("40") && !joined {
            joined = true;
            ws.send(Message::text(format!("42{}", json!(["join:project", { "projectId": project }])))).await.unwrap();
        } else if let Some(body) = t.strip_prefix("42[\"presence:update\",") {
            let list: Value = serde_json::from_str(body.strip_suffix(']').unwrap()).unwrap();
            return (ws, list);
        }
    }
    panic!("socket closed before joining; received {seen:?}");
}

/// The next event named `name`, answering pings meanwhile.
async fn next_event(ws: &mut Ws, name: &str) -> Value {
    let wait = async {
        while let Some(msg) = ws.next().await {
            let t = match msg {
                Ok(Message::Text(t)) => t.as_str().to_owned(),
                Ok(_) => continue,
                Err(e) => panic!("websocket error while waiting for {name}: {e}"),
            };
            if t == "2" {
                let _ = ws.send(Message::text("3")).await;
            } else if let Some(body) = t.strip_prefix("42") {
                let v: Value = serde_json::from_str(body).unwrap();
                if v[0] == name {
                    return v[1].clone();
                }
            }
        }
        panic!("socket closed while waiting for {name}");
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or_else(|_| panic!("no {name} within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_instance_a_receives_events_of_writes_made_through_instance_b() {
    let db = fresh_database();
    let a = instance(&db).await;
    let b = instance(&db).await;
    let (token, _) = a.signup("fanout@example.com").await;
    let pid = a.create_project(&token, "Fan-out").await;
    let mut ws = join(&a.base, &token, &pid).await;

    let r = b.create_task(&token, &pid, "written through B").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ev = next_event(&mut ws, "task:created").await;
    assert_eq!(ev["task"], r.body["task"], "the same payload as the REST answer B gave");
    assert_eq!(ev["projectId"], pid.as_str());
    let act = next_event(&mut ws, "activity:new").await;
    assert_eq!(act["type"], "task.created");

    let tid = r.body["task"]["id"].as_str().unwrap();
    let upd = b.put(&format!("/api/projects/{pid}/tasks/{tid}"), &token, json!({"status": "review"})).await;
    assert_eq!(upd.status, 200);
    assert_eq!(next_event(&mut ws, "task:updated").await["task"]["status"], "review");
}

/// The ids of the next `n` `task:created` events on `ws`.
async fn created_ids(ws: &mut Ws, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(next_event(ws, "task:created").await["task"]["id"].as_str().unwrap().to_owned());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_writes_through_b_reaches_a_complete_and_in_the_order_b_emitted_it() {
    // The publisher batches whatever is pending into few notifications (fanout.rs): none may be lost, duplicated
    // or reordered relative to what B's own sockets saw.
    let db = fresh_database();
    let a = instance(&db).await;
    let b = instance(&db).await;
    let (token, _) = a.signup("burst@example.com").await;
    let pid = a.create_project(&token, "Burst").await;
    let mut ws_a = join(&a.base, &token, &pid).await;
    let mut ws_b = join(&b.base, &token, &pid).await;

    const N: usize = 24;
    let titles: Vec<String> = (0..N).map(|i| format!("burst {i}")).collect();
    let writes = titles.iter().map(|t| b.create_task(&token, &pid, t));
    let mut rest: Vec<String> = futures_util::future::join_all(writes)
        .await
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.body);
            r.body["task"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let on_b = created_ids(&mut ws_b, N).await;
    let on_a = created_ids(&mut ws_a, N).await;
    assert_eq!(on_a, on_b, "A got B's events in B's order");
    let mut got = on_a.clone();
    got.sort();
    rest.sort();
    assert_eq!(got, rest, "every write once");
    // Nothing more follows: no duplicate arrives late.
    let late = tokio::time::timeout(Duration::from_millis(500), next_event(&mut ws_a, "task:created")).await;
    assert!(late.is_err(), "an extra task:created arrived: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_a_notification_reaches_the_other_instance_through_the_table() {
    let db = fresh_database();
    let a = instance(&db).await;
    let b = instance(&db).await;
    let (token, _) = a.signup("large@example.com").await;
    let pid = a.create_project(&token, "Large").await;
    let mut ws = join(&a.base, &token, &pid).await;

    // 5000 characters (the limit) of 3 bytes each: the task:created event alone is over NOTIFY's 8000 bytes.
    let description = "€".repeat(5000);
    let before = b.create_task(&token, &pid, "small, before").await;
    let r = b
        .post(&format!("/api/projects/{pid}/tasks"), &token, json!({"title": "large", "description": description}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = b.create_task(&token, &pid, "small, after").await;

    let ids = [&before, &r, &after].map(|x| x.body["task"]["id"].as_str().unwrap().to_owned());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ev = next_event(&mut ws, "task:created").await;
        if ev["task"]["id"] == ids[1].as_str() {
            assert_eq!(ev["task"]["description"], description.as_str());
        }
        seen.push(ev["task"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ids, "in write order, the stored one included");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db).await.unwrap();
    let stored: i64 = sqlx::query_scalar("select count(*) from realtime_events").fetch_one(&mut conn).await.unwrap();
    assert!(stored >= 1, "the large envelope went through realtime_events");
}

fn lists(list: &Value, ids: &[&str]) -> bool {
    let mut want: Vec<&str> = ids.to_vec();
    want.sort_unstable();
    let mut got: Vec<&str> = list["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    got.sort_unstable();
    got == want
}

/// Waits for a `presence:update` listing exactly `ids` (in any order), answering pings meanwhile.
async fn presence_becomes(ws: &mut Ws, ids: &[&str]) -> Value {
    let wait = async {
        loop {
            let list = next_event(ws, "presence:update").await;
            if lists(&list, ids) {
                return list;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("presence never became {ids:?}"))
}

/// Two users of one project: X (owner) and Y (member).
async fn shared_project(a: &TestApp) -> (String, String, String, String, String) {
    let (tx, x) = a.signup(&format!("x-{}@example.com", uuid::Uuid::new_v4())).await;
    let (ty, y) = a.signup(&format!("y-{}@example.com", uuid::Uuid::new_v4())).await;
    let pid = a.create_project(&tx, "Presence").await;
    let r = a.post(&format!("/api/projects/{pid}/members"), &tx, json!({ "userId": y })).await;
    assert!(r.status.is_success(), "{}", r.body);
    (tx, x, ty, y, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_users_of_both_instances_and_drops_one_whose_last_socket_closed() {
    let db = fresh_database();
    let a = instance(&db).await;
    let b = instance(&db).await;
    let (tx, x, ty, y, pid) = shared_project(&a).await;

    let mut ws_x = join(&a.base, &tx, &pid).await;
    let (mut ws_y, mut seen_by_y) = join_seeing(&b.base, &ty, &pid).await;
    if !lists(&seen_by_y, &[&x, &y]) {
        // B had not heard of X's join yet when Y joined: the announcement follows.
        seen_by_y = presence_becomes(&mut ws_y, &[&x, &y]).await;
    }
    presence_becomes(&mut ws_x, &[&x, &y]).await;
    let names: Vec<&str> = seen_by_y["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert!(names.iter().all(|n| n.starts_with("x-") || n.starts_with("y-")), "stored names: {names:?}");

    // A second tab of X on B does not change the set; closing X's socket on A leaves X present through B.
    let mut ws_x2 = join(&b.base, &tx, &pid).await;
    ws_x.close(None).await.unwrap();
    drop(ws_x);
    let premature = tokio::time::timeout(Duration::from_secs(1), presence_becomes(&mut ws_y, &[&y])).await;
    assert!(premature.is_err(), "X vanished although a tab of X is still in the room: {premature:?}");
    // Then X's last socket closes: B's room hears it without X.
    ws_x2.close(None).await.unwrap();
    drop(ws_x2);
    let after = presence_becomes(&mut ws_y, &[&y]).await;
    assert_eq!(after["projectId"], pid.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_another_instance_is_removed_from_presence_when_it_leaves_the_room() {
    let db = fresh_database();
    let a = instance(&db).await;
    let b = instance(&db).await;
    let (tx, x, ty, y, pid) = shared_project(&a).await;
    let mut ws_x = join(&a.base, &tx, &pid).await;
    let mut ws_y = join(&b.base, &ty, &pid).await;
    presence_becomes(&mut ws_x, &[&x, &y]).await;
    ws_y.send(Message::text(format!("42{}", json!(["leave:project", { "projectId": pid }])))).await.unwrap();
    presence_becomes(&mut ws_x, &[&x]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_stops_sending_snapshots_has_its_users_expired() {
    let db = fresh_database();
    let a = instance(&db).await;
    let (tx, x, _, _, pid) = shared_project(&a).await;
    let mut ws_x = join(&a.base, &tx, &pid).await;

    // An instance that announces one join and then falls silent, as one that died would.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db).await.unwrap();
    let envelope = json!({
        "v": 1, "origin": "ghost-instance",
        "presence": [{ "type": "join", "projectId": pid, "socket": "ghost-socket", "userId": "ghost-user",
                       "name": "Ghost", "joinedAt": "2026-01-01T00:00:00.000Z" }],
    });
    sqlx::query("select pg_notify('flux_events', $1)").bind(envelope.to_string()).execute(&mut conn).await.unwrap();
    let with_ghost = presence_becomes(&mut ws_x, &[&x, "ghost-user"]).await;
    assert_eq!(with_ghost["users"][0]["name"], "Ghost", "ordered by joinedAt");
    let started = std::time::Instant::now();
    presence_becomes(&mut ws_x, &[&x]).await;
    assert!(started.elapsed() >= Duration::from_millis(1000), "expired too early: {:?}", started.elapsed());
}
