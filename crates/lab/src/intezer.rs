//! intezer simulator (in progress)
