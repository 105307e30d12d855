//! apex_central connector (in progress)
