//! `sparklio-test-service`: a stand-in for Ollama / ComfyUI in the supervisor's tests.
//!
//! ```text
//! sparklio-test-service --port 18188 [--ignore-sigterm] [--exit-after-ms 200 --exit-code 3]
//!                       [--startup-ms 500] [--print 5] [--grandchild] [--pid-file F]
//! ```
//! HTTP (127.0.0.1:<port>):
//! - `GET /health`: 200 "ok" (never answers once hung);
//! - `POST /exit/{code}`: exits with that code;
//! - `POST /hang`: stops answering `/health` (stays alive);
//! - `POST /grandchild`: starts a child of itself that sleeps, answers its pid;
//! - `POST /print/{n}`: prints n lines to stdout and n to stderr;
//! - `POST /print-raw/{bytes}`: prints that many bytes to stdout without a line end.
//!
//! `--sleep` (no port) only sleeps: that is what a grandchild runs.

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Args {
    port: Option<u16>,
    ignore_sigterm: bool,
    exit_after_ms: Option<u64>,
    exit_code: i32,
    startup_ms: u64,
    print: usize,
    grandchild_at_start: bool,
    pid_file: Option<String>,
    sleep_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        port: None,
        ignore_sigterm: false,
        exit_after_ms: None,
        exit_code: 1,
        startup_ms: 0,
        print: 0,
        grandchild_at_start: false,
        pid_file: None,
        sleep_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => {
                a.port = Some(
                    value("--port")?
                        .parse()
                        .map_err(|e| format!("--port: {e}"))?,
                )
            }
            "--ignore-sigterm" => a.ignore_sigterm = true,
            "--exit-after-ms" => {
                a.exit_after_ms = Some(
                    value("--exit-after-ms")?
                        .parse()
                        .map_err(|e| format!("{e}"))?,
                )
            }
            "--exit-code" => {
                a.exit_code = value("--exit-code")?.parse().map_err(|e| format!("{e}"))?
            }
            "--startup-ms" => {
                a.startup_ms = value("--startup-ms")?.parse().map_err(|e| format!("{e}"))?
            }
            "--print" => a.print = value("--print")?.parse().map_err(|e| format!("{e}"))?,
            "--grandchild" => a.grandchild_at_start = true,
            "--pid-file" => a.pid_file = Some(value("--pid-file")?),
            "--sleep" => a.sleep_only = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn exit_with(code: i32) -> &'static str {
    eprintln!("exiting with code {code} as asked");
    std::process::exit(code)
}

fn print_lines(n: usize) {
    for i in 0..n {
        println!("stdout line {i}");
        eprintln!("stderr line {i}");
    }
}

/// `bytes` of output with no line end (a program dumping a blob to stdout).
fn print_without_newline(bytes: usize) {
    use std::io::Write;
    let chunk = [b'x'; 64 * 1024];
    let mut out = std::io::stdout().lock();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        if out.write_all(&chunk[..n]).is_err() {
            return;
        }
        left -= n;
    }
    let _ = out.flush();
}

/// Start a sleeping copy of this program (a grandchild of the supervisor); returns its pid.
fn spawn_grandchild(ignore_sigterm: bool) -> std::io::Result<u32> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--sleep");
    if ignore_sigterm {
        cmd.arg("--ignore-sigterm");
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}

async fn ignore_sigterm_forever() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut s) = signal(SignalKind::terminate()) {
            while s.recv().await.is_some() {
                println!("SIGTERM received and ignored");
            }
        }
    }
    #[cfg(windows)]
    if let Ok(mut s) = tokio::signal::windows::ctrl_break() {
        while s.recv().await.is_some() {
            println!("CTRL_BREAK received and ignored");
        }
    }
}

/// Windows: the supervisor's polite stop is CTRL_BREAK; say so, then exit 0 (what a
/// console program without a handler does silently).
#[cfg(windows)]
async fn exit_on_ctrl_break() {
    if let Ok(mut s) = tokio::signal::windows::ctrl_break() {
        if s.recv().await.is_some() {
            println!("CTRL_BREAK received: exiting");
            std::process::exit(0);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sparklio-test-service: {e}");
            std::process::exit(2);
        }
    };
    if args.ignore_sigterm {
        tokio::spawn(ignore_sigterm_forever());
    } else {
        #[cfg(windows)]
        tokio::spawn(exit_on_ctrl_break());
    }
    if args.sleep_only {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    }
    println!("test service starting (pid {})", std::process::id());
    print_lines(args.print);
    if let Some(f) = &args.pid_file {
        let _ = std::fs::write(f, std::process::id().to_string());
    }
    if args.grandchild_at_start {
        match spawn_grandchild(args.ignore_sigterm) {
            Ok(pid) => println!("grandchild pid {pid}"),
            Err(e) => eprintln!("cannot start grandchild: {e}"),
        }
    }
    if let Some(ms) = args.exit_after_ms {
        let code = args.exit_code;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            eprintln!("exiting with code {code} as asked");
            std::process::exit(code);
        });
    }
    // Stands for the time a real service takes to load before it listens.
    tokio::time::sleep(Duration::from_millis(args.startup_ms)).await;

    let Some(port) = args.port else {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    };
    let hung = Arc::new(AtomicBool::new(false));
    let ignore_sigterm = args.ignore_sigterm;
    let app = Router::new()
        .route(
            "/health",
            get({
                let hung = hung.clone();
                move || async move {
                    if hung.load(Ordering::Relaxed) {
                        std::future::pending::<()>().await;
                    }
                    "ok"
                }
            }),
        )
        .route(
            "/exit/{code}",
            post(|Path(code): Path<i32>| async move { exit_with(code) }),
        )
        .route(
            "/hang",
            post({
                let hung = hung.clone();
                move || async move {
                    hung.store(true, Ordering::Relaxed);
                    println!("hanging: /health will not answer any more");
                    "hanging"
                }
            }),
        )
        .route(
            "/grandchild",
            post(move || async move {
                match spawn_grandchild(ignore_sigterm) {
                    Ok(pid) => pid.to_string(),
                    Err(e) => format!("error: {e}"),
                }
            }),
        )
        .route(
            "/print/{n}",
            post(|Path(n): Path<usize>| async move {
                print_lines(n);
                "printed"
            }),
        )
        .route(
            "/print-raw/{bytes}",
            post(|Path(bytes): Path<usize>| async move {
                print_without_newline(bytes);
                "printed"
            }),
        );
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(3);
        }
    };
    println!("listening on 127.0.0.1:{port}");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("server error: {e}");
        std::process::exit(4);
    }
}
