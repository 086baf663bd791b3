//! Tiny HTTP/1.1 apps behind the proxies: each answers with its name, so a
//! test sees which instance answered, and counts the requests it served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building the apps' runtime")
    })
}

/// A tiny HTTP/1.1 app answering every request with `200` and its name, and
/// counting the requests it served.
pub struct App {
    /// The name it answers with.
    pub name: String,
    /// Its loopback port.
    pub port: u16,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    /// Starts an app answering `200` and `name` on a free loopback port.
    pub fn start(name: &str) -> App {
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the app");
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let (n, h) = (name.to_string(), hits.clone());
        let task = rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_connection(conn, n.clone(), h.clone()));
            }
        });
        App {
            name: name.to_string(),
            port,
            hits,
            task,
        }
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How an [`App::start_with`] app answers: after `delay`, with `status`
/// and its name as the body.
#[derive(Debug, Clone, Copy)]
pub struct AppBehavior {
    /// Time before each answer.
    pub delay: Duration,
    /// Status of each answer.
    pub status: u16,
}

impl Default for AppBehavior {
    fn default() -> Self {
        AppBehavior {
            delay: Duration::ZERO,
            status: 200,
        }
    }
}

impl App {
    /// Like [`App::start`], answering as `behavior` says (slow, failing).
    pub fn start_with(name: &str, behavior: AppBehavior) -> App {
        let rt = runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the app");
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let (n, h) = (name.to_string(), hits.clone());
        let task = rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_connection_with(conn, n.clone(), h.clone(), behavior));
            }
        });
        App {
            name: name.to_string(),
            port,
            hits,
            task,
        }
    }
}

async fn serve_connection_with(
    mut conn: tokio::net::TcpStream,
    name: String,
    hits: Arc<AtomicU64>,
    behavior: AppBehavior,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        hits.fetch_add(1, Ordering::SeqCst);
        if !behavior.delay.is_zero() {
            tokio::time::sleep(behavior.delay).await;
        }
        let close = head.contains("connection: close");
        let response = format!(
            "HTTP/1.1 {} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{name}",
            behavior.status,
            name.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if conn.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

async fn serve_connection(mut conn: tokio::net::TcpStream, name: String, hits: Arc<AtomicU64>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request head (GETs only: no bodies), then the answer.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        hits.fetch_add(1, Ordering::SeqCst);
        let close = head.contains("connection: close");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{name}",
            name.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if conn.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}
