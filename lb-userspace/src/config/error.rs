//! Configuration errors, each located at a line and column of the file.

use std::fmt;
use std::ops::Range;

/// A 1-based line and column (in characters) inside the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the end of the text).
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Largest configuration file read, in bytes (1 MiB): a real one is a few
/// KiB, and the bound keeps `/dev/zero` or a runaway file from exhausting
/// memory.
pub(super) const MAX_FILE_BYTES: u64 = 1 << 20;

/// Most characters of a value or a line quoted in a message.
pub(super) const MAX_QUOTED_CHARS: usize = 100;

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The path is a directory, a device, a FIFO or a socket.
    #[error("{file}: not a regular file (a configuration is a regular file of at most 1 MiB)")]
    NotAFile { file: String },
    /// The file is larger than 1 MiB.
    #[error("{file}: larger than 1 MiB ({MAX_FILE_BYTES} bytes), the most a configuration file may hold")]
    TooLarge { file: String },
    /// The file is not valid TOML, or does not have the expected shape
    /// (unknown or missing field, wrong type).
    #[error("{file}:{at}: {message}")]
    Syntax {
        file: String,
        at: Location,
        message: String,
    },
    /// A field has a value the load balancer cannot use.
    #[error("{file}:{at}: {field}: {problem}")]
    Invalid {
        file: String,
        at: Location,
        /// Path of the offending field, e.g. `service[web].backend[web1].weight`.
        field: String,
        problem: String,
    },
    /// A setting given on the command line has a value the load balancer
    /// cannot use.
    #[error("{argument}: {problem}")]
    Argument {
        /// The option, e.g. `--pin-dir`.
        argument: &'static str,
        problem: String,
    },
}

impl ConfigError {
    /// Where in the file the error is, when it is about the file's content.
    pub fn location(&self) -> Option<Location> {
        match self {
            ConfigError::Read { .. }
            | ConfigError::NotAFile { .. }
            | ConfigError::TooLarge { .. }
            | ConfigError::Argument { .. } => None,
            ConfigError::Syntax { at, .. } | ConfigError::Invalid { at, .. } => Some(*at),
        }
    }

    /// Converts a TOML deserialisation error, quoting the offending line so
    /// that type errors (which toml does not attribute to a key) still name the
    /// field.
    pub(super) fn from_toml(file: &str, text: &str, error: &toml::de::Error) -> Self {
        // Multi-line messages become one line; our raw integers are `i64`,
        // which means nothing to the reader.
        let message = error
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
            .replace("expected i64", "expected an integer");
        // serde quotes the offending value, which may be huge.
        let message = shorten(&message);
        let Some(span) = error.span() else {
            return ConfigError::Syntax {
                file: file.to_owned(),
                at: Location { line: 1, column: 1 },
                message,
            };
        };
        let at = Location::of_offset(text, span.start);
        let line_text = without_comment(text.lines().nth(at.line - 1).unwrap_or(""));
        let message = if line_text.is_empty() {
            message
        } else {
            format!("{message} (in `{}`)", prefix(line_text))
        };
        ConfigError::Syntax {
            file: file.to_owned(),
            at,
            message,
        }
    }
}

/// `value` quoted (Rust string syntax), cut after [`MAX_QUOTED_CHARS`]
/// characters: `"abc"`, or `"abc…"…` for a longer one.
pub(super) fn quote(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
    }
}

/// `text` cut after [`MAX_QUOTED_CHARS`] characters, with `…` if cut.
fn prefix(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// `message` with its middle cut out if it is long, keeping its start and
/// its end (where a serde message says what was expected).
fn shorten(message: &str) -> String {
    const KEEP_END: usize = 60;
    let chars = message.chars().count();
    if chars <= MAX_QUOTED_CHARS + KEEP_END {
        return message.to_owned();
    }
    let head: String = message.chars().take(MAX_QUOTED_CHARS).collect();
    let tail: String = message.chars().skip(chars - KEEP_END).collect();
    format!("{head}…{tail}")
}

/// `line` without its trailing `# comment` (a `#` inside a string is kept) and
/// surrounding blanks.
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    for (index, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return line[..index].trim(),
            (None, '"' | '\'') => quote = Some(c),
            // Only basic ("...") strings have escapes.
            (Some('"'), _) if escaped => escaped = false,
            (Some('"'), '\\') => escaped = true,
            (Some(open), _) if c == open => quote = None,
            _ => {}
        }
    }
    line.trim()
}

/// Builds [`ConfigError::Invalid`] errors for one file.
pub(super) struct ErrorSite<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl ErrorSite<'_> {
    /// An error about `field`, located at the start of `span`.
    pub fn invalid(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            at: Location::of_offset(self.text, span.start),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{quote, shorten, without_comment, Location};

    #[test]
    fn long_values_and_messages_are_cut() {
        assert_eq!(quote("eth0"), "\"eth0\"");
        let long = "é".repeat(150);
        assert_eq!(quote(&long), format!("\"{}\"…", "é".repeat(100)));
        let message = format!(
            "invalid type: string \"{}\", expected an integer",
            "a".repeat(10_000)
        );
        let short = shorten(&message);
        assert_eq!(short.chars().count(), 161);
        assert!(short.ends_with("\", expected an integer"), "{short}");
    }

    #[test]
    fn comments_are_cut_outside_strings_only() {
        assert_eq!(without_comment("  port = 80   # the port"), "port = 80");
        assert_eq!(without_comment("name = \"a#b\" # c"), "name = \"a#b\"");
        assert_eq!(without_comment("name = 'a#b'"), "name = 'a#b'");
        assert_eq!(without_comment(r##"n = "a\"#" # c"##), r##"n = "a\"#""##);
        assert_eq!(without_comment("# only a comment"), "");
    }

    #[test]
    fn offsets_map_to_one_based_lines_and_character_columns() {
        let text = "ab\ncé = 1\n";
        assert_eq!(
            Location::of_offset(text, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::of_offset(text, 3),
            Location { line: 2, column: 1 }
        );
        // "é" is two bytes: the byte after it is the third character.
        assert_eq!(
            Location::of_offset(text, 6),
            Location { line: 2, column: 3 }
        );
        assert_eq!(
            Location::of_offset(text, 99),
            Location { line: 3, column: 1 }
        );
    }
}
