//! Process limits a proxy needs: every proxied connection holds two descriptors, and io_uring
//! needs some locked memory per shard. Like HAProxy, raise the soft limits to the hard ones.

use std::io;

fn raise(resource: libc::__rlimit_resource_t) -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(resource, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(resource, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Raises the open-file and locked-memory soft limits; returns the open-file limit in force.
pub fn raise_soft_limits() -> Option<u64> {
    if let Err(e) = raise(libc::RLIMIT_MEMLOCK) {
        log::warn!("cannot raise the locked-memory limit: {e}");
    }
    match raise(libc::RLIMIT_NOFILE) {
        Ok(files) => Some(files),
        Err(e) => {
            log::warn!("cannot raise the open-file limit: {e}");
            None
        }
    }
}
