//! Exit statuses from `sysexits.h`: what a run calls for, so MTAs,
//! cron and scripts can tell a temporary failure (try again) from a
//! permanent one.

/// Exit statuses from `sysexits.h`, so MTAs, cron and scripts can tell a
/// temporary failure (try again) from a permanent one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    Ok = 0,
    /// A message or argument was not as documented.
    Usage = 64,
    /// The input data was incorrect (a message that cannot be admitted as given).
    DataErr = 65,
    /// An input file or message did not exist or was not readable.
    NoInput = 66,
    /// A needed service (peer, route) is unavailable.
    Unavailable = 69,
    /// An internal error: a bug in rs.
    Software = 70,
    /// A file could not be created.
    CantCreat = 73,
    /// A read or write failed.
    IoErr = 74,
    /// Try again later: the queue is full, the disk nearly full, the link down.
    TempFail = 75,
    /// A remote system answered against the protocol.
    Protocol = 76,
    /// Not permitted: a file of the spool belongs to another user.
    NoPerm = 77,
    /// The configuration is wrong.
    Config = 78,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// For batch commands: the status to exit with after several items;
    /// the most severe (highest) wins, except that success never hides a failure.
    pub fn merge(self, other: ExitCode) -> ExitCode {
        self.max(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_most_severe() {
        assert_eq!(ExitCode::Ok.merge(ExitCode::TempFail), ExitCode::TempFail);
        assert_eq!(ExitCode::TempFail.merge(ExitCode::Ok), ExitCode::TempFail);
        assert_eq!(ExitCode::DataErr.merge(ExitCode::IoErr), ExitCode::IoErr);
    }
}
