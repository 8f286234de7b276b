pub mod clock;
pub mod config;
pub mod token;
