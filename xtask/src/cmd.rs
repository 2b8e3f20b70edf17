//! Running external programs, with errors that name the command and show its output.

use std::io;
use std::process::{Command, ExitStatus, Output, Stdio};

use thiserror::Error;

/// An external program could not be started or did not succeed.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The program could not be started (usually: not installed).
    #[error("could not start `{command}`: {error}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        error: io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}){}", indent_output(.output))]
    Failed {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it printed (stderr, then stdout), if it was captured.
        output: String,
    },
}

fn indent_output(output: &str) -> String {
    let output = output.trim();
    if output.is_empty() {
        String::new()
    } else {
        format!(":\n    {}", output.replace('\n', "\n    "))
    }
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `command` with the terminal as its stdin/stdout/stderr and checks that
/// it succeeded.
pub fn run(command: &mut Command) -> Result<(), CommandError> {
    let status = command.status().map_err(|error| CommandError::Spawn {
        command: describe(command),
        error,
    })?;
    check(command, status, String::new())
}

/// Runs `command` capturing its output, which is shown only if it fails.
pub fn run_quiet(command: &mut Command) -> Result<(), CommandError> {
    captured(command).map(drop)
}

/// Runs `command` and returns what it printed on stdout.
pub fn output(command: &mut Command) -> Result<String, CommandError> {
    captured(command).map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` capturing stdout and stderr, without judging the exit status.
pub fn output_unchecked(command: &mut Command) -> Result<Output, CommandError> {
    command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| CommandError::Spawn {
            command: describe(command),
            error,
        })
}

fn captured(command: &mut Command) -> Result<Output, CommandError> {
    let output = output_unchecked(command)?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    check(command, output.status, printed)?;
    Ok(output)
}

fn check(command: &Command, status: ExitStatus, output: String) -> Result<(), CommandError> {
    if status.success() {
        Ok(())
    } else {
        Err(CommandError::Failed {
            command: describe(command),
            status,
            output,
        })
    }
}

/// Whether `program` can be found on `$PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_joins_program_and_arguments() {
        let mut command = Command::new("ip");
        command.args(["-n", "lbl-client", "link"]);
        assert_eq!(describe(&command), "ip -n lbl-client link");
    }

    #[test]
    fn failure_shows_the_captured_output() {
        let error = output(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("sh -c"), "{message}");
        assert!(message.contains("oops"), "{message}");
    }

    #[test]
    fn success_returns_stdout() {
        assert_eq!(output(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }
}
