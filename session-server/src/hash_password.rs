//! `session-server hash-password`: reads a password from standard input and prints its argon2id
//! hash in PHC form, for a user's `password_hash` in the configuration file. From a terminal it
//! asks twice without echo; otherwise it reads one line (for scripts).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use session_server::policy::PasswordHash;

pub(crate) fn run() -> ExitCode {
    let password = match read_password() {
        Ok(password) => password,
        Err(e) => {
            eprintln!("session-server: cannot read the password: {e}");
            return ExitCode::from(2);
        }
    };
    if password.is_empty() {
        eprintln!("session-server: the password is empty");
        return ExitCode::from(2);
    }
    println!("{}", PasswordHash::generate(&password).as_str());
    ExitCode::SUCCESS
}

fn read_password() -> std::io::Result<Vec<u8>> {
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password("Password: ")?;
        if rpassword::prompt_password("Again: ")? != password {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the two entries differ"));
        }
        return Ok(password.into_bytes());
    }
    let mut line = Vec::new();
    std::io::stdin().lock().read_until(b'\n', &mut line)?;
    let end = line.strip_suffix(b"\n").map_or(line.len(), |l| l.strip_suffix(b"\r").unwrap_or(l).len());
    line.truncate(end);
    Ok(line)
}
