//! virustotal simulator (in progress)
