//! Terminal output that never panics. Rust ignores SIGPIPE, so `println!` panics with a backtrace
//! when the reader of a pipe has gone (`tanren study show 1 | head -1`). Every write to stdout goes
//! through `outln!`/`out!` instead: a closed stdout ends the process quietly, the way `ls | head`
//! does. We exit 0 rather than 141 (what a SIGPIPE kill reports) because the reader chose to stop
//! reading; a non-zero status would fail `set -o pipefail` scripts for no fault of theirs (ripgrep
//! does the same). Writes to stderr (`errln!`) ignore errors: a closed stderr must not turn a clean
//! exit into a panic, and must not change the exit status an error already decided.

use std::fmt;
use std::io::{self, ErrorKind, Write};

/// Print to stdout; `outln!` adds a newline. Exits quietly when stdout is a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::stdout(format_args!($($arg)*)) };
}

macro_rules! outln {
    () => { $crate::out::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Print a line to stderr, ignoring errors.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Print to stderr without a newline (progress bars), ignoring errors; flushes.
macro_rules! err {
    ($($arg:tt)*) => { $crate::out::stderr(format_args!($($arg)*)) };
}

pub fn stdout(args: fmt::Arguments) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        closed(e);
    }
}

/// Flush stdout (after a `\r` progress line that has no newline); a closed pipe ends the process.
pub fn flush() {
    if let Err(e) = io::stdout().lock().flush() {
        closed(e);
    }
}

pub fn stderr(args: fmt::Arguments) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.flush();
}

fn closed(e: io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // Disk full behind a redirect, and the like: worth a word and a failure status.
    stderr(format_args!("tanren: cannot write to stdout: {e}\n"));
    std::process::exit(1);
}
