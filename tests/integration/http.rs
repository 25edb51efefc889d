//! The local server over loopback: the README's curl examples, run as written.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use payment_attempts_local::dynamodb_local::free_port;

/// The `local-api` binary, stopped when the test ends, and the lines it printed so far.
struct LocalServer(Child, Arc<Mutex<Vec<String>>>);

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(port: u16) -> LocalServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_local-api"))
        .env("PORT", port.to_string())
        .env("AWS_ENDPOINT_URL_DYNAMODB", common::engine_endpoint())
        .env("AWS_ENDPOINT_URL_EVENTBRIDGE", common::events::events_endpoint())
        .env("TABLE_NAME", format!("readme-{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("local-api starts");
    let stderr = child.stderr.take().unwrap();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let lines = printed.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("local-api: {line}");
            lines.lock().unwrap().push(line);
        }
    });
    let mut server = LocalServer(child, printed);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("local-api exited ({status}): {:#?}", server.1.lock().unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "local-api did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// The shell block between the README's `examples` markers.
fn readme_examples() -> String {
    let readme = std::fs::read_to_string(format!("{}/README.md", common::ROOT)).unwrap();
    let start = readme.find("<!-- examples:start -->").expect("README has an examples block");
    let end = readme.find("<!-- examples:end -->").expect("README closes the examples block");
    let block = &readme[start..end];
    let code = block.split("```sh").nth(1).and_then(|b| b.split("```").next()).expect("a ```sh block");
    code.to_owned()
}

#[test]
fn the_readme_curl_examples_work_against_the_local_server() {
    let port = free_port().unwrap();
    let server = start_server(port);
    let token = payment_attempts_local::token::unsigned(&serde_json::json!({"org_id": "org_acme", "sub": "readme"}));
    // The block sets API and TOKEN for a reader's shell; here they point at this test's server.
    let script: String = readme_examples()
        .lines()
        .filter(|l| !l.starts_with("API=") && !l.starts_with("TOKEN="))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .env("API", format!("http://127.0.0.1:{port}"))
        .env("TOKEN", token)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "examples failed:\n{script}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        r#""object":"payment_attempt""#,
        r#""status":"pending""#,
        r#""object":"list""#,
        r#""status_history""#,
        r#""param":"limit""#,
        r#""status":"succeeded""#,
        r#""object":"payment_attempt_summary""#,
    ] {
        assert!(stdout.contains(expected), "README output lacks {expected}:\n{stdout}");
    }
    // The server prints the events of the attempt the examples recorded, then settled.
    let settled = stdout.split("payatt_").nth(1).map(|rest| &rest[..32]).expect("an attempt id in the output");
    let wanted = [
        format!("event payment_attempt.created payatt_{settled}.v1 org_acme pending 0.014"),
        format!("event payment_attempt.succeeded payatt_{settled}.v2 org_acme succeeded 0.014"),
    ];
    let started = Instant::now();
    loop {
        let printed = server.1.lock().unwrap().clone();
        if wanted.iter().all(|line| printed.contains(line)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no {wanted:?} in {printed:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One raw HTTP/1.1 exchange with `Connection: close`: the whole response, "" if the server
/// closed the connection without answering.
fn exchange(port: u16, head: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let request = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn the_local_gateway_answers_odd_headers_and_decodes_paths_as_api_gateway_does() {
    let port = free_port().unwrap();
    let _server = start_server(port);
    let auth = common::bearer("org_acme");
    let get = |path: &str, extra: &str| {
        exchange(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}{extra}"), "")
    };
    // A Host no URL can hold: API Gateway's own 400, not a dropped connection.
    let bad_host =
        exchange(port, &format!("GET /v1/payments/attempts HTTP/1.1\r\nHost: bad host:x\r\nAuthorization: {auth}"), "");
    assert!(bad_host.starts_with("HTTP/1.1 400"), "{bad_host:?}");
    assert!(bad_host.ends_with(r#"{"message":"Bad Request"}"#), "{bad_host:?}");
    // The gateway sets X-Forwarded-Proto itself, whatever the client sent.
    let odd_proto = get("/v1/payments/attempts", "\r\nX-Forwarded-Proto: ht tp://");
    assert!(odd_proto.starts_with("HTTP/1.1 200"), "{odd_proto:?}");
    // No token: the authorizer's 401, before any function.
    let anonymous = exchange(port, &format!("GET /v1/payments/attempts HTTP/1.1\r\nHost: 127.0.0.1:{port}"), "");
    assert!(
        anonymous.starts_with("HTTP/1.1 401") && anonymous.ends_with(r#"{"message":"Unauthorized"}"#),
        "{anonymous:?}"
    );
    // Path parameters arrive percent-decoded.
    let body = common::attempt_body(None, "1").to_string();
    let created = exchange(
        port,
        &format!("POST /v1/payments/attempts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\nContent-Type: application/json"),
        &body,
    );
    assert!(created.starts_with("HTTP/1.1 201"), "{created:?}");
    let id = created.split(r#""id":""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
    let encoded = format!("payatt%5F{}", &id["payatt_".len()..]);
    let fetched = get(&format!("/v1/payments/attempts/{encoded}"), "");
    assert!(fetched.starts_with("HTTP/1.1 200") && fetched.contains(&id), "{fetched:?}");
    let bad_id = get("/v1/payments/attempts/payatt%5Fnot%20hex", "");
    assert!(
        bad_id.starts_with("HTTP/1.1 400") && bad_id.contains("`payatt_not hex`"),
        "decoded in the message: {bad_id:?}"
    );
}
