//! How a remote command's end becomes tunnelctl's: its exit code, 128+N for
//! a signal as a shell reports it, 255 when that cannot be told, as ssh.

use tunnel_proto::v1::ExitStatus;
use tunnel_proto::v1::exit_status::Status;

/// Exit code for "the command could not be run", as ssh uses it.
pub const FAILURE_EXIT: u8 = 255;

/// Exit code when our reader went away, as if killed by SIGPIPE like ssh.
pub const SIGPIPE_EXIT: u8 = 128 + 13;

/// The Linux number of a signal named as SSH reports it ("TERM", also
/// accepted with a "SIG" prefix or as a number).
pub fn signal_number(name: &str) -> Option<u8> {
    let name = name.trim();
    let name = name.strip_prefix("SIG").unwrap_or(name);
    if let Ok(n) = name.parse::<u8>() {
        return (1..=64).contains(&n).then_some(n);
    }
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" | "CLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => return None,
    })
}

/// The local exit code for how the remote command ended: its own code, 128+N
/// for signal N (as a shell reports it), 255 when that cannot be told.
pub fn exit_code(status: &ExitStatus) -> u8 {
    match &status.status {
        Some(Status::Code(code)) => u8::try_from(*code).unwrap_or(FAILURE_EXIT),
        Some(Status::Signal(name)) => signal_number(name).map_or(FAILURE_EXIT, |n| 128 + n),
        None => FAILURE_EXIT,
    }
}

/// The line printed on stderr when the command was killed by a signal.
pub fn signal_note(status: &ExitStatus) -> Option<String> {
    let Some(Status::Signal(name)) = &status.status else {
        return None;
    };
    let mut note = format!("the remote command was killed by signal {name}");
    if status.core_dumped {
        note.push_str(" (core dumped)");
    }
    let message = status.error_message.trim();
    if !message.is_empty() {
        note.push_str(": ");
        note.push_str(message);
    }
    Some(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(code: i32) -> ExitStatus {
        ExitStatus {
            status: Some(Status::Code(code)),
            ..Default::default()
        }
    }

    fn signal(name: &str) -> ExitStatus {
        ExitStatus {
            status: Some(Status::Signal(name.into())),
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes_pass_through() {
        assert_eq!(exit_code(&code(0)), 0);
        assert_eq!(exit_code(&code(1)), 1);
        assert_eq!(exit_code(&code(255)), 255);
        assert_eq!(exit_code(&code(256)), 255);
        assert_eq!(exit_code(&code(-1)), 255);
        assert_eq!(exit_code(&ExitStatus::default()), 255);
    }

    #[test]
    fn signals_are_128_plus_linux_number() {
        assert_eq!(exit_code(&signal("HUP")), 129);
        assert_eq!(exit_code(&signal("INT")), 130);
        assert_eq!(exit_code(&signal("KILL")), 137);
        assert_eq!(exit_code(&signal("SEGV")), 139);
        assert_eq!(exit_code(&signal("PIPE")), 141);
        assert_eq!(exit_code(&signal("TERM")), 143);
        assert_eq!(exit_code(&signal("USR1")), 138);
        assert_eq!(exit_code(&signal("SIGTERM")), 143);
        assert_eq!(exit_code(&signal("NOSUCH@openssh.com")), 255);
    }

    #[test]
    fn signal_note_mentions_core_and_message() {
        let mut status = signal("SEGV");
        status.core_dumped = true;
        status.error_message = "boom".into();
        assert_eq!(
            signal_note(&status).as_deref(),
            Some("the remote command was killed by signal SEGV (core dumped): boom")
        );
        assert_eq!(signal_note(&code(1)), None);
    }
}
