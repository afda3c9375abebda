//! Starts the real `sluice-partitioner` binary against a small server speaking the Lambda Runtime
//! API and checks a round trip: an event in, the handler's response out; a malformed event is
//! reported on the `…/error` endpoint; the process keeps serving.

use std::{fs, process::Stdio, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::IntoResponse,
    routing::{get, post},
};
use sluice_partitioner::Partitioner;
use tokio::{
    io::AsyncReadExt,
    sync::{Mutex, mpsc},
};

use crate::sample_data;

#[derive(Debug)]
enum Call {
    Response(String, Bytes),
    Error(String, Bytes),
    InitError(#[allow(dead_code, reason = "shown in the panic message")] Bytes),
}

struct Api {
    events: Mutex<Vec<(String, Vec<u8>)>>,
    calls: mpsc::UnboundedSender<Call>,
}

async fn next(State(api): State<std::sync::Arc<Api>>) -> impl IntoResponse {
    let item = api.events.lock().await.pop();
    let Some((id, body)) = item else {
        // No more work: hold the request, as Lambda does between invocations.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return (StatusCode::NO_CONTENT, HeaderMap::new(), Vec::new());
    };
    let mut h = HeaderMap::new();
    h.insert("Lambda-Runtime-Aws-Request-Id", HeaderValue::from_str(&id).expect("header"));
    h.insert("Lambda-Runtime-Deadline-Ms", HeaderValue::from_static("4102444800000"));
    h.insert(
        "Lambda-Runtime-Invoked-Function-Arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:sluice-partitioner"),
    );
    h.insert(
        "Lambda-Runtime-Trace-Id",
        HeaderValue::from_static("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=1;Sampled=0"),
    );
    h.insert("Content-Type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, h, body)
}

async fn response(State(api): State<std::sync::Arc<Api>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    api.calls.send(Call::Response(id, body)).ok();
    StatusCode::ACCEPTED
}

async fn error(State(api): State<std::sync::Arc<Api>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    api.calls.send(Call::Error(id, body)).ok();
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<std::sync::Arc<Api>>, body: Bytes) -> StatusCode {
    api.calls.send(Call::InitError(body)).ok();
    StatusCode::ACCEPTED
}

async fn wait(rx: &mut mpsc::UnboundedReceiver<Call>) -> Call {
    tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("the runtime answered").expect("call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binary_round_trip() {
    let event = fs::read(sample_data().join("firehose/mixed.json")).expect("fixture");
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Served in reverse order: the event first, then a malformed one.
    let api = std::sync::Arc::new(Api {
        events: Mutex::new(vec![
            ("req-2".into(), b"{\"not\": \"a firehose event\"}".to_vec()),
            ("req-1".into(), event.clone()),
        ]),
        calls: tx,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-partitioner"))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "sluice-partitioner")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sluice-partitioner");

    match wait(&mut rx).await {
        Call::Response(id, body) => {
            assert_eq!(id, "req-1");
            let want: serde_json::Value =
                serde_json::from_str(&Partitioner::default().handle_json(&event).expect("handle")).expect("json");
            let got: serde_json::Value = serde_json::from_slice(&body).expect("response is JSON");
            assert_eq!(got, want);
        }
        other => panic!("expected a response, got {other:?}"),
    }
    match wait(&mut rx).await {
        Call::Error(id, body) => {
            assert_eq!(id, "req-2");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("error is JSON");
            assert!(v["errorMessage"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        }
        other => panic!("expected an error report, got {other:?}"),
    }
    // Still alive and waiting for the next invocation.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(child.try_wait().expect("status").is_none(), "the runtime exited after an error");
    child.start_kill().expect("kill");
    let mut stdout = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).await.expect("read");
    let logged: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let reasons: Vec<&str> = logged.iter().filter_map(|v| v["fields"]["reason"].as_str()).collect();
    assert!(reasons.contains(&"unknown_log_type"), "structured rejection logs: {stdout}");
    assert!(logged.iter().any(|v| v["fields"]["record_id"].as_str().is_some_and(|id| id.starts_with("4954698668"))));
}
