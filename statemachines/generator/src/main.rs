//! `generate-statemachines [--check]`: writes statemachines/*.asl.json, their
//! diagrams and statemachines/README.md from the generator; with `--check`,
//! writes nothing and fails when a committed file differs.

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = understudy_statemachines::workspace_root();
    let check = std::env::args().skip(1).any(|a| a == "--check");
    if check {
        let stale = understudy_statemachines::stale(&root);
        if stale.is_empty() {
            return ExitCode::SUCCESS;
        }
        for path in stale {
            eprintln!("{} differs from the generator's output", path.display());
        }
        eprintln!("run `{}` to regenerate them", understudy_statemachines::REGENERATE);
        return ExitCode::FAILURE;
    }
    for output in understudy_statemachines::outputs() {
        let path = root.join(&output.path);
        std::fs::write(&path, &output.contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        println!("wrote {}", output.path.display());
    }
    ExitCode::SUCCESS
}
