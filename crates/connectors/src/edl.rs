//! edl connector (in progress)
