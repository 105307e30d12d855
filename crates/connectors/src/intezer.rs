//! intezer connector (in progress)
