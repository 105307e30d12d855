//! http connector (in progress)
