//! Container log files (to be written by the runtime helper).
