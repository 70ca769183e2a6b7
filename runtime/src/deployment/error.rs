//! [`DeploymentError`]: what is wrong with a deployment file, and where.

use std::fmt;

/// A deployment file that cannot be used: the file, the line and column of the offending
/// value (when it is in the file), the dotted path of the field (e.g.
/// `rsm[1].replicas[2].address`) and what is wrong.
///
/// Displays as `{file}:{line}:{column}: {field}: {reason}` when located, and as
/// `{file}: {field}: {reason}` otherwise (`{file}: {reason}` when no field applies, e.g. an
/// unreadable file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentError {
    /// The file name, or the source name given to
    /// [`DeploymentConfig::from_toml_str`](super::DeploymentConfig::from_toml_str).
    pub file: String,
    /// 1-based line of the offending key or value, if it appears in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending key or value, with `line`.
    pub column: Option<usize>,
    /// Dotted path of the field, e.g. `rsm[0].f` or `transport.tcp.nodelay`; empty when the
    /// error concerns the file as a whole.
    pub field: String,
    /// What is wrong and, where possible, what would be valid.
    pub reason: String,
}

impl DeploymentError {
    /// An error that points at no particular place in the file (e.g. a command-line argument
    /// naming an RSM the file does not have).
    pub fn unlocated(file: &str, field: &str, reason: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line: None, column: None, field: field.to_owned(), reason: reason.into() }
    }
}

impl fmt::Display for DeploymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, ":{line}:{column}")?,
            (Some(line), None) => write!(f, ":{line}")?,
            _ => {}
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for DeploymentError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_location() {
        let mut e = DeploymentError::unlocated("d.toml", "rsm[0].f", "too large");
        assert_eq!(e.to_string(), "d.toml: rsm[0].f: too large");
        e.line = Some(7);
        e.column = Some(5);
        assert_eq!(e.to_string(), "d.toml:7:5: rsm[0].f: too large");
        let e = DeploymentError::unlocated("d.toml", "", "cannot read: gone");
        assert_eq!(e.to_string(), "d.toml: cannot read: gone");
    }
}
