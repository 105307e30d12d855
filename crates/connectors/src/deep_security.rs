//! deep_security connector (in progress)
