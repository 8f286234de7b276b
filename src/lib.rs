pub mod clock;
pub mod config;
pub mod engine;
pub mod fsutil;
pub mod schedule;
pub mod source;
pub mod token;
pub mod validate;
