//! Whatever a client writes to the socket, the daemon answers with well-formed HTTP, never
//! shows the token in an answer that is not a 200, and keeps serving the next client
//! (checks/socket_request.rs).
#![no_main]

use std::sync::LazyLock;

use tokio::runtime::Runtime;

#[path = "../checks/socket_request.rs"]
mod check;
#[path = "../checks/held.rs"]
mod held;

static SERVER: LazyLock<(Runtime, check::Harness)> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let harness = rt.block_on(check::Harness::start());
    (rt, harness)
});

libfuzzer_sys::fuzz_target!(|request: &[u8]| {
    let (rt, harness) = &*SERVER;
    rt.block_on(async {
        check::check_answer(&harness.exchange(request, check::QUIET).await);
        harness.assert_serving().await;
    });
});
