//! `ganglion redteam …`: the red team lives in its own executable, `ganglion-redteam`, built
//! and installed next to this one; this command only finds it and runs it with the same
//! arguments (no adversary code is linked into `ganglion`). `ganglion redteam ARGS` is
//! `ganglion-redteam run ARGS`; `ganglion redteam inference …` (or any other subcommand of
//! `ganglion-redteam`) is passed on unchanged.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// `ganglion redteam` arguments: everything goes to `ganglion-redteam`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct RedteamArgs {
    /// Arguments of `ganglion-redteam run` (see `ganglion redteam --help`), or a
    /// `ganglion-redteam` subcommand and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<String>,
}

/// Subcommands of `ganglion-redteam` passed on as they are.
const SUBCOMMANDS: &[&str] = &["run", "inference", "compute", "validator", "help"];

/// The `ganglion-redteam` executable next to this one.
pub(crate) fn executable() -> anyhow::Result<PathBuf> {
    Ok(ganglion_neuron::supervisor::sibling("ganglion-redteam")?)
}

/// The command line `ganglion-redteam` gets.
fn forwarded(args: Vec<String>) -> Vec<String> {
    match args.first() {
        Some(first) if SUBCOMMANDS.contains(&first.as_str()) => args,
        _ => std::iter::once("run".to_string()).chain(args).collect(),
    }
}

pub(crate) fn run(args: RedteamArgs) -> anyhow::Result<ExitCode> {
    let exe = executable()?;
    let mut command = std::process::Command::new(&exe);
    command.args(forwarded(args.args));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replaces this process: signals, stdio and the exit code are the red team's own.
        let err = command.exec();
        Err(err).with_context(|| format!("running {}", exe.display()))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().with_context(|| format!("running {}", exe.display()))?;
        Ok(ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_go_to_run_unless_they_name_a_subcommand() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(forwarded(v(&["--strategies", "all"])), v(&["run", "--strategies", "all"]));
        assert_eq!(forwarded(v(&[])), v(&["run"]));
        assert_eq!(forwarded(v(&["inference", "--strategy", "relay"])), v(&["inference", "--strategy", "relay"]));
    }
}
