//! Whatever the backend sends, validation answers with a candidate or a rejection: no panic, and
//! a rejection never echoes the token (checks/backend_answer.rs).
#![no_main]

#[path = "../checks/backend_answer.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|body: &[u8]| check::check(body));
