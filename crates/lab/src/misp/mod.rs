//! misp simulator (in progress)
