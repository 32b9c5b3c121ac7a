//! Why an infrastructure message was not applied: its document did not
//! read, or the settings or action it carried were refused. The message is
//! what the log line or the end-to-end answer (`control-refused`,
//! `nothing changed: …`) says, so it names the table, key or action at
//! fault.

use std::path::PathBuf;

/// Why an infrastructure message's document, settings or action were not
/// applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document is larger than an infrastructure message may carry.
    #[error("more than {limit} bytes of XML")]
    TooLarge { limit: usize },
    /// The document fails the messages' XML guard (a DTD, an entity, too
    /// deep).
    #[error(transparent)]
    Unsafe(#[from] crate::message::Error),
    /// The document is XML, but not one rs reads.
    #[error("{0}")]
    Document(#[from] quick_xml::DeError),
    /// `config.toml` cannot be read.
    #[error("{source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The settings sent are not TOML.
    #[error("{0}")]
    Settings(#[from] toml_edit::TomlError),
    /// A table a provider may not change.
    #[error("[{table}] is not a setting a provider may change")]
    NotPermitted { table: String },
    #[error("{table} is not a table")]
    NotTable { table: String },
    /// `[registration] registrar`, which only the site chooses.
    #[error("[registration] registrar is this site's own choice: a provider may not change it")]
    Registrar,
    #[error("[{table}] {key}: not a plain value")]
    NotValue { table: String, key: String },
    /// The setting cannot be written into `config.toml`, or the result
    /// is not a valid configuration (`reason`, as the configuration says).
    #[error("{reason}")]
    Config { reason: String },
    /// The settings were written into a configuration that does not check.
    #[error("the result does not check: {reason}")]
    Check { reason: String },
    /// A control message asks for an action rs does not know.
    #[error("unknown action {action:?} (known: {known})")]
    UnknownAction { action: String, known: String },
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: Error, expected: &str) {
        assert_eq!(e.to_string(), expected);
    }

    #[test]
    fn messages_name_the_table_key_or_action_at_fault() {
        check(
            Error::TooLarge { limit: 262144 },
            "more than 262144 bytes of XML",
        );
        check(
            Error::NotPermitted {
                table: "peer".into(),
            },
            "[peer] is not a setting a provider may change",
        );
        check(
            Error::NotTable {
                table: "queue".into(),
            },
            "queue is not a table",
        );
        check(
            Error::Registrar,
            "[registration] registrar is this site's own choice: a provider may not change it",
        );
        check(
            Error::NotValue {
                table: "queue".into(),
                key: "x".into(),
            },
            "[queue] x: not a plain value",
        );
        check(
            Error::Check {
                reason: "line 3: bad".into(),
            },
            "the result does not check: line 3: bad",
        );
        check(
            Error::UnknownAction {
                action: "reboot".into(),
                known: "ping, hold".into(),
            },
            "unknown action \"reboot\" (known: ping, hold)",
        );
        check(
            Error::ReadConfig {
                path: "/spool/config.toml".into(),
                source: std::io::Error::other("gone"),
            },
            "gone",
        );
    }
}
