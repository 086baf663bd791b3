//! Runs the kumactl binary against a tiny canned HTTP server (std::net, one
//! request per connection) to check URLs, paging, bodies, output and exit
//! codes end to end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// One request the server saw: method, path with query, body.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// Starts a server answering `route(method, path, port)` with (status, body).
fn serve(route: fn(&str, &str, u16) -> (u16, String)) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = header.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, answer) = route(&method, &path, port);
            log.lock()
                .unwrap()
                .push((method, path, String::from_utf8(body).unwrap()));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

fn kumactl(url: &str, args: &[&str], stdin: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kumactl"))
        .args(["--config-file", config.to_str().unwrap(), "--api-url", url])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const BAD_PORT: &str = r#"{"title":"Could not process resource","details":"Resource is not valid","causes":[{"field":"networking.inbound[0].port","message":"port 70000 is out of range"}]}"#;

fn route(method: &str, path: &str, port: u16) -> (u16, String) {
    let mesh = |n: &str| {
        format!(r#"{{"type":"Mesh","name":"{n}","creationTime":"2020-01-01T00:00:00Z"}}"#)
    };
    match (method, path) {
        ("GET", "/") => (
            200,
            r#"{"hostname":"h","tagline":"Kuma","version":"9.9.9"}"#.into(),
        ),
        ("GET", "/meshes") => (
            200,
            format!(
                r#"{{"total":2,"items":[{}],"next":"http://localhost:{port}/meshes?offset=1"}}"#,
                mesh("default")
            ),
        ),
        ("GET", "/meshes?offset=1") => (
            200,
            format!(r#"{{"total":2,"items":[{}],"next":null}}"#, mesh("demo")),
        ),
        ("PUT", "/meshes/demo") => (201, String::new()),
        ("PUT", "/meshes/demo/dataplanes/dp-1") => (400, BAD_PORT.into()),
        ("DELETE", "/meshes/default/traffic-routes/r1") => (200, String::new()),
        _ => (
            404,
            r#"{"title":"Could not retrieve a resource","details":"Not found","causes":[]}"#.into(),
        ),
    }
}

#[test]
fn get_follows_next_and_prints_a_table() {
    let (url, seen) = serve(route);
    let out = kumactl(&url, &["get", "meshes"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "NAME      mTLS   METRICS   LOGGING   TRACING   LOCALITY   AGE"
    );
    assert!(lines[1].starts_with("default   off    off"), "{stdout}");
    assert!(lines[2].starts_with("demo      off"), "{stdout}");
    let paths: Vec<String> = seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
    assert_eq!(paths, vec!["/meshes", "/meshes?offset=1"]);

    let out = kumactl(&url, &["get", "meshes", "-o", "json"], "");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"], 2);
    assert_eq!(v["items"][1]["name"], "demo");
}

#[test]
fn apply_puts_each_document_and_stops_at_the_first_error() {
    let (url, seen) = serve(route);
    let yaml = "type: Mesh\nname: {{ m }}\n---\ntype: Dataplane\nmesh: demo\nname: dp-1\n\
                networking:\n  address: 1.1.1.1\n  inbound:\n  - port: 70000\n    tags:\n      kuma.io/service: a\n\
                ---\ntype: Mesh\nname: never-sent\n";
    let out = kumactl(&url, &["apply", "-f", "-", "-v", "m=demo"], yaml);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: Could not process resource (Resource is not valid)\n\
         * networking.inbound[0].port: port 70000 is out of range\n"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("PUT", "/meshes/demo")
    );
    let body: serde_json::Value = serde_json::from_str(&seen[0].2).unwrap();
    assert_eq!(body, serde_json::json!({"type": "Mesh", "name": "demo"}));
    assert_eq!(seen[1].1, "/meshes/demo/dataplanes/dp-1");
}

#[test]
fn apply_dry_run_sends_nothing_and_missing_vars_fail() {
    let (url, seen) = serve(route);
    let out = kumactl(
        &url,
        &["apply", "-f", "-", "--dry-run", "-v", "m=x"],
        "type: Mesh\nname: '{{m}}'\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "type: Mesh\nname: x\n");
    let out = kumactl(&url, &["apply", "-f", "-"], "type: Mesh\nname: '{{m}}'\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no value for placeholder {{ m }}"),
        "{}",
        text(&out.stderr)
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn delete_prints_what_it_deleted_and_404_is_an_error() {
    let (url, _) = serve(route);
    let out = kumactl(&url, &["delete", "traffic-route", "r1"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "deleted TrafficRoute \"r1\"\n");
    let out = kumactl(&url, &["delete", "traffic-route", "nope"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: Could not retrieve a resource (Not found)\n"
    );
}

#[test]
fn unreachable_servers_are_named_and_version_survives_them() {
    let url = "http://127.0.0.1:1";
    let out = kumactl(url, &["get", "dataplanes"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("http://127.0.0.1:1/meshes/default/dataplanes"),
        "{}",
        text(&out.stderr)
    );
    let out = kumactl(url, &["version"], "");
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("Client: kumactl "));
}

#[test]
fn version_shows_the_server() {
    let (url, _) = serve(route);
    let out = kumactl(&url, &["version"], "");
    assert!(
        text(&out.stdout).contains("Server: Kuma 9.9.9"),
        "{}",
        text(&out.stdout)
    );
}
