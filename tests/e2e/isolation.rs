//! The host survives any guest: an infinite loop meets the deadline (504), a trap is a 500, a
//! memory blow-up meets the limit; the host keeps serving after each. And what a request leaves
//! in an instance's memory reaches only later requests of the same caller, in an instance that
//! never failed, for at most `--instance-reuse` requests (the contract in host/src/runtime/pool.rs).

use crate::support::Server;

fn misbehaving_server() -> Server {
    misbehaving_server_with(&[])
}

fn misbehaving_server_with(extra: &[&str]) -> Server {
    let mut args = vec![
        "--component",
        env!("EMBER_MISBEHAVE_WASM"),
        "--deadline-ms",
        "500",
        "--memory-limit-mib",
        "64",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// What the caller `key` finds in its instance's memory.
fn recall(server: &Server, key: &str) -> String {
    let (status, body) = server.get_as(key, "/recall");
    assert_eq!(status, 200, "{body}");
    body["left"].as_str().unwrap().to_string()
}

fn remember(server: &Server, key: &str, secret: &str) {
    assert_eq!(server.get_as(key, &format!("/remember?{secret}")).0, 200);
}

#[test]
fn a_warm_instance_serves_its_caller_only() {
    let server = std::sync::Arc::new(misbehaving_server());
    remember(&server, "alice", "alice-secret");
    // Another caller, and requests without a key, never run in alice's instance...
    assert_eq!(recall(&server, "bob"), "");
    let (status, body) = server.get("/recall");
    assert_eq!((status, body["left"].as_str()), (200, Some("")));
    // ...while alice's next request does: instances are reused (the default), within one caller.
    assert_eq!(recall(&server, "alice"), "alice-secret");
    // Concurrent callers still never meet.
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let server = server.clone();
            std::thread::spawn(move || {
                let key = format!("caller-{i}");
                for round in 0..10 {
                    remember(&server, &key, &format!("{key}-{round}"));
                    let left = recall(&server, &key);
                    assert_eq!(left, format!("{key}-{round}"), "{key} saw another's memory");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().unwrap();
    }
}

#[test]
fn an_instance_that_failed_is_never_reused() {
    let server = misbehaving_server();
    for failing in ["/trap", "/loop", "/grow"] {
        remember(&server, "mallory", "before-the-failure");
        assert_eq!(recall(&server, "mallory"), "before-the-failure");
        let (status, _) = server.get_as("mallory", failing);
        assert!(status >= 500, "{failing}: {status}");
        assert_eq!(recall(&server, "mallory"), "", "reused after {failing}");
    }
}

#[test]
fn an_instance_serves_at_most_instance_reuse_requests() {
    let server = misbehaving_server_with(&["--instance-reuse", "3"]);
    remember(&server, "carol", "kept");
    assert_eq!(recall(&server, "carol"), "kept");
    assert_eq!(recall(&server, "carol"), "kept");
    // The fourth request gets a fresh instance.
    assert_eq!(recall(&server, "carol"), "");

    let fresh = misbehaving_server_with(&["--instance-reuse", "1"]);
    remember(&fresh, "carol", "kept");
    assert_eq!(recall(&fresh, "carol"), "");
}

#[test]
fn more_callers_than_instances_are_all_served_the_oldest_warm_instance_making_room() {
    let server = misbehaving_server_with(&["--max-instances", "4"]);
    // Each caller leaves a warm instance behind; past the pool's size the least recently used
    // one is dropped, and nobody is refused for want of a slot or a stack.
    for caller in 0..12 {
        remember(&server, &format!("caller-{caller}"), "kept");
    }
    assert_eq!(recall(&server, "caller-11"), "kept");
    assert_eq!(recall(&server, "caller-0"), "", "evicted: a fresh instance");
}

#[test]
fn an_infinite_loop_gets_504_and_the_host_keeps_serving() {
    let mut server = misbehaving_server();
    let (status, body) = server.get("/loop");
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert!(server.is_alive());
    assert_eq!(server.get("/fine").0, 200);
}

#[test]
fn a_trap_gets_500_and_the_host_keeps_serving() {
    let mut server = misbehaving_server();
    let (status, body) = server.get("/trap");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "function_trapped");
    assert!(server.is_alive());
    assert_eq!(server.get("/fine").0, 200);
}

#[test]
fn a_memory_blow_up_meets_the_limit_and_the_host_keeps_serving() {
    let mut server = misbehaving_server();
    let (status, body) = server.get("/grow");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "memory_limit_exceeded");
    assert!(server.is_alive());
    assert_eq!(server.get("/fine").0, 200);
}

#[test]
fn concurrent_loops_do_not_starve_healthy_requests() {
    let server = std::sync::Arc::new(misbehaving_server());
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let s = server.clone();
            std::thread::spawn(move || s.get("/loop").0)
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    // While four loops spin on two cores, a healthy request still gets through (time slicing).
    assert_eq!(server.get("/fine").0, 200);
    for l in loops {
        assert_eq!(l.join().unwrap(), 504);
    }
}
