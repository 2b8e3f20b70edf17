//! Pinning the benchmark thread to one CPU, so that every test run uses the
//! same CPU's caches and per-CPU map slots.

use std::io;

/// Pins the calling thread to the highest-numbered CPU it may run on and
/// returns that CPU.
pub fn pin_to_last_allowed_cpu() -> io::Result<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `allowed` is a valid, writable cpu_set_t of the size passed;
    // pid 0 is the calling thread.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let cpu = (0..libc::CPU_SETSIZE as usize)
        .rev()
        // SAFETY: `cpu` is below CPU_SETSIZE and `allowed` is initialised.
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &allowed) })
        .ok_or_else(|| io::Error::other("the affinity mask is empty"))?;
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut only) };
    // SAFETY: `only` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &only) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cpu)
}
