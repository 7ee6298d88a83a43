// SPDX-License-Identifier: MIT
//! Errors: the C library returns a negative errno; here it is an
//! `io::Error` whose `raw_os_error()` is that errno.

use std::io;

/// `EIO`, what a Rust callback's error without an errno becomes.
pub(crate) const EIO: i32 = 5;

/// A C return value: `>= 0` is the value, `< 0` the errno.
pub(crate) fn check(rc: i32) -> io::Result<i32> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(rc)
    }
}

/// What a Rust callback's result becomes for the C library: 0, or a
/// negative errno (EIO when the error carries none).
pub(crate) fn to_c(r: io::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => match e.raw_os_error() {
            Some(errno) if errno > 0 => -errno,
            _ => -EIO,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_round_trip() {
        assert_eq!(check(3).unwrap(), 3);
        assert_eq!(check(-22).unwrap_err().raw_os_error(), Some(22));
        assert_eq!(to_c(Ok(())), 0);
        assert_eq!(to_c(Err(io::Error::from_raw_os_error(28))), -28);
        assert_eq!(to_c(Err(io::Error::new(io::ErrorKind::Other, "x"))), -EIO);
    }
}
