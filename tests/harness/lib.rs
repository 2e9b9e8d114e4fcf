//! Test harness for understudy: starts the local stack (moto + the Lambda invoke
//! host serving the real function binaries, `tests/local/stack.py`, the same
//! launcher `make local-up` uses), gives AWS clients for the emulated production
//! and staging accounts, invokes functions over HTTP, and runs state machines in
//! moto's engine. Each test gets its own stack; dropping it stops it by PID, also
//! when the test fails.

pub mod accounts;
pub mod buckets;
pub mod deployment;
pub mod events;
pub mod https;
pub mod invoke;
pub mod scale;
pub mod stack;
pub mod state_machine;

pub use accounts::{Accounts, PRODUCTION_ACCOUNT, PRODUCTION_ROLE_ARN, REGION, STAGING_ACCOUNT};
pub use invoke::Invocation;
pub use stack::{LocalStack, StackOptions};
pub use state_machine::{Execution, StateMachines};

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}
