//! misp connector (in progress)
