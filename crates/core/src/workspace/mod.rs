pub mod compose;
pub mod config;
pub mod spec;
