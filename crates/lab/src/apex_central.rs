//! apex_central simulator (in progress)
