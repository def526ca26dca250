//! Two instances on one PostgreSQL (postgres mode): a socket connected to instance A receives the events of a write
//! made through instance B (LISTEN/NOTIFY fan-out, realtime.md §8). Runs once; it configures postgres mode itself.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{fresh_database, test_config, TestApp, SECRET};

async fn instance(db: &str) -> TestApp {
    let dir = Arc::new(tempfile::TempDir::new().unwrap());
    let cfg = test_config(dir.path(), &["--store", "postgres", "--database-url", db]);
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into())).await.unwrap();
    TestApp { base: format!("http://{}", server.addr), client: reqwest::Client::new(), server: Some(server), dir }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Engine.IO 4 / Socket.IO 5 spoken directly: open, CONNECT with the token, join the project room.
async fn join(base: &str, token: &str, project: &str) -> Ws {
    let url = format!("{}/socket.io/?EIO=4&transport=websocket", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut joined = false;
    while let Some(msg) = ws.next().await {
        // Control frames (ping/pong) are not Engine.IO packets; only a transport error ends the handshake.
        let t = match msg {
            Ok(Message::Text(t)) => t,
            Ok(_) => continue,
            Err(e) => panic!("websocket error while joining: {e}"),
        };
        let t = t.as_str();
        assert!(!t.starts_with("44"), "CONNECT refused: {t}");
        if t.starts_with('0') {
            ws.send(Message::text(format!("40{}", json!({ "token": token })))).await.unwrap();
        } else if t.starts_with("40") && !joined {
            joined = true;
            ws.send(Message::text(format!("42{}", json!(["join:project", { "projectId": project }])))).await.unwrap();
        } else if t.starts_with("42[\"presence:update\"") {
            return ws;
        }
    }
    panic!("socket closed before joining");
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
