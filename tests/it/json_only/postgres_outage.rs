//! PostgreSQL cut off under the server (a TCP "chaos proxy" between the two): requests
//! that need it get 503 `store_unavailable` within the acquire timeout, liveness stays up, readiness goes 503, and
//! the server recovers by itself when the database is back. Runs once (it configures postgres mode itself).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::Method;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{fresh_database, test_config, TestApp, SECRET};

pub(crate) struct ChaosProxy {
    pub(crate) addr: SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl ChaosProxy {
    pub(crate) async fn start(upstream: String) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (o, l) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client); // refused while cut
                    continue;
                }
                let upstream = upstream.clone();
                l.lock().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        ChaosProxy { addr, open, links }
    }

    /// Drops every live connection and refuses new ones.
    pub(crate) fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }

    pub(crate) fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db` → (`host:port`, `postgres://user@PROXY/db`).
pub(crate) fn through(url: &str, proxy: SocketAddr) -> (String, String) {
    let scheme_end = url.find("://").unwrap() + 3;
    let rest = &url[scheme_end..];
    let at = rest.find('@').map(|i| i + 1).unwrap_or(0);
    let slash = rest.find('/').unwrap();
    let hostport = rest[at..slash].to_owned();
    let proxied = format!("{}{}{proxy}{}", &url[..scheme_end], &rest[..at], &rest[slash..]);
    (hostport, proxied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_503_and_the_server_recovers_without_a_restart() {
    let db = fresh_database();
    let (upstream, _) = through(&db, "127.0.0.1:1".parse().unwrap());
    let proxy = ChaosProxy::start(upstream).await;
    let (_, url) = through(&db, proxy.addr);

    let dir = Arc::new(tempfile::TempDir::new().unwrap());
    // A budget with a hot set (support.rs gives the JSON run's servers none): its recovery is under test too.
    let args = ["--store", "postgres", "--database-url", &url, "--db-acquire-timeout", "1s", "--db-pool-max", "10"];
    let cfg = test_config(dir.path(), &args);
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into())).await.unwrap();
    let app = TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir,
        owned_db: None,
    };
    let (token, _) = app.signup("outage@example.com").await;
    let pid = app.create_project(&token, "Outage").await;
    assert_eq!(app.create_task(&token, &pid, "before").await.status, 200);

    proxy.cut();
    let started = Instant::now();
    let r = app.create_task(&token, &pid, "during").await;
    assert_eq!((r.status.as_u16(), r.body["code"].as_str()), (503, Some("store_unavailable")), "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    let r = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    assert_eq!(r.status, 503, "reads that need PostgreSQL fail fast too: {}", r.body);
    assert!(started.elapsed() < Duration::from_secs(20), "no hang: {:?}", started.elapsed());
    assert_eq!(app.call(Method::GET, "/health", None, None).await.status, 200, "liveness does no I/O");
    assert_eq!(app.call(Method::GET, "/health/ready", None, None).await.status, 503);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let r = app.create_task(&token, &pid, "after").await;
        if r.status == 200 || Instant::now() > deadline {
            break r.status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "the pool reconnects by itself");
    let tasks = app.get(&format!("/api/projects/{pid}/tasks"), &token).await;
    let titles: Vec<&str> =
        tasks.body["tasks"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["before", "after"], "the refused write left nothing behind");
    assert_eq!(app.call(Method::GET, "/health/ready", None, None).await.status, 200);
}

/// `DATABASE_READ_URL` is wired: list reads go to the read pool (here the same database under a second URL), which
/// `/metrics` counts per pool.
#[tokio::test]
async fn list_reads_go_to_the_read_replica_when_configured() {
    let db = fresh_database();
    let dir = Arc::new(tempfile::TempDir::new().unwrap());
    let cfg = test_config(dir.path(), &["--store", "postgres", "--database-url", &db, "--database-read-url", &db]);
    let server = fluxstudio::app::start(fluxstudio::app::ServerOptions::new(cfg, SECRET.into())).await.unwrap();
    let app = TestApp {
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        server: Some(server),
        dir,
        owned_db: None,
    };
    let (token, _) = app.signup("replica@example.com").await;
    app.create_project(&token, "Replica").await;
    let before = read_pool_count(&app).await;
    let list = app.get("/api/projects", &token).await;
    assert_eq!(list.body["projects"].as_array().unwrap().len(), 1, "read-your-writes holds on the same database");
    assert!(read_pool_count(&app).await > before, "the list read was counted on the read pool");
}

async fn read_pool_count(app: &TestApp) -> f64 {
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("flux_db_read_queries_total") && l.contains("pool=\"read\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
