//! What several understudy functions need, in one place: the request contract
//! ([`request`]) and what every answer has in common ([`answer`]), the
//! configuration of a run ([`config`]) from the deployed stack ([`deployment`])
//! and the stored document ([`settings`]), the error vocabulary the state
//! machines match on ([`error`]), the `understudy:` tag keys ([`tags`]), AWS
//! clients built once per cold start ([`aws`]), the safety rules ([`guard`]), the run
//! lock ([`lease`]), what started a refresh ([`trigger`])
//! and the Lambda wiring every `main.rs` calls ([`runtime`]).

pub mod answer;
pub mod aws;
pub mod config;
pub mod deployment;
pub mod error;
pub mod guard;
pub mod lease;
pub mod lifecycle;
pub mod poll;
pub mod rds;
pub mod refresh;
pub mod request;
pub mod runtime;
pub mod scale;
pub mod settings;
pub mod smoke;
pub mod tags;
pub mod trigger;

pub use error::{Error, Result};
