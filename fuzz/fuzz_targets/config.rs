//! Whatever the config file holds, loading it gives a config or errors that name a place: no
//! panic (checks/config.rs).
#![no_main]

#[path = "../checks/config.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|text: &str| check::check(text));
