//! SIGTERM on a real `fluxstudio serve` under write load: in-flight requests finish, new connections are refused,
//! the process exits 0 and every acknowledged write is in the legacy files (legacy-defects.md #40).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{spawn_child, task_ids_in_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests_and_keeps_every_acknowledged_write() {
    let dir = TempDir::new().unwrap();
    // Compaction stays out of the way, so the final one at shutdown is what writes the files.
    let server = spawn_child(dir.path(), &["--shutdown-grace", "10s"], &[("FLUX_JSON_COMPACT_SECONDS", "3600")]);
    let (mut child, addr, base) = (server.child, server.addr, server.base);
    let client = reqwest::Client::new();

    let signup: Value = client
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"email": "drain@example.com", "password": "password-123", "name": "Drain"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["token"].as_str().unwrap().to_owned();
    let project: Value = client
        .post(format!("{base}/api/projects"))
        .bearer_auth(&token)
        .json(&json!({"name": "Drain"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = project["project"]["id"].as_str().unwrap().to_owned();
    assert_eq!(client.get(format!("{base}/health/ready")).send().await.unwrap().status(), 200);

    // Load: writers creating tasks until the server stops answering.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6 {
        let (client, base, token, pid, stop) = (client.clone(), base.clone(), token.clone(), pid.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let resp = client
                    .post(format!("{base}/api/projects/{pid}/tasks"))
                    .bearer_auth(&token)
                    .json(&json!({"title": format!("w{w}-{i}")}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap();
                        acked.push(v["task"]["id"].as_str().unwrap().to_owned());
                    }
                    _ => break,
                }
            }
            acked
        }));
    }

    // A slow request: headers and half of the body now, the rest after SIGTERM.
    let body = json!({"title": "in flight at SIGTERM"}).to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/projects/{pid}/tasks HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(first).await.unwrap();
    slow.flush().await.unwrap();

    tokio::time::sleep(Duration::from_millis(400)).await;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err(), "no new connections once draining");

    slow.write_all(rest).await.unwrap();
    let mut response = Vec::new();
    slow.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "the in-flight request completes: {response}");
    let slow_task = response
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v["task"]["id"].as_str().map(str::to_owned))
        .expect("task in the response");

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the server exits after its grace period");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "clean shutdown exits 0");
    stop.store(true, Ordering::SeqCst);
    let mut acked: HashSet<String> = HashSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 6, "the load produced writes ({})", acked.len());
    acked.insert(slow_task);

    // The final compaction put every acknowledged write into the legacy files; the journal is drained.
    let on_disk = task_ids_in_files(dir.path());
    let missing: Vec<_> = acked.difference(&on_disk).collect();
    assert!(missing.is_empty(), "{} acknowledged writes missing from projects.json: {missing:?}", missing.len());
    assert!(!dir.path().join(".control.sock").exists());
}
