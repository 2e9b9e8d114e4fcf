//! Integration tests: the real function binaries against moto over HTTP, the real
//! state machines in moto's engine, and the contracts that tie them together.
//! One binary (each extra one links the AWS SDK again).

mod answer_contracts;
mod complete_refresh;
mod contracts;
mod deploy_triggers;
mod deployed_config;
mod mirror_function;
mod mirror_state_machines;
mod refresh_failures;
mod refresh_guard_rails;
mod refresh_state_machine;
mod refresh_world;
mod run_lock;
mod scale_to_zero_function;
mod scale_to_zero_state_machines;
mod smoke_test_function;
mod snapshot_function;
mod snapshot_state_machine;
