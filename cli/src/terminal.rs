//! The terminal: password input without echo, prompts, and a progress indicator.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// One line from stdin, without its line ending; `None` at end of input.
fn read_line() -> io::Result<Option<String>> {
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(Some(line))
}

/// Asks for a value on the terminal; `None` when stdin is not a terminal.
pub fn prompt(label: &str) -> io::Result<Option<String>> {
    if !io::stdin().is_terminal() {
        return Ok(None);
    }
    eprint!("{label}");
    io::stderr().flush()?;
    read_line()
}

/// A password: typed without echo when stdin is a terminal, else the first line of stdin.
pub fn read_password(label: &str) -> io::Result<String> {
    let line = if io::stdin().is_terminal() {
        eprint!("{label}");
        io::stderr().flush()?;
        let _quiet = EchoOff::on_stdin()?;
        read_line()?
    } else {
        read_line()?
    };
    line.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no password on stdin"))
}

/// A one-time code: asked for on the terminal (with echo: it is short-lived and read off a
/// phone), else the next line of stdin, so a script can pipe the password and then the code.
/// Surrounding spaces are dropped.
pub fn read_code(label: &str) -> io::Result<String> {
    let line = if io::stdin().is_terminal() {
        eprint!("{label}");
        io::stderr().flush()?;
        read_line()?
    } else {
        read_line()?
    };
    line.map(|code| code.trim().to_owned())
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no one-time code on stdin"))
}

/// Whether the user can be asked again (stdin is a terminal).
pub fn interactive() -> bool {
    io::stdin().is_terminal()
}

/// Turns the terminal's echo off (but keeps echoing the newline) until dropped, or until
/// Ctrl-C ends the process, which would otherwise leave the shell without echo.
struct EchoOff {
    saved: libc::termios,
}

/// The settings to restore from the SIGINT handler; set before the handler is installed.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

extern "C" fn restore_then_interrupt(signal: libc::c_int) {
    // SAFETY: tcsetattr, signal and raise are async-signal-safe; SAVED is only read.
    unsafe {
        if let Some(saved) = SAVED.get() {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
        }
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

impl EchoOff {
    fn on_stdin() -> io::Result<Self> {
        let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: fd 0 stays open for the process's life, and tcgetattr fully initialises
        // `saved` when it returns 0.
        let saved = unsafe {
            if libc::tcgetattr(libc::STDIN_FILENO, saved.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            saved.assume_init()
        };
        let _ = SAVED.set(saved);
        let handler = restore_then_interrupt as extern "C" fn(libc::c_int);
        // SAFETY: the handler only makes async-signal-safe calls.
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: `quiet` is a valid termios read from this terminal.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `on_stdin` on the same descriptor, and the
        // default SIGINT action.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
}

/// A spinner on stderr while something slow runs; nothing when stderr is not a terminal.
pub struct Progress {
    stop: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Progress {
    pub fn start(message: &'static str) -> Self {
        if !io::stderr().is_terminal() {
            return Progress { stop: None };
        }
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let frames = ['|', '/', '-', '\\'];
            for frame in frames.iter().cycle() {
                eprint!("\r{frame} {message}");
                let _ = io::stderr().flush();
                if rx.recv_timeout(Duration::from_millis(120))
                    != Err(mpsc::RecvTimeoutError::Timeout)
                {
                    break;
                }
            }
            // Clear the line for whatever is printed next.
            eprint!("\r\x1b[2K");
            let _ = io::stderr().flush();
        });
        Progress {
            stop: Some((tx, handle)),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.stop.take() {
            let _ = tx.send(());
            let _ = handle.join();
        }
    }
}
