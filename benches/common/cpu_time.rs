//! CPU time of the calling thread, for cost figures that a busy machine does not inflate
//! (wall time counts the time other processes had the core).

/// Seconds of CPU the calling thread has used (user + system), from /proc/thread-self/stat in
/// clock ticks of 1/100 s; None where that file does not exist.
pub fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs `f` and returns its result with the thread's CPU seconds (wall seconds where CPU time
/// cannot be read).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let (c0, w0) = (thread_cpu_seconds(), std::time::Instant::now());
    let out = f();
    let secs = match (c0, thread_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => w0.elapsed().as_secs_f64(),
    };
    (out, secs)
}
