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

/// The least locked memory glommio builds an executor with (`MIN_MEMLOCK_LIMIT` in
/// vendor/glommio/src/sys/uring.rs), on every kernel.
const MIN_MEMLOCK: u64 = 512 * 1024;

/// Refuses to start the shards when the locked-memory limit is below what glommio requires.
/// Checked here, before any shard, because glommio's own error (`MemLockLimit(65536/524288)`)
/// says neither which limit it is nor how to raise it. Run after `raise_soft_limits`: the soft
/// limit is then the hard one, so the hard limit is what must change.
pub fn check_memlock() -> Result<(), String> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        // glommio reads it too, and reports its own error if that fails.
        return Ok(());
    }
    if limit.rlim_cur >= MIN_MEMLOCK {
        return Ok(());
    }
    let kib = MIN_MEMLOCK / 1024;
    Err(format!(
        "cannot start the shards: the locked-memory limit (RLIMIT_MEMLOCK) is {} bytes, below the \
         {kib} KiB io_uring needs: raise the hard limit (LimitMEMLOCK=infinity in the systemd unit, \
         `ulimit -l {kib}` or more in the starting shell, `--ulimit memlock=-1:-1` for a container)",
        limit.rlim_cur
    ))
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
