//! understudy's Step Functions definitions as code.
//!
//! Every machine is built from a few plain helpers ([`asl`]): a Lambda task
//! carrying the suite's one `Retry` list (from `understudy_shared::error`) and a
//! `Catch` to the machine's failure path, a poll loop, the config preamble, and
//! shared stages such as the snapshot stage. The committed
//! `statemachines/*.asl.json` files, which SAM deploys, and a Mermaid diagram
//! of each are this crate's output: change the generator, never the JSON, and
//! run `make statemachines` (a test fails while they differ).

pub mod asl;
pub mod machines;
pub mod mermaid;
pub mod output;

use std::path::{Path, PathBuf};

/// The command that writes the committed files from the generator.
pub const REGENERATE: &str = "make statemachines";

/// One file the generator writes, relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// e.g. `statemachines/refresh.asl.json`.
    pub path: PathBuf,
    /// Its whole text.
    pub contents: String,
}

/// Every file the generator writes: each machine's definition and diagram, and
/// the page that shows every diagram.
pub fn outputs() -> Vec<Output> {
    let machines = machines::all();
    let mut files = Vec::new();
    let mut page = String::from(
        "# The state machines\n\n<!-- Written by `make statemachines` from statemachines/generator; do not edit. -->\n\n\
         Each diagram is drawn from the definition beside it. Edges out of a question are labelled with\n\
         its condition; `error` edges are a task's `Catch`.\n",
    );
    for machine in &machines {
        let diagram = mermaid::diagram(&machine.definition);
        files.push(Output {
            path: Path::new("statemachines").join(format!("{}.asl.json", machine.name)),
            contents: output::to_json(&machine.definition),
        });
        files.push(Output {
            path: Path::new("statemachines").join(format!("{}.mmd", machine.name)),
            contents: diagram.clone(),
        });
        let comment = machine.definition["Comment"].as_str().unwrap_or_default();
        page.push_str(&format!("\n## {}\n\n{comment}\n\n```mermaid\n{diagram}```\n", machine.name));
    }
    files.push(Output { path: PathBuf::from("statemachines/README.md"), contents: page });
    files.push(Output { path: PathBuf::from(CONFIG_SCHEMA), contents: config_schema() });
    files
}

/// The JSON Schema of the configuration document, for editors and docs/configuration.md.
pub const CONFIG_SCHEMA: &str = "infra/config.schema.json";

fn config_schema() -> String {
    let schema = schemars::schema_for!(understudy_shared::config::ConfigDocument);
    let schema = sorted(serde_json::to_value(&schema).expect("schemas serialize"));
    let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialize");
    text.push('\n');
    text
}

/// `value` with every object's keys in sorted order, whichever way serde_json's
/// maps are built (`preserve_order` differs between this crate alone and the workspace).
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(fields) => {
            let mut fields: Vec<_> = fields.into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(fields.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root exists")
}

/// The committed files that differ from [`outputs`] (or are missing), by path.
pub fn stale(root: &Path) -> Vec<PathBuf> {
    outputs()
        .into_iter()
        .filter(|o| std::fs::read_to_string(root.join(&o.path)).ok().as_deref() != Some(o.contents.as_str()))
        .map(|o| o.path)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_files_are_the_generators_output() {
        let stale = stale(&workspace_root());
        assert!(
            stale.is_empty(),
            "these committed files differ from the generator's output: {stale:?}; run `{REGENERATE}` and commit the result"
        );
    }

    #[test]
    fn every_machine_has_the_poll_loops_validate_checks_its_history_for() {
        use understudy_shared::poll::{machine_loops, PollKind};
        for machine in machines::all() {
            for kind in PollKind::ALL {
                assert_eq!(
                    asl::poll_loops(&machine.definition, kind),
                    machine_loops(machine.name).of(kind),
                    "{}: {kind:?} loops differ from understudy_shared::poll::MACHINE_LOOPS",
                    machine.name
                );
            }
        }
    }

    #[test]
    fn every_state_of_every_machine_is_reached_from_its_start() {
        fn check(name: &str, machine: &serde_json::Value) {
            let states = machine["States"].as_object().expect("States");
            let start = machine["StartAt"].as_str().expect("StartAt");
            let reached = output::flow_order(states, start);
            let mut seen = std::collections::HashSet::new();
            let mut stack = vec![start.to_owned()];
            while let Some(state) = stack.pop() {
                if seen.insert(state.clone()) {
                    stack.extend(output::successors(&states[&state]).into_iter().map(|(t, _)| t.to_owned()));
                }
            }
            let unreached: Vec<&String> = reached.iter().filter(|s| !seen.contains(*s)).collect();
            assert!(unreached.is_empty(), "{name}: no path from `{start}` reaches {unreached:?}");
            for state in states.values() {
                for inner in state
                    .get("ItemProcessor")
                    .into_iter()
                    .chain(state["Branches"].as_array().into_iter().flatten())
                {
                    check(name, inner);
                }
            }
        }
        for machine in machines::all() {
            check(machine.name, &machine.definition);
        }
    }

    #[test]
    fn state_names_are_unique_across_each_whole_machine_branches_and_map_processors_included() {
        // AWS: "State names must be unique within the scope of the whole state machine".
        fn collect(states: &serde_json::Value, names: &mut Vec<String>) {
            for (name, state) in states.as_object().expect("States") {
                names.push(name.clone());
                for branch in state["Branches"].as_array().into_iter().flatten() {
                    collect(&branch["States"], names);
                }
                if let Some(processor) = state.get("ItemProcessor").or(state.get("Iterator")) {
                    collect(&processor["States"], names);
                }
            }
        }
        for machine in machines::all() {
            let mut names = Vec::new();
            collect(&machine.definition["States"], &mut names);
            let mut seen = std::collections::BTreeSet::new();
            let twice: Vec<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
            assert!(twice.is_empty(), "{}: state names used twice: {twice:?}", machine.name);
        }
    }

    #[test]
    fn every_machine_has_a_timeout_backstop_within_a_standard_executions_year() {
        for machine in machines::all() {
            let timeout = machine.definition["TimeoutSeconds"].as_u64().expect("TimeoutSeconds");
            assert!(timeout > 3600 && timeout < 365 * 24 * 3600, "{}: {timeout}", machine.name);
        }
    }

    #[test]
    fn the_committed_definitions_parse_equal_to_the_generated_ones() {
        for machine in machines::all() {
            let path = workspace_root().join("statemachines").join(format!("{}.asl.json", machine.name));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let committed: serde_json::Value = serde_json::from_str(&text).unwrap();
            if committed != machine.definition {
                let (c, g) = (
                    committed["States"].as_object().unwrap(),
                    machine.definition["States"].as_object().unwrap(),
                );
                for name in c.keys().chain(g.keys()) {
                    assert_eq!(c.get(name), g.get(name), "{}: state `{name}` differs", machine.name);
                }
                assert_eq!(committed, machine.definition, "{}: differs outside the states", machine.name);
            }
        }
    }
}
