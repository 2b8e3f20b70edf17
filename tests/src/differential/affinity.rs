//! Pinning the calling thread to one CPU, so that every test run uses that
//! CPU's round-robin cursors and the model can mirror exactly those.

use std::io;

/// Pins the calling thread to the CPU it is running on and returns it.
pub fn pin_to_current_cpu() -> io::Result<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is a CPU number the kernel returned, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut only) };
    // SAFETY: `only` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &only) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cpu)
}
