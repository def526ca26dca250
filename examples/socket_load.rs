//! Socket.IO load client for bench/socket.sh: opens N websocket sockets (Engine.IO 4 spoken directly, so the
//! client stays light next to the server on a 2-core machine), joins them to R project rooms, then creates W tasks
//! through REST and measures how long each `task:created` takes to reach every socket of its room.
//!
//! `cargo run --release --example socket_load -- --url http://127.0.0.1:3001 --sockets 10000 --rooms 100 --writes 200`

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Args {
    url: String,
    sockets: usize,
    rooms: usize,
    writes: usize,
}

fn args() -> Args {
    let mut a = Args { url: "http://127.0.0.1:3001".into(), sockets: 1000, rooms: 10, writes: 100 };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--url" => a.url = v,
            "--sockets" => a.sockets = v.parse().expect("--sockets N"),
            "--rooms" => a.rooms = v.parse().expect("--rooms N"),
            "--writes" => a.writes = v.parse().expect("--writes N"),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

#[derive(Default)]
struct Stats {
    sent: Mutex<HashMap<String, Instant>>,
    latencies_us: Mutex<Vec<u64>>,
    joined: AtomicUsize,
    failed: AtomicUsize,
}

async fn socket(ws_url: String, token: String, project: String, stats: Arc<Stats>) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&ws_url).await else {
        stats.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut joined = false;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let text = text.as_str();
        if text.starts_with('0') {
            let _ = ws.send(Message::text(format!("40{}", json!({ "token": token })))).await;
        } else if text == "2" {
            let _ = ws.send(Message::text("3")).await;
        } else if text.starts_with("40") && !joined {
            joined = true;
            let _ = ws.send(Message::text(format!("42{}", json!(["join:project", { "projectId": project }])))).await;
            stats.joined.fetch_add(1, Ordering::Relaxed);
        } else if text.starts_with("44") {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            return;
        } else if let Some(body) = text.strip_prefix("42") {
            let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(body) else { continue };
            if parts.first().and_then(Value::as_str) == Some("task:created") {
                let title = parts[1]["task"]["title"].as_str().unwrap_or_default().to_owned();
                let now = Instant::now();
                if let Some(t0) = stats.sent.lock().get(&title) {
                    stats.latencies_us.lock().push(now.duration_since(*t0).as_micros() as u64);
                }
            }
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let a = args();
    let http = reqwest::Client::new();
    let email = format!("socket-load-{}@example.com", std::process::id());
    let r: Value = http
        .post(format!("{}/api/auth/signup", a.url))
        .json(&json!({"email": email, "password": "socket-load-pass", "name": "Socket Load"}))
        .send()
        .await
        .expect("server reachable")
        .json()
        .await
        .unwrap();
    let token = r["token"].as_str().expect("signup worked (is FLUX_RATE_LIMIT=off?)").to_owned();
    let mut projects = Vec::new();
    for i in 0..a.rooms {
        let p: Value = http
            .post(format!("{}/api/projects", a.url))
            .bearer_auth(&token)
            .json(&json!({"name": format!("room {i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        projects.push(p["project"]["id"].as_str().expect("project created").to_owned());
    }

    let stats = Arc::new(Stats::default());
    let ws_url = format!("{}/socket.io/?EIO=4&transport=websocket", a.url.replacen("http", "ws", 1));
    let started = Instant::now();
    for i in 0..a.sockets {
        tokio::spawn(socket(ws_url.clone(), token.clone(), projects[i % a.rooms].clone(), stats.clone()));
        // Connect in bursts so the listen backlog is never the bottleneck being measured.
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.joined.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed) < a.sockets
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "connected {} sockets ({} failed) in {:.1} s",
        stats.joined.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    println!("READY");
    // The bench script reads the server's RSS here.
    tokio::time::sleep(Duration::from_secs(2)).await;

    for k in 0..a.writes {
        let title = format!("load-{k}");
        let project = &projects[k % a.rooms];
        stats.sent.lock().insert(title.clone(), Instant::now());
        let resp = http
            .post(format!("{}/api/projects/{project}/tasks", a.url))
            .bearer_auth(&token)
            .json(&json!({ "title": title }))
            .send()
            .await;
        if !resp.is_ok_and(|r| r.status().is_success()) {
            eprintln!("task write {k} failed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lat = stats.latencies_us.lock().clone();
    lat.sort_unstable();
    let expected = a.writes * (stats.joined.load(Ordering::Relaxed) / a.rooms.max(1));
    println!(
        "fan-out: {} deliveries (expected about {expected}), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
}
