//! deep_security simulator (in progress)
